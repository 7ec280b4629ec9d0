"""JSON schemas for OpenAI structured output, whose strict mode wants every object closed
and every property required."""

from __future__ import annotations

from typing import Any


def strict_object(properties: dict[str, Any]) -> dict[str, Any]:
    """An object schema with exactly these properties, all required, no others."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
