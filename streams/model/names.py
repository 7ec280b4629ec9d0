"""Words about names that several stages agree on (extraction, resolution, merging)."""

from __future__ import annotations

# Titles before a person's name: "Dr Smith" is a person, and "Judge Posner" is "Posner".
PERSONAL_TITLES = frozenset({"mr", "mrs", "ms", "dr", "professor", "prof", "president", "judge", "justice", "sir",
                             "senator", "governor", "king", "queen", "prince", "saint", "st", "lord", "lady"})
