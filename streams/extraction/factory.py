"""Choose the extractor for a deployment: the LLM when configured, otherwise offline."""

from __future__ import annotations

from streams.config import Settings
from streams.extraction.base import Extractor
from streams.extraction.offline import OfflineExtractor


def make_extractor(settings: Settings) -> Extractor:
    cfg = settings.graphrag.extraction
    if settings.llm_enabled:
        raise ValueError("LLM extraction is not available in this version; unset OPENAI_API_KEY "
                         "or set graphrag.extraction.extractor: offline")
    return OfflineExtractor(max_entities=cfg.max_entities_per_chunk)
