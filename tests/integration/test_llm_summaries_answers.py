"""The LLM community summariser and the LLM answer writer through the local OpenAI fake
(tests/fakes/fake_openai.py), with the answer cache in the real FerretDB: what is sent, what
is kept from the answer, and that a second identical summary costs no call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from streams.communities.summarize import SUMMARY_PROMPT_VERSION, LLMSummarizer
from streams.llm.cache import LLMCache
from streams.llm.client import LLMClient
from streams.model.citations import Citation
from streams.model.reports import CommunityContext, MemberInfo, RelationInfo
from streams.query.answers import Answer, answer_with_llm
from streams.settings import Settings
from streams.store.mongo import connect
from tests.fakes.fake_openai import FakeOpenAI
from tests.support import DeploymentFactory

pytestmark = pytest.mark.integration

PHOBOS = Citation(video_id="Pw0IZg7_4mo", chunk_id="c-phobos", seconds=65.0)
DEIMOS = Citation(video_id="Pw0IZg7_4mo", chunk_id="c-deimos", seconds=130.0)
CONTEXT = CommunityContext(
    community_id="L0-moons", level=0,
    members=[MemberInfo("e-mars", "Mars", "LOCATION", "The red planet.", 9, 2),
             MemberInfo("e-phobos", "Phobos", "LOCATION", "The larger moon of Mars.", 5, 1),
             MemberInfo("e-deimos", "Deimos", "LOCATION", "The smaller moon of Mars.", 4, 1)],
    relations=[RelationInfo("r1", "e-phobos", "e-mars", "ORBIT", "Phobos orbits Mars.", 7.0, (PHOBOS,)),
               RelationInfo("r2", "e-deimos", "e-mars", "ORBIT", "Deimos orbits Mars farther out.", 7.0, (DEIMOS,))])


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def _settings(deployment_factory: DeploymentFactory, fake: FakeOpenAI) -> Settings:
    return deployment_factory({"openai": {"api_key": "sk-test-not-a-real-key", "base_url": fake.base_url,
                                          "model": "gpt-test", "timeout_seconds": 5.0},
                               "graphrag": {"extraction": {"extractor": "llm"}}}).settings


async def _summarize(settings: Settings) -> Any:
    client, cache = LLMClient(settings), LLMCache(settings)
    try:
        return await LLMSummarizer(client, cache, findings=3).summarize(CONTEXT)
    finally:
        await client.aclose()
        await cache.aclose()


def test_llm_summary_request_parsed_report_and_cache(deployment_factory: DeploymentFactory,
                                                     fake: FakeOpenAI) -> None:
    s = _settings(deployment_factory, fake)
    report = asyncio.run(_summarize(s))
    assert fake.stats()["requests"] == 1
    body = fake.state.bodies[0]
    assert body["model"] == "gpt-test"
    fmt = body["response_format"]["json_schema"]
    assert fmt["name"] == "community_report" and fmt["strict"] is True
    assert set(fmt["schema"]["required"]) == {"title", "summary", "findings", "rating", "rating_explanation"}
    user = body["messages"][1]["content"]
    assert "Community L0-moons (level 0)" in user and "- Phobos (LOCATION)" in user
    assert "- Phobos orbit Mars: Phobos orbits Mars." in user  # the relation, verb in words
    # The fake answers from the names in the prompt (a finding's claim is the first name, its
    # entity list empty); the report keeps the answer's text and rating.
    assert report.generated_by == "openai:gpt-test" and report.prompt_version == SUMMARY_PROMPT_VERSION
    assert report.title.startswith("Title about Mars, Phobos, Deimos") and report.rating == 5.0
    assert [(f.text, f.entity_ids) for f in report.findings] == [("Mars", [])]
    # The parsed answer is stored in the llm_cache collection under the summary's prompt version ...
    coll = connect(s, app_name="test")[s.mongodb.database]["llm_cache"]
    (doc,) = list(coll.find({"prompt_version": SUMMARY_PROMPT_VERSION}))
    assert doc["model"] == "gpt-test" and doc["value"]["title"] == report.title
    # ... and a second identical summary is served from it: no call, the same report.
    again = asyncio.run(_summarize(s))
    assert fake.stats()["requests"] == 1
    assert again == report


def test_an_invalid_llm_report_falls_back_to_the_extractive_one(deployment_factory: DeploymentFactory,
                                                                fake: FakeOpenAI) -> None:
    s = _settings(deployment_factory, fake)
    fake.fault("schema_violation")
    report = asyncio.run(_summarize(s))
    assert report.generated_by == "extractive"
    assert connect(s, app_name="test")[s.mongodb.database]["llm_cache"].count_documents({}) == 0


def test_the_llm_writes_the_answer_and_cites_only_numbered_sources(deployment_factory: DeploymentFactory,
                                                                   fake: FakeOpenAI) -> None:
    s = _settings(deployment_factory, fake)
    context = Answer("What orbits Mars?", "local", "About Mars:\n- Phobos orbit Mars", [PHOBOS, DEIMOS])

    async def write() -> Answer:
        client = LLMClient(s)
        try:
            return await answer_with_llm(context, client)
        finally:
            await client.aclose()

    answer = asyncio.run(write())
    body = fake.state.bodies[0]
    assert "response_format" not in body  # free text, not a schema
    user = body["messages"][1]["content"]
    assert user.startswith("Question: What orbits Mars?") and f"[1] {PHOBOS.cite}" in user
    assert f"[2] {DEIMOS.cite}" in user
    # The fake answers "... [1]." : [1] becomes the first source's citation, and only it is kept.
    assert answer.text.startswith(f"An answer based on the context [{PHOBOS.cite}].")
    assert answer.citations == [PHOBOS] and answer.generated_by == "openai:gpt-test"
    assert PHOBOS.url in answer.text and DEIMOS.cite not in answer.text
