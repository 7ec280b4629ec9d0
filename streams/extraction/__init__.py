"""Entity and relation extraction from transcript chunks.

``base`` defines the interface every extractor implements; ``offline`` works with no
network and no API key; the LLM extractor (OpenAI structured output) implements the same
interface.
"""

from streams.extraction.base import ExtractionFailed, ExtractionResult, Extractor

__all__ = ["ExtractionFailed", "ExtractionResult", "Extractor"]
