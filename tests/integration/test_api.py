"""`graphrag-streams serve` over HTTP against the demo graph in the real store (FerretDB),
with submissions checked on the real broker. Each answer is compared with the store's
documents, not with fixed values."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import httpx
import networkx as nx
import pytest
from fastapi.testclient import TestClient

from streams.api import create_app, reads
from streams.query.snapshot import SnapshotHolder, load_snapshot
from streams.settings import load_settings
from tests.integration.demo_api import DemoApi
from tests.support import Deployment, consume_all

pytestmark = pytest.mark.integration

T_LINK = re.compile(r"^https://youtu\.be/(?P<video>[A-Za-z0-9_-]{11})\?t=(?P<t>\d+)$")


def _assert_moment(m: dict[str, Any]) -> None:
    link = T_LINK.match(m["url"])
    assert link, m["url"]
    assert link["video"] == m["video_id"] and int(link["t"]) == int(m["seconds"])
    video, clock = m["cite"].split("@")
    seconds = sum(int(part) * 60**i for i, part in enumerate(reversed(clock.split(":"))))
    assert video == m["video_id"] and seconds == int(m["seconds"])


# --------------------------------------------------------------------------- operations


def test_probes_metrics_and_openapi_docs(demo_api: DemoApi) -> None:
    assert demo_api.get("/livez").json() == {"status": "alive"}
    assert demo_api.get("/readyz").status_code == 200
    entity = demo_api.most_mentioned()
    assert demo_api.get(f"/api/entities/{entity['_id']}").status_code == 200
    metrics = demo_api.get("/metrics").text
    assert re.search(r'graphrag_api_request_seconds_count\{method="GET",route="/api/entities/\{entity_id\}",'
                     r'status="200"\} [1-9]', metrics), metrics[:2000]
    paths = set(demo_api.get("/openapi.json").json()["paths"])
    assert {"/api/query", "/api/entities", "/api/entities/{entity_id}", "/api/communities",
            "/api/communities/{community_id}", "/api/videos", "/api/videos/{video_id}", "/api/graph/export",
            "/api/pipeline"} <= paths
    docs = demo_api.get("/docs")
    assert docs.status_code == 200 and "/static/vendor/swagger-ui-bundle.js" in docs.text
    assert not re.findall(r'(?:src|href)="https?://', docs.text), "the docs page must not load from a CDN"


def test_the_explorer_page_and_its_vendored_script_are_served(demo_api: DemoApi) -> None:
    page = demo_api.get("/")
    assert page.status_code == 200 and 'id="graph"' in page.text
    assert "http" not in re.sub(r'href="/docs"', "", " ".join(re.findall(r'(?:src|href)="([^"]+)"', page.text)))
    script = demo_api.get("/static/vendor/cytoscape.min.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    recorded = demo_api.get("/static/vendor/VERSION").text  # written by scripts/vendor-js.sh
    for name in ("cytoscape.min.js", "swagger-ui-bundle.js", "swagger-ui.css"):
        served = demo_api.get(f"/static/vendor/{name}")
        assert served.status_code == 200
        assert f"{name} sha256 {hashlib.sha256(served.content).hexdigest()}" in recorded
    assert "Cytoscape Consortium" in demo_api.get("/static/vendor/cytoscape.LICENSE").text


# --------------------------------------------------------------------------- entities


def test_entity_search_matches_names_and_aliases_most_mentioned_first(demo_api: DemoApi) -> None:
    entity = demo_api.most_mentioned()
    word = max(entity["name"].split(), key=len)
    found = demo_api.get("/api/entities", search=word.upper(), limit=500).json()
    assert entity["_id"] in [e["id"] for e in found]
    expected = {d["_id"] for d in demo_api.store.coll("entities").find()
                if any(word.lower() in n.lower() for n in [d["name"], *d.get("aliases", [])])}
    assert {e["id"] for e in found} == expected
    by_name = demo_api.get("/api/entities", search=entity["name"].upper(), limit=500).json()
    assert by_name[0]["name"].lower() == entity["name"].lower()  # the exact name first
    everything = demo_api.get("/api/entities", limit=500).json()
    counts = [e["mention_count"] for e in everything]
    assert counts == sorted(counts, reverse=True)
    kind = entity["type"]
    typed = demo_api.get("/api/entities", type=kind.lower(), limit=500).json()
    assert typed and {e["type"] for e in typed} == {kind}
    assert len(typed) == demo_api.store.coll("entities").count_documents({"type": kind})
    assert demo_api.get("/api/entity-types").json()[kind] == len(typed)


def test_entity_detail_is_what_the_store_holds(demo_api: DemoApi) -> None:
    entity = demo_api.most_connected()
    detail = demo_api.get(f"/api/entities/{entity['_id']}").json()
    assert (detail["name"], detail["type"], detail["aliases"]) == (entity["name"], entity["type"], entity["aliases"])
    relations = list(demo_api.store.coll("relations").find({"$or": [{"source_id": entity["_id"]},
                                                                     {"target_id": entity["_id"]}]}))
    assert len(relations) <= 50, "the test needs an entity whose relations fit one response"
    assert {n["relation_id"] for n in detail["neighbours"]} == {r["_id"] for r in relations}
    by_id = {r["_id"]: r for r in relations}
    for n in detail["neighbours"]:
        r = by_id[n["relation_id"]]
        assert n["weight"] == r["weight"] and n["type"] == r["type"]
        other = r["target_id"] if n["direction"] == "out" else r["source_id"]
        assert n["entity"]["id"] == other
    mentions = list(demo_api.store.coll("entity_mentions").find({"entity_id": entity["_id"]}))
    assert len(mentions) <= 100, "the test needs an entity whose mentions fit one response"
    assert len(detail["evidence"]) == len(mentions) > 0
    starts = {(m["chunk_id"], int(m["start"])) for m in mentions}
    for ev in detail["evidence"]:
        _assert_moment(ev["moment"])
        assert (ev["chunk_id"], int(ev["moment"]["seconds"])) in starts
        assert ev["surface"].casefold() in ev["excerpt"].casefold()
    member_of = {c["_id"] for c in demo_api.store.coll("communities").find({"members": entity["_id"]})}
    assert {c["id"] for c in detail["communities"]} == member_of and member_of


def test_a_merged_entity_redirects_to_the_one_it_became(demo_api: DemoApi) -> None:
    survivor = demo_api.most_mentioned()
    gone = "merged" + survivor["_id"][6:]
    demo_api.store.coll("entity_redirects").insert_one({"_id": gone, "to": survivor["_id"], "type": survivor["type"]})
    try:
        moved = demo_api.get(f"/api/entities/{gone}")
        assert moved.status_code == 308 and moved.headers["location"] == f"/api/entities/{survivor['_id']}"
        followed = httpx.get(demo_api.url + f"/api/entities/{gone}", follow_redirects=True, timeout=30)
        assert followed.json()["id"] == survivor["_id"]
        hood = demo_api.get(f"/api/entities/{gone}/neighbourhood", limit=3)
        assert hood.headers["location"] == f"/api/entities/{survivor['_id']}/neighbourhood?limit=3"
    finally:
        demo_api.store.coll("entity_redirects").delete_one({"_id": gone})
    missing = demo_api.get("/api/entities/no-such-entity")
    assert missing.status_code == 404 and missing.json() == {"error": "no entity 'no-such-entity'"}
    assert demo_api.get("/api/no-such-route").json() == {"error": "Not Found"}
    wrong_method = httpx.delete(demo_api.url + "/api/videos", timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.json() == {"error": "Method Not Allowed"}


def test_the_neighbourhood_holds_the_strongest_relations_and_only_its_nodes(demo_api: DemoApi) -> None:
    entity = demo_api.most_connected()
    hood = demo_api.get(f"/api/entities/{entity['_id']}/neighbourhood", limit=5).json()
    ids = {n["id"] for n in hood["nodes"]}
    assert hood["center"] == entity["_id"] and entity["_id"] in ids
    assert all(e["source"] in ids and e["target"] in ids for e in hood["edges"])
    relations = sorted(demo_api.store.coll("relations").find({"$or": [{"source_id": entity["_id"]},
                                                                       {"target_id": entity["_id"]}]}),
                       key=lambda r: (-r["weight"], r["_id"]))
    strongest = relations[:5]
    assert {r["source_id"] for r in strongest} | {r["target_id"] for r in strongest} == ids
    among = demo_api.store.coll("relations").count_documents({"source_id": {"$in": list(ids)},
                                                              "target_id": {"$in": list(ids)}})
    assert len(hood["edges"]) == among


# --------------------------------------------------------------------------- communities, videos, pipeline


def test_communities_and_their_reports(demo_api: DemoApi) -> None:
    stored = list(demo_api.store.coll("communities").find())
    listed = demo_api.get("/api/communities", limit=1000).json()
    assert {c["id"] for c in listed} == {c["_id"] for c in stored} and stored
    sizes = [c["size"] for c in listed]
    assert sizes == sorted(sizes, reverse=True)
    level = max(c["level"] for c in stored)
    assert {c["id"] for c in demo_api.get("/api/communities", level=level).json()} == \
        {c["_id"] for c in stored if c["level"] == level}
    biggest = stored[[c["_id"] for c in stored].index(listed[0]["id"])]
    detail = demo_api.get(f"/api/communities/{biggest['_id']}").json()
    assert detail["title"] == biggest["report"]["title"] and detail["summary"] == biggest["report"]["summary"]
    assert {m["id"] for m in detail["members"]} == set(biggest["members"])
    assert len(detail["findings"]) == len(biggest["report"]["findings"])
    for f in detail["findings"]:
        for m in f["evidence"]:
            _assert_moment(m)
    assert demo_api.get("/api/communities/nope").status_code == 404
    assert demo_api.get("/api/communities", level=-1).status_code == 422


def test_videos_show_their_stages_and_chunks(demo_api: DemoApi) -> None:
    videos = demo_api.get("/api/videos").json()
    assert sorted(v["video_id"] for v in videos) == demo_api.video_ids
    assert {v["status"] for v in videos} == {"done"}
    one = demo_api.video_ids[0]
    detail = demo_api.get(f"/api/videos/{one}").json()
    chunks = list(demo_api.store.coll("chunks").find({"video_id": one}))
    assert detail["chunk_count"] == len(chunks) == len(detail["chunks"]) > 0
    assert [c["index"] for c in detail["chunks"]] == sorted(c["index"] for c in chunks)
    assert detail["stages"] == {k: v["state"] for k, v in
                                (demo_api.store.coll("videos").find_one({"_id": one}) or {})["stages"].items()}
    for c in detail["chunks"]:
        _assert_moment(c["moment"])
    missing = demo_api.get("/api/videos/AAAAAAAAAAA")
    assert missing.status_code == 404 and "AAAAAAAAAAA" in missing.json()["error"]


def test_the_pipeline_counts_videos_graph_and_dead_letters(demo_api: DemoApi) -> None:
    p = demo_api.get("/api/pipeline").json()
    assert p["videos_by_status"] == {"done": len(demo_api.video_ids)}
    stages = Counter((stage, s["state"]) for v in demo_api.store.coll("videos").find()
                     for stage, s in v["stages"].items())
    assert {(stage, state): n for stage, states in p["videos_by_stage"].items()
            for state, n in states.items()} == dict(stages)
    assert p["videos_by_stage"]["fetch"] == {"done": len(demo_api.video_ids)}
    assert p["counts"] == demo_api.store.reads.counts()
    assert p["dead_letters"] == 1 and p["dead_letters_error"] is None, p  # the fixture's undecodable request
    assert sum(p["dead_letters_by_stage"].values()) == sum(p["dead_letters_by_reason"].values()) == 1
    assert p["last_community_run"]["total"] == demo_api.store.coll("communities").count_documents({})


# --------------------------------------------------------------------------- answers


def test_a_local_answer_cites_stored_chunks_at_the_moment_of_the_name(demo_api: DemoApi) -> None:
    entity = demo_api.most_connected()
    answer = demo_api.get("/api/query", q=f"What about {entity['name']}?").json()
    assert answer["mode"] == "local" and answer["generated_by"] == "context"
    assert entity["_id"] in [e["id"] for e in answer["entities"]]
    assert answer["citations"]
    for c in answer["citations"]:
        _assert_moment(c)
        chunk = demo_api.store.coll("chunks").find_one({"_id": c["chunk_id"]})
        assert chunk is not None and chunk["video_id"] == c["video_id"]
        assert chunk["start"] - 0.1 <= c["seconds"] <= chunk["end"]  # seconds: down to a tenth
        assert c["url"] in answer["answer"]


def test_an_entity_stored_after_the_snapshot_is_answered_at_once(demo_api: DemoApi) -> None:
    """Answers read the in-memory graph, rebuilt first when the store changed: an entity
    written a moment ago is found by its alias, not only after the next background refresh."""
    store = demo_api.store
    assert demo_api.get("/api/query", q="What about Zyxwv Quillon?").json()["entities"] == []
    entity = {"_id": "answer-freshness-test", "name": "Quillon Zyxwv Institute", "aliases": ["Zyxwv Quillon"],
              "type": "ORGANIZATION", "mention_count": 1, "video_count": 1, "description": ""}
    store.coll("entities").insert_one(entity)
    store.graph.note_graph_changed()  # as every writer of the graph does after writing
    try:
        answer = demo_api.get("/api/query", q="What about Zyxwv Quillon?").json()
        assert [e["id"] for e in answer["entities"]] == [entity["_id"]]
    finally:
        store.coll("entities").delete_one({"_id": entity["_id"]})
        store.graph.note_graph_changed()
    assert demo_api.get("/api/query", q="What about Zyxwv Quillon?").json()["entities"] == []


def test_a_global_answer_uses_community_reports(demo_api: DemoApi) -> None:
    biggest = next(iter(demo_api.store.coll("communities").find().sort([("size", -1), ("_id", 1)]).limit(1)))
    words = " ".join(biggest["report"]["title"].replace(",", " ").split()[:3])
    answer = demo_api.get("/api/query", q=f"Tell me about {words}", mode="global").json()
    assert answer["mode"] == "global" and answer["communities"]
    stored = {c["_id"] for c in demo_api.store.coll("communities").find()}
    assert {c["id"] for c in answer["communities"]} <= stored
    for c in answer["citations"]:
        _assert_moment(c)


@pytest.mark.parametrize(("params", "message"), [
    ({}, "q: Field required"),
    ({"q": ""}, "q: String should have at least 1 character"),
    ({"q": "x" * 1001}, "q: String should have at most 1000 characters"),
    ({"q": "dark energy", "mode": "sideways"}, "mode: Input should be 'local' or 'global'"),
])
def test_bad_questions_get_a_clear_4xx(demo_api: DemoApi, params: dict[str, str], message: str) -> None:
    r = httpx.get(demo_api.url + "/api/query", params=params, timeout=30)
    assert r.status_code == 422 and r.json() == {"error": f"invalid request: {message}"}


# --------------------------------------------------------------------------- export


def test_the_graph_exports_to_graphml_gexf_and_json(demo_api: DemoApi) -> None:
    n_entities = demo_api.store.coll("entities").count_documents({})
    n_relations = demo_api.store.coll("relations").count_documents({})
    graphml = demo_api.get("/api/graph/export", format="graphml")
    assert graphml.headers["content-type"].startswith("application/graphml+xml")
    g = nx.read_graphml(io.BytesIO(graphml.content))
    assert (g.number_of_nodes(), g.number_of_edges()) == (n_entities, n_relations)
    entity = demo_api.most_connected()
    assert g.nodes[entity["_id"]]["label"] == entity["name"] and g.nodes[entity["_id"]]["type"] == entity["type"]
    gexf_bytes = demo_api.get("/api/graph/export", format="gexf").content
    gexf = nx.read_gexf(io.BytesIO(gexf_bytes))
    assert (gexf.number_of_nodes(), gexf.number_of_edges()) == (n_entities, n_relations)
    # GEXF reserves an edge's "type" (Gephi refuses anything but these three).
    edge_types = {e.get("type") for e in ElementTree.fromstring(gexf_bytes).iter("{http://www.gexf.net/1.2draft}edge")}
    assert edge_types <= {None, "directed", "undirected", "mutual"}, edge_types
    data = demo_api.get("/api/graph/export", format="json").json()
    assert (len(data["nodes"]), len(data["edges"])) == (n_entities, n_relations)
    weights = Counter(e["weight"] for e in data["edges"])
    assert weights == Counter(r["weight"] for r in demo_api.store.coll("relations").find())
    bad = demo_api.get("/api/graph/export", format="csv")
    assert bad.status_code == 422 and "format" in bad.json()["error"]


# --------------------------------------------------------------------------- submission


def _requested(d: Deployment) -> list[str]:
    return [m.key().decode() for m in consume_all(d.settings, f"{d.settings.kafka.topic_prefix}videos.requested")
            if m.key() is not None]


def test_submission_needs_the_token_validates_and_waits_for_the_broker(demo_api: DemoApi) -> None:
    d = demo_api.deployment
    before = Counter(_requested(d))
    url = demo_api.url + "/api/videos"
    body = {"video_ids": ["dQw4w9WgXcQ", "dQw4w9WgXcQ", "9bZkp7q19f0"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {demo_api.token}"}):
        r = httpx.post(url, json=body, headers=headers, timeout=30)
        assert r.status_code in (401, 403) and "bearer token" in r.json()["error"], (headers, r.text)
        assert demo_api.token not in r.text
    auth = {"Authorization": f"Bearer {demo_api.token}"}
    bad = httpx.post(url, json={"video_ids": ["dQw4w9WgXcQ", "../etc/passwd"]}, headers=auth, timeout=30)
    assert bad.status_code == 422 and "'../etc/passwd'" in bad.json()["error"] and "nothing was sent" in bad.text
    for wrong in ({"video_ids": []}, {"video_ids": "dQw4w9WgXcQ"}, {"ids": ["dQw4w9WgXcQ"]}):
        r = httpx.post(url, json=wrong, headers=auth, timeout=30)
        assert r.status_code == 422 and r.json()["error"].startswith("invalid request: video_ids"), r.text
    for field, wrong_value in (("languages", ["en", "en!"]), ("source", "ftp")):
        r = httpx.post(url, json={"video_ids": ["dQw4w9WgXcQ"], field: wrong_value}, headers=auth, timeout=30)
        assert r.status_code == 422 and r.json()["error"].startswith(f"invalid request: {field}"), r.text
    assert httpx.post(url, content=b"{oops", headers={**auth, "Content-Type": "application/json"},
                      timeout=30).status_code == 422
    assert Counter(_requested(d)) == before
    ok = httpx.post(url, json=body, headers=auth, timeout=30)
    assert ok.status_code == 202, ok.text
    assert ok.json() == {"submitted": 2, "topic": f"{d.settings.kafka.topic_prefix}videos.requested",
                         "video_ids": ["dQw4w9WgXcQ", "9bZkp7q19f0"]}
    after = Counter(_requested(d))  # acknowledged means already readable
    assert after - before == Counter({"dQw4w9WgXcQ": 1, "9bZkp7q19f0": 1})
    too_many = httpx.post(url, json={"video_ids": ["dQw4w9WgXcQ"] * 501}, headers=auth, timeout=30)
    assert too_many.status_code == 413 and "api.max_videos_per_request" in too_many.json()["error"]


def test_without_a_token_configured_submission_is_off(demo_api: DemoApi) -> None:
    settings = demo_api.deployment.settings.model_copy(
        update={"api": demo_api.deployment.settings.api.model_copy(update={"token": None})})
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/videos", json={"video_ids": ["dQw4w9WgXcQ"]}, headers={"Authorization": "Bearer x"})
        assert r.status_code == 403 and "api.token" in r.json()["error"]


def test_a_store_that_is_down_is_a_503_not_a_traceback(demo_api: DemoApi, tmp_path: Any) -> None:
    config = tmp_path / "dead.yaml"
    config.write_text(demo_api.deployment.config_path.read_text()
                      .replace(demo_api.deployment.services.mongo_uri, "mongodb://127.0.0.1:9"))
    settings = load_settings(config, env={})
    settings = settings.model_copy(update={"mongodb": settings.mongodb.model_copy(
        update={"server_selection_timeout_ms": 300})})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200
        r = client.get("/api/entities")
        assert r.status_code == 503 and r.json() == {"error": "the graph store is not reachable; try again shortly"}


# --------------------------------------------------------------------------- the in-memory snapshot


def test_the_snapshot_and_the_store_give_the_same_answers(demo_api: DemoApi) -> None:
    """Every read, from the in-memory snapshot and straight from the store, for many
    entities, communities and videos: the same response."""
    store = demo_api.store
    snap = load_snapshot(store)
    entity_ids = [e["_id"] for e in store.coll("entities").find({}, {"_id": 1}).sort("mention_count", -1).limit(15)]
    assert len(entity_ids) == 15
    for eid in entity_ids:
        assert reads.entity_detail(store, snap, eid) == reads.entity_detail(store, None, eid)
        assert reads.neighbourhood(store, snap, eid, limit=8) == reads.neighbourhood(store, None, eid, limit=8)
    for search, kind in (("", None), ("a", None), ("e", "CONCEPT"), ("zzzz", None)):
        assert reads.search_entities(store, snap, search, kind, 500) == reads.search_entities(store, None, search,
                                                                                               kind, 500)
    assert reads.entity_types(store, snap) == reads.entity_types(store, None)
    for level in (None, 0):
        assert reads.list_communities(store, snap, level, 1000) == reads.list_communities(store, None, level, 1000)
    for c in store.communities.find():
        assert reads.community_detail(store, snap, c["_id"]) == reads.community_detail(store, None, c["_id"])
    for v in demo_api.video_ids:
        assert reads.video_detail(store, snap, v) == reads.video_detail(store, None, v)


def test_an_entity_newer_than_the_snapshot_is_read_from_the_store(demo_api: DemoApi) -> None:
    store = demo_api.store
    snap = load_snapshot(store)
    eid = demo_api.most_connected()["_id"]
    older = dataclasses.replace(snap, entities={k: v for k, v in snap.entities.items() if k != eid},
                                relations_by_entity={}, mentions_by_entity={}, communities_by_entity={},
                                chunk_texts={})
    expected = reads.entity_detail(store, None, eid)
    assert expected is not None and expected.neighbours and expected.evidence
    assert reads.entity_detail(store, older, eid) == expected
    assert reads.neighbourhood(store, older, eid) == reads.neighbourhood(store, None, eid)


def test_the_snapshot_is_rebuilt_only_when_the_graph_changed(demo_api: DemoApi) -> None:
    store = demo_api.store
    loads: list[float] = []

    def counting_loader(s: Any, previous: Any) -> Any:
        loads.append(0.0)
        return load_snapshot(s, previous)

    holder = SnapshotHolder(store, refresh_seconds=3600, loader=counting_loader)
    assert holder.current is None and holder.refresh() and len(loads) == 1
    assert not holder.refresh() and len(loads) == 1
    run = {"_id": "snapshot-test-run", "started_at": datetime.now(UTC)}
    store.coll("community_runs").insert_one(run)  # a community run happened
    try:
        assert holder.refresh() and len(loads) == 2
        assert not holder.refresh()
    finally:
        store.coll("community_runs").delete_one({"_id": run["_id"]})
    assert holder.refresh() and len(loads) == 3
    aged = SnapshotHolder(store, refresh_seconds=3600, max_age_seconds=0, loader=counting_loader)
    assert aged.refresh() and aged.refresh() and len(loads) == 5  # too old: rebuilt although unchanged


def test_the_pipeline_answers_without_kafka_and_says_why(demo_api: DemoApi, tmp_path: Any) -> None:
    config = tmp_path / "no-kafka.yaml"
    config.write_text(demo_api.deployment.config_path.read_text()
                      .replace(demo_api.deployment.services.bootstrap, "127.0.0.1:9"))
    with TestClient(create_app(load_settings(config, env={}))) as client:
        p = client.get("/api/pipeline").json()
        assert p["dead_letters"] is None and p["dead_letters_error"].startswith("could not read the dead-letter")
        assert p["counts"] == demo_api.store.reads.counts()
