"""The LLM cache's optional Redis layer, against a real redis-server (Debian package), in
front of the MongoDB layer on FerretDB."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.llm.cache import LLMCache, cache_key
from tests.support import ROOT, DeploymentFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    found = subprocess.run([str(ROOT / "scripts" / "ensure-debian-package.sh"), "redis-server", "redis-server"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise RuntimeError(f"redis-server is needed for this test: {found.stderr}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([f"{found.stdout.strip()}/redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_redis_layer_answers_first_with_the_configured_ttl(deployment_factory: DeploymentFactory,
                                                           redis_url: str) -> None:
    d = deployment_factory({"cache": {"redis_url": redis_url, "ttl_seconds": 120}})
    key = cache_key("gpt-test", "extract-v1", {"text": "Phobos orbits Mars."})
    value = {"entities": [{"name": "Phobos"}], "relations": []}

    async def scenario() -> tuple[object, object, object]:
        cache = LLMCache(d.settings)
        try:
            assert await cache.get(key) is None
            await cache.put(key, value, model="gpt-test", prompt_version="extract-v1")
            # Both layers hold it; with the MongoDB copy gone the answer comes from Redis.
            cache._coll.delete_one({"_id": key})
            from_redis = await cache.get(key)
            # With the Redis copy gone the MongoDB layer answers (and refills Redis).
            cache._coll.insert_one({"_id": key, "value": value, "model": "gpt-test", "prompt_version": "v"})
            redis.Redis.from_url(redis_url).delete(f"graphrag:llm:{key}")
            from_mongo = await cache.get(key)
            refilled = redis.Redis.from_url(redis_url).get(f"graphrag:llm:{key}")
            return from_redis, from_mongo, refilled
        finally:
            await cache.aclose()

    from_redis, from_mongo, refilled = asyncio.run(scenario())
    assert from_redis == value and from_mongo == value and refilled is not None
    ttl = redis.Redis.from_url(redis_url).ttl(f"graphrag:llm:{key}")
    assert 0 < ttl <= 120


def test_a_dead_redis_never_fails_a_lookup(deployment_factory: DeploymentFactory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    d = deployment_factory({"cache": {"redis_url": f"redis://127.0.0.1:{dead}/0"}})
    key = cache_key("gpt-test", "extract-v1", {"text": "x"})

    async def scenario() -> object:
        cache = LLMCache(d.settings)
        try:
            await cache.put(key, {"entities": [], "relations": []}, model="gpt-test", prompt_version="extract-v1")
            return await cache.get(key)
        finally:
            await cache.aclose()

    assert asyncio.run(scenario()) == {"entities": [], "relations": []}
