"""Choose the extractor for a deployment: the LLM when configured, otherwise offline
(``extraction.offline_extractor``: spaCy, the plain rules, or auto: spaCy when the ``nlp``
extra is installed, the rules when it is not)."""

from __future__ import annotations

from streams.extraction.base import Extractor
from streams.extraction.offline import OfflineExtractor
from streams.extraction.spacy_ner import SpacyExtractor, load_model
from streams.settings import Settings


def make_extractor(settings: Settings) -> Extractor:
    cfg = settings.graphrag.extraction
    if settings.llm_enabled:
        if settings.openai.api_key is None:
            raise ValueError("graphrag.extraction.extractor is 'llm' but openai.api_key (OPENAI_API_KEY) is not set")
        from streams.extraction.llm import LLMExtractor  # lazily: the offline path needs no openai client

        return LLMExtractor.from_settings(settings)
    if cfg.offline_extractor != "rules":
        nlp = load_model()
        if nlp is not None:
            return SpacyExtractor(nlp, max_entities=cfg.max_entities_per_chunk)
        if cfg.offline_extractor == "spacy":
            raise ValueError("graphrag.extraction.offline_extractor is 'spacy' but spaCy or its English model is not "
                             "installed (pip install 'graphrag-streams[nlp]')")
    return OfflineExtractor(max_entities=cfg.max_entities_per_chunk)
