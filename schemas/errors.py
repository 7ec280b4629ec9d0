"""How a validation failure against a contract (an event, a request, the configuration) is
told: one clause per problem naming the dotted path, never the offending value (it may be a
secret or a megabyte of transcript)."""

from __future__ import annotations

import pydantic


def describe_validation_error(exc: pydantic.ValidationError, *, noun: str = "field", limit: int | None = None,
                              top: str = "(message)") -> str:
    """``a.b: unknown field; c: required field is missing; d: <pydantic's message>``."""
    errors = exc.errors()
    parts = []
    for err in errors if limit is None else errors[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or top
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown {noun}")
        elif err["type"] == "setting_problem":  # a model validator naming one of its keys
            ctx = err.get("ctx") or {}
            where = f"{loc}.{ctx['key']}" if err["loc"] else str(ctx["key"])
            parts.append(f"{where}: {ctx['problem']}")
        elif err["type"] == "missing":
            parts.append(f"{loc}: required {noun} is missing")
        else:
            parts.append(f"{loc}: {err['msg']}")
    if limit is not None and len(errors) > limit:
        parts.append(f"... and {len(errors) - limit} more")
    return "; ".join(parts)
