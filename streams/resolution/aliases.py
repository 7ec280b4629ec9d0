"""Merge decisions as a compacted topic that every resolver reads in full.

Why not a Faust GlobalTable: in faust-streaming 0.15 a GlobalTable without
``synchronize_all_active_partitions`` stalls partition assignment silently, and with
several workers it is known to miss keys (faust-streaming issues #283, PR #438). A plain
consumer that assigns itself every partition from the beginning
(``streams.kafka.from_beginning``) is small and reliable.

Key: a folded name (``streams.resolution.resolve.fold``). Value: ``schemas.EntityAlias`` JSON, or
null to retract.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping

from schemas import EntityAlias
from streams.kafka.clients import OutgoingMessage, make_producer, produce_and_confirm
from streams.kafka.from_beginning import read_from_beginning
from streams.kafka.topics import topics_for
from streams.resolution.resolve import Canonical, fold
from streams.settings import Settings

log = logging.getLogger(__name__)


class AliasTable:
    """An in-memory copy of the aliases topic, kept current by a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.topic = topics_for(settings).aliases
        self.settings = settings
        self._group = f"alias-reader-{uuid.uuid4().hex[:8]}"
        self._aliases: dict[str, Canonical] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> AliasTable:
        """Read the whole topic, then keep following it; returns once caught up."""
        self._thread = threading.Thread(target=self._run, name="alias-reader", daemon=True)
        self._thread.start()
        if not self._caught_up.wait(timeout):
            raise TimeoutError(f"could not read {self.topic} within {timeout:.0f}s")
        log.info("alias table: %d aliases from %s", len(self), self.topic)
        return self

    def read_to_end(self) -> AliasTable:
        """Read the whole topic once, without following it: a reader thread that follows
        would have to be stopped, which waits out its poll (half a second)."""
        caught_up = threading.Event()
        for msg in read_from_beginning(self.settings, self.topic, group_id=self._group, on_caught_up=caught_up.set):
            key, value = msg.key(), msg.value()
            self._apply(key if isinstance(key, bytes) else None, value if isinstance(value, bytes) else None)
        if not caught_up.is_set():
            raise TimeoutError(f"could not read {self.topic} to its end")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __len__(self) -> int:
        with self._lock:
            return len(self._aliases)

    def get(self, folded: str) -> Canonical | None:
        """The entity a folded name was merged into, following chains of merges."""
        with self._lock:
            found = self._aliases.get(folded)
            for _ in range(8):  # X merged into Y, later Y into Z
                if found is None:
                    break
                nxt = self._aliases.get(fold(found.name))
                if nxt is None or nxt == found:
                    break
                found = nxt
            return found

    def snapshot(self) -> dict[str, Canonical]:
        with self._lock:
            return dict(self._aliases)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        folded = key.decode("utf-8", "replace")
        with self._lock:
            if value is None:
                self._aliases.pop(folded, None)
                return
            try:
                alias = EntityAlias.model_validate_json(value)
            except ValueError as exc:
                log.warning("ignoring an invalid alias record for %r: %s", folded, exc)
                return
            self._aliases[folded] = Canonical(alias.entity_id, alias.type, alias.name)

    def _run(self) -> None:
        try:
            for msg in read_from_beginning(self.settings, self.topic, group_id=self._group, follow=True,
                                           stop=self._stop, on_caught_up=self._caught_up.set):
                key, value = msg.key(), msg.value()
                self._apply(key if isinstance(key, bytes) else None, value if isinstance(value, bytes) else None)
        except Exception:
            log.exception("alias reader failed")


def published_aliases(settings: Settings) -> dict[str, Canonical]:
    """The aliases the topic holds now, for the merge pass to publish only what changes."""
    return AliasTable(settings).read_to_end().snapshot()


def publish_aliases(settings: Settings, aliases: Mapping[str, EntityAlias | None]) -> int:
    """Write merge decisions (folded name -> entity; None retracts) and wait for the broker."""
    topic = topics_for(settings).aliases
    messages = [OutgoingMessage(topic, key.encode("utf-8"), value.model_dump_json().encode() if value else None)
                for key, value in sorted(aliases.items())]
    if not messages:
        return 0
    return produce_and_confirm(make_producer(settings), messages)
