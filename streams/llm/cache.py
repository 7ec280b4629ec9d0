"""The LLM answer cache: MongoDB (``llm_cache``), with Redis as an optional first layer.

Keys hash the model, the prompt version and the exact input, so re-submitting a video
costs no LLM call, while a new prompt version or model misses and re-extracts. MongoDB
keeps answers for good; Redis (``cache.redis_url``) holds them for ``cache.ttl_seconds``
in front of it. ``graphrag.enable_caching: false`` turns both off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from streams.instruments.metrics import LLM_CACHE
from streams.settings import Settings
from streams.store.mongo import connect

log = logging.getLogger(__name__)


def cache_key(model: str, prompt_version: str, payload: Any) -> str:
    body = json.dumps({"model": model, "prompt_version": prompt_version, "input": payload},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class LLMCache:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.graphrag.enable_caching
        self.ttl = settings.cache.ttl_seconds
        self._coll = connect(settings, app_name="graphrag-llm-cache")[
            settings.cache.database or settings.mongodb.database]["llm_cache"]
        self._redis: Any = None
        if self.enabled and settings.cache.redis_url is not None:
            try:
                import redis.asyncio as aioredis
            except ImportError:
                raise ValueError("cache.redis_url is set but the 'redis' package is not installed "
                                 "(pip install 'graphrag-streams[redis]')") from None
            self._redis = aioredis.from_url(settings.cache.redis_url.get_secret_value())

    async def get(self, key: str) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        if self._redis is not None:
            try:
                raw = await self._redis.get(f"graphrag:llm:{key}")
                if raw is not None:
                    LLM_CACHE.labels("hit").inc()
                    return dict(json.loads(raw))
            except Exception as exc:  # Redis is an optimisation: never fail a call for it
                log.warning("redis cache read failed: %s", exc)
        try:
            doc = await asyncio.to_thread(self._coll.find_one, {"_id": key})
        except PyMongoError as exc:
            log.warning("llm cache read failed: %s", exc)
            doc = None
        if doc is None:
            LLM_CACHE.labels("miss").inc()
            return None
        LLM_CACHE.labels("hit").inc()
        value = dict(doc["value"])
        await self._redis_put(key, value)
        return value

    async def put(self, key: str, value: dict[str, Any], *, model: str, prompt_version: str) -> None:
        if not self.enabled:
            return
        doc = {"_id": key, "value": value, "model": model, "prompt_version": prompt_version,
               "created_at": datetime.now(UTC)}
        try:
            await asyncio.to_thread(self._coll.insert_one, doc)
        except DuplicateKeyError:
            pass
        except PyMongoError as exc:
            log.warning("llm cache write failed: %s", exc)
        await self._redis_put(key, value)

    async def _redis_put(self, key: str, value: dict[str, Any]) -> None:
        if self._redis is None:
            return
        try:
            await self._redis.set(f"graphrag:llm:{key}", json.dumps(value), ex=self.ttl or None)
        except Exception as exc:
            log.warning("redis cache write failed: %s", exc)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        self._coll.database.client.close()
