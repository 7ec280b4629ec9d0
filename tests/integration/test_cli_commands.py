"""The operator commands beyond --help, against the real broker and FerretDB: `wait`,
`graph`, `dlq`, `lag`, `communities run` / `communities list` and `resolve merge`, each
checked against what the store or the broker holds (read here, not through the command's
own code path); and a canary scan: a deployment whose every secret is one distinctive
value runs, and that value shows up in no log, no command output, no metrics page, no
topic record and no stored document.

`--help` and the errors that need no services: tests/unit/test_cli.py; submit, status and
topics: tests/integration/test_cli.py.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence

import pytest
from bson import json_util
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.worker import parse_stages
from streams.kafka.clients import client_config
from streams.kafka.dlq import parse_headers
from streams.kafka.topics import Stage, topics_for
from streams.monitoring.lag import stage_groups
from streams.settings import Settings
from streams.store import GRAPH_COLLECTIONS, GraphStore
from tests.support import (
    CORPUS,
    Deployment,
    DeploymentFactory,
    Services,
    assert_no_stall,
    consume_all,
    evidence_mismatches,
    extraction_record,
    free_port_block,
    manifest,
    produce_raw,
    wait_quiescent,
    wait_until,
)

pytestmark = pytest.mark.integration

# The three smallest corpus transcripts: enough for a graph with communities, fast to index.
VIDEOS = [v["video_id"] for v in sorted(manifest(), key=lambda v: v["chars"])[:3]]
NEVER_SUBMITTED = "dQw4w9WgXcQ"
LOCAL = {"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                      "extraction": {"extractor": "offline"},
                      "communities": {"interval_seconds": 86400},
                      "resolution": {"merge_interval_seconds": 86400}}}


# --------------------------------------------------------------------------- the broker, read here

def broker_offsets(settings: Settings, group: str, topics: Sequence[str]) -> dict[tuple[str, int], tuple[int | None,
                                                                                                        int, int]]:
    """(topic, partition) -> (the group's committed offset or None, low watermark, high
    watermark), straight from the broker: a consumer's watermarks and the admin API's
    committed offsets, not the lag monitor."""
    conf = client_config(settings.kafka)
    admin = AdminClient(conf)
    reader = Consumer({**conf, "group.id": f"test-offsets-{random.randrange(1 << 30)}", "enable.auto.commit": False})
    try:
        md = admin.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p) for t in topics for p in sorted(md[t].partitions)]
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)], request_timeout=10)[group]
        committed = {(tp.topic, tp.partition): tp.offset for tp in fut.result().topic_partitions}
        out: dict[tuple[str, int], tuple[int | None, int, int]] = {}
        for tp in tps:
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            c = committed.get((tp.topic, tp.partition))
            out[(tp.topic, tp.partition)] = (c if c is not None and c >= 0 else None, low, high)
        return out
    finally:
        reader.close()


def all_broker_offsets(settings: Settings) -> dict[tuple[str, str, int], tuple[int | None, int, int]]:
    return {(group, t, p): v for group, topics in stage_groups(settings).items()
            for (t, p), v in broker_offsets(settings, group, topics).items()}


def expected_lag(committed: int | None, low: int, high: int) -> int:
    return high - (committed if committed is not None else low)


LAG_PARTITION_ROW = re.compile(r"^(\S+)\s+(\S+)\s+(\d+)\s+(-|\d+)\s+(\d+)\s+(\d+)$")
LAG_STAGE_ROW = re.compile(r"^(\w+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)$")


def parse_lag_text(out: str) -> tuple[dict[str, tuple[str, str, int, int]],
                                      dict[tuple[str, str, int], tuple[int | None, int, int]]]:
    """`lag`'s two tables: stage -> (group, topic, lag, replicas) and (group, topic,
    partition) -> (committed, log end, lag)."""
    stages_part, partitions_part = out.split("\n\n", 1)
    stages: dict[str, tuple[str, str, int, int]] = {}
    for line in stages_part.splitlines()[1:]:
        m = LAG_STAGE_ROW.match(line)
        assert m, f"not a stage row: {line!r}"
        stages[m[1]] = (m[2], m[3], int(m[4]), int(m[6]))
    partitions: dict[tuple[str, str, int], tuple[int | None, int, int]] = {}
    for line in partitions_part.splitlines()[1:]:
        m = LAG_PARTITION_ROW.match(line)
        assert m, f"not a partition row: {line!r}"
        partitions[(m[1], m[2], int(m[3]))] = (None if m[4] == "-" else int(m[4]), int(m[5]), int(m[6]))
    return stages, partitions


def assert_lag_matches_broker(d: Deployment) -> dict[tuple[str, str, int], tuple[int | None, int, int]]:
    """`lag` (text and --json), row by row, equals the offsets read from the broker around it."""
    before = all_broker_offsets(d.settings)
    text = d.cli("lag").stdout
    as_json = json.loads(d.cli("lag", "--json").stdout)
    after = all_broker_offsets(d.settings)
    assert before == after, "the offsets moved while `lag` ran; the test needs a pipeline at rest"
    stages, partitions = parse_lag_text(text)
    want = {k: (c, high, expected_lag(c, low, high)) for k, (c, low, high) in before.items()}
    assert partitions == want
    assert {(r["group"], r["topic"], r["partition"]): (r["committed"], r["log_end"], r["lag"])
            for r in as_json["partitions"]} == want
    # A stage's lag: over the topics it scales on (its inputs but the aliases topic, whose
    # replay at start is not work).
    names = topics_for(d.settings)
    for stage in Stage:
        if stage.value not in stages:
            continue
        group = stages[stage.value][0]
        scaling = names.scaling(stage)
        lag = sum(v[2] for (g, t, _), v in want.items() if g == group and t in scaling)
        assert stages[stage.value][1:3] == (scaling[0], lag), (stage, stages[stage.value])
        row = next(s for s in as_json["stages"] if s["stage"] == stage.value)
        assert (row["group"], row["topic"], row["lag"]) == (group, scaling[0], lag), row
    assert set(stages) == {s["stage"] for s in as_json["stages"]} and len(stages) >= 7
    return before


# --------------------------------------------------------------------------- the small run

def _landed(d: Deployment, key: bytes, value: bytes) -> list[tuple[int, int]]:
    """Where the records we produced onto the ingest topic landed: (partition, offset) each."""
    found = [(m.partition(), m.offset()) for m in consume_all(d.settings, topics_for(d.settings).requested)
             if m.key() == key and m.value() == value]
    assert len(found) == COPIES, found
    return found


BAD_RECORDS = [  # (key, value, reason)
    (b"bad-json-record", b'{"video_id": "4ClLMrfYmmw", ', "invalid_json"),
    (b"bad-id-record", json.dumps({"video_id": "not/a/video!"}).encode(), "invalid_video_id"),
]
# Each bad record is sent this often (same key, so on one partition at successive offsets):
# every copy is a dead letter of its own, and no partition number equals all its offsets.
COPIES = 3


def test_wait_graph_dlq_and_lag_report_what_the_store_and_the_broker_hold(
        deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory(LOCAL)
    requested = topics_for(d.settings).requested
    worker = d.start_worker("all")
    store = GraphStore.from_settings(d.settings)
    d.cli("submit", *VIDEOS[:2])
    produce_raw(d.settings, requested, [(k, v) for k, v, _ in BAD_RECORDS for _ in range(COPIES)])

    # wait: returns 0 once both videos are done, and not before.
    waited = d.cli("wait", *VIDEOS[:2], "--timeout", "400", "--interval", "1", timeout=450)
    docs = {v["_id"]: v for v in store.videos.find(VIDEOS[:2])}
    statuses = {v: docs.get(v, {}).get("status") for v in VIDEOS[:2]}
    assert statuses == dict.fromkeys(VIDEOS[:2], "done"), f"`wait` returned with {statuses}:\n{waited.stderr}"
    progress = waited.stderr.strip().splitlines()
    assert re.search(r"\] 0/2 videos finished \(", progress[0]), progress  # it did wait
    chunks = sum(docs[v]["chunk_count"] for v in VIDEOS[:2])
    assert chunks >= 2 and all(docs[v]["chunks_stored"] == docs[v]["chunk_count"] for v in VIDEOS[:2])
    assert re.search(rf"\] 2/2 videos finished \(2 done\); chunks stored {chunks}/{chunks}$", progress[-1]), progress
    assert all(re.search(r"\] [01]/2 videos finished", line) for line in progress[:-1]), progress
    assert waited.stdout == ""
    wait_quiescent(d.settings, workers=[worker])

    # wait on an ID nobody submitted: exit 1 after the timeout, saying so.
    never = d.cli("wait", NEVER_SUBMITTED, "--timeout", "3", "--interval", "1", check=False)
    assert never.returncode == 1, never
    lines = never.stderr.strip().splitlines()
    assert lines[-1] == "error: timed out after 3s with 1 video(s) unfinished", lines
    assert len(lines) >= 2 and all(re.search(r"\] 0/1 videos finished \(1 queued\); chunks stored 0/\?$", line)
                                   for line in lines[:-1]), lines
    nothing = d.cli("wait", check=False)
    assert nothing.returncode == 2 and "error: no video IDs to wait for" in nothing.stderr

    # graph: the counts of the store's collections, and the most connected entities.
    counts = {name: store.db[name].count_documents({}) for name in GRAPH_COLLECTIONS}
    assert counts["videos"] == 2 and counts["chunks"] == chunks and counts["relations"] > 0, counts
    graph = json.loads(d.cli("graph", "--json", "--top", "5").stdout)
    assert graph["counts"] == counts == store.reads.counts()
    degree: Counter[str] = Counter()
    for r in store.db.relations.find({}, {"source_id": 1, "target_id": 1}):
        degree[r["source_id"]] += 1
        degree[r["target_id"]] += 1
    top = sorted(degree.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(e["_id"], e["degree"]) for e in graph["top_entities"]] == top
    entities = {e["_id"]: e for e in store.db.entities.find({"_id": {"$in": [eid for eid, _ in top]}})}
    text = d.cli("graph", "--top", "5").stdout.splitlines()
    assert text[0] == (f"videos {counts['videos']}  chunks {counts['chunks']}  entities {counts['entities']}  "
                       f"relations {counts['relations']}  mentions {counts['entity_mentions']}  "
                       f"relation evidence {counts['relation_evidence']}"), text[0]
    lines = [line for line in text if re.match(r"^  \S", line)]
    assert len(lines) == 5
    for line, (eid, deg) in zip(lines, top, strict=True):
        e = entities[eid]
        videos = len(store.db.entity_mentions.distinct("video_id", {"entity_id": eid}))
        assert line == (f"  {e['name']} ({e['type']}): {deg} relations, {e['mention_count']} mentions "
                        f"in {videos} video(s)"), line
        assert e["mention_count"] == store.db.entity_mentions.count_documents({"entity_id": eid})
    assert evidence_mismatches(store) == []

    # dlq: exactly the bad records, each copy once, with their reasons, keys and origins.
    where = {key: _landed(d, key, value) for key, value, _ in BAD_RECORDS}
    n_bad = len(BAD_RECORDS) * COPIES
    listed = [json.loads(line) for line in d.cli("dlq", "--json").stdout.splitlines()]
    got = sorted((r["key"], r["value"], r["headers"]["stage"], r["headers"]["reason"], r["headers"]["original.topic"],
                  int(r["headers"]["original.partition"]), int(r["headers"]["original.offset"])) for r in listed)
    assert got == sorted((k.decode(), v.decode(), "fetch", reason, requested, p, o)
                         for k, v, reason in BAD_RECORDS for p, o in where[k])
    dlq = d.cli("dlq")
    assert dlq.stderr.strip() == f"{n_bad} record(s)"
    rows = dlq.stdout.splitlines()
    assert len(rows) == n_bad
    for key, _, reason in BAD_RECORDS:
        for p, o in where[key]:
            origin = rf"^fetch\s+{reason}\s+{re.escape(requested)}\[{p}\]@{o} attempt 1: \S"
            assert sum(bool(re.match(origin, row)) for row in rows) == 1, (reason, p, o, rows)
    assert len(d.cli("dlq", "--limit", "4", "--json").stdout.splitlines()) == 4
    # What `dlq` read is what the broker holds.
    in_topic = consume_all(d.settings, topics_for(d.settings).dlq)
    assert sorted((m.key(), parse_headers(m.headers())["reason"]) for m in in_topic) == sorted(
        (k, reason) for k, _, reason in BAD_RECORDS for _ in range(COPIES))

    # lag at rest: every group has committed every partition to its end.
    at_rest = assert_lag_matches_broker(d)
    assert all(expected_lag(c, low, high) == 0 for c, low, high in at_rest.values())
    ingest = {k: v for k, v in at_rest.items() if k[1] == requested}
    assert sum(high for _, _, high in ingest.values()) == 2 + n_bad
    assert_no_stall(worker)

    # lag with the worker stopped and requests queued: the fetch stage lags by exactly them.
    d.stop_workers()
    queued = 5
    produce_raw(d.settings, requested, [(f"queued-{i}".encode(), VIDEOS[2].encode()) for i in range(queued)])
    backlog = assert_lag_matches_broker(d)
    fetch_group = next(g for g, topics in stage_groups(d.settings, [Stage.FETCH]).items())
    assert sum(expected_lag(c, low, high) for (g, t, _), (c, low, high) in backlog.items()
               if g == fetch_group and t == requested) == queued
    assert all(expected_lag(c, low, high) == 0 for (g, _, _), (c, low, high) in backlog.items() if g != fetch_group)
    stages, _ = parse_lag_text(d.cli("lag").stdout)
    assert stages["fetch"][2] == queued and stages["fetch"][3] >= 1, stages["fetch"]
    assert all(lag == 0 for stage, (_, _, lag, _) in stages.items() if stage != "fetch"), stages


# --------------------------------------------------------------------------- communities

COMMUNITY_RUN = re.compile(r"^(\d+) communities \((.*)\): (\d+) new, (\d+) changed, (\d+) unchanged, (\d+) removed; "
                           r"(\d+) summarised \((\w+)\) in [\d.]+s; (\d+) entities merged$")
COMMUNITY_ROW = re.compile(r"^\[(\S+)\] level (\d+), (\d+) entities, rating (\S+): (.*)$")


def test_communities_run_and_list_print_what_the_communities_collection_holds(
        deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory(LOCAL)
    worker = d.start_worker("all")
    store = GraphStore.from_settings(d.settings)
    d.cli("submit", *VIDEOS)
    d.cli("wait", *VIDEOS, "--timeout", "400", "--interval", "2", timeout=450)
    wait_quiescent(d.settings, workers=[worker])
    assert store.db.communities.count_documents({}) == 0  # the timer is a day away: nothing ran yet
    d.cli("communities", "list")  # nothing to list, and no failure for it
    assert d.cli("communities", "list").stdout == ""

    report = json.loads(d.cli("communities", "run", "--no-merge", "--json").stdout)
    docs = list(store.db.communities.find())
    print(f"\ncommunities of {len(VIDEOS)} videos: {report['total']} ({report['levels']})")
    assert len(docs) == report["total"] > 0
    assert {str(k): v for k, v in Counter(c["level"] for c in docs).items()} == {
        str(k): v for k, v in report["levels"].items()}
    assert report["new"] == report["summarized"] == report["total"] and report["merged_entities"] == 0, report
    assert (report["changed"], report["unchanged"], report["removed"]) == (0, 0, 0)
    runs = list(store.db.community_runs.find())
    assert len(runs) == 1 and runs[0]["total"] == report["total"]
    members = [m for c in docs for m in c["members"]]
    assert set(members) <= {e["_id"] for e in store.db.entities.find({}, {"_id": 1})}
    assert all(c["size"] == len(c["members"]) for c in docs)

    # A second run on the unchanged graph: every community unchanged, none summarised again.
    again = d.cli("communities", "run", "--no-merge").stdout.splitlines()
    m = COMMUNITY_RUN.match(again[0])
    assert m, again
    levels = ", ".join(f"level {k}: {v}" for k, v in sorted(Counter(c["level"] for c in docs).items()))
    assert (int(m[1]), m[2], int(m[3]), int(m[4]), int(m[5]), int(m[6]), int(m[7]), int(m[9])) == (
        len(docs), levels, 0, 0, len(docs), 0, 0, 0), again[0]
    assert again[1].startswith("phases: ")
    assert store.db.community_runs.count_documents({}) == 2
    assert sorted(c["_id"] for c in store.db.communities.find()) == sorted(c["_id"] for c in docs)

    # list --json: the collection's documents, largest first.
    by_id = {c["_id"]: c for c in store.db.communities.find()}
    listed = json.loads(d.cli("communities", "list", "--json", "--top", "1000").stdout)
    assert sorted(c["_id"] for c in listed) == sorted(by_id)
    assert [c["size"] for c in listed] == sorted((c["size"] for c in by_id.values()), reverse=True)
    for c in listed:
        assert (c["level"], c["size"], c["members"], c["report"]["title"]) == (
            by_id[c["_id"]]["level"], by_id[c["_id"]]["size"], by_id[c["_id"]]["members"],
            by_id[c["_id"]]["report"]["title"])

    # list: the top 3 with their reports, each line the stored document's.
    top = 3
    text = d.cli("communities", "list", "--top", str(top)).stdout.splitlines()
    heads = [COMMUNITY_ROW.match(line) for line in text if line.startswith("[")]
    assert len(heads) == min(top, len(by_id)) and all(heads), text
    shown = set()
    for h in heads:
        assert h is not None
        c = by_id[h[1]]
        shown.add(h[1])
        assert (int(h[2]), int(h[3]), h[4], h[5]) == (c["level"], c["size"], str(c["report"]["rating"]),
                                                      c["report"]["title"]), h[0]
    assert min(by_id[i]["size"] for i in shown) >= max((c["size"] for i, c in by_id.items() if i not in shown),
                                                       default=0)
    summaries = [line for line in text if line.startswith("    ") and not line.startswith("    - ")]
    assert summaries == [f"    {by_id[h[1]]['report']['summary'][:300]}" for h in heads if h is not None
                         and by_id[h[1]]["report"].get("summary")]

    # --level: only that level's communities.
    level = max(c["level"] for c in by_id.values())
    at_level = [COMMUNITY_ROW.match(line) for line in d.cli("communities", "list", "--level", str(level),
                                                             "--top", "1000").stdout.splitlines()
                if line.startswith("[")]
    assert sorted(h[1] for h in at_level if h) == sorted(i for i, c in by_id.items() if c["level"] == level)
    assert d.cli("communities", "list", "--level", str(level + 1)).stdout == ""  # no such level
    assert_no_stall(worker)


# --------------------------------------------------------------------------- resolve merge

RESOLUTION = [Stage.ROUTE, Stage.RESOLVE, Stage.ASSEMBLE, Stage.SINK]
MERGE_LINE = re.compile(r"^(\d+) entities merged across blocks; (\d+) chunks resolved differently than before; "
                        r"entities (\d+) -> (\d+); pairs sharing a normalised name (\d+) -> (\d+); "
                        r"(\d+) alias records written$")


def test_resolve_merge_merges_two_entities_in_the_store(deployment_factory: DeploymentFactory) -> None:
    d = deployment_factory({"graphrag": {"resolution": {"merge_interval_seconds": 86400}}})
    worker = d.start_worker("route,resolve,assemble,sink")
    produce_raw(d.settings, f"{d.settings.kafka.topic_prefix}graph.extractions", [
        (None, extraction_record(0, [("Richard Posner", "PERSON"), ("Mars", "LOCATION")], [("Richard Posner", "Mars")],
                                 chunk_count=3)),
        (None, extraction_record(1, [("Posner", "PERSON"), ("Mars", "LOCATION")], [("Posner", "Mars")], chunk_count=3)),
        (None, extraction_record(2, [("Richard Posner", "PERSON"), ("Phobos", "LOCATION")], chunk_count=3)),
    ])
    store = GraphStore.from_settings(d.settings)
    wait_until(lambda: store.db.chunks.count_documents({}) == 3, 180,
               message=lambda: f"3 chunks stored; log:\n{worker.log_tail()}")
    wait_quiescent(d.settings, workers=[worker], stages=RESOLUTION)
    by_name = {e["name"]: e for e in store.db.entities.find()}
    assert sorted(by_name) == ["Mars", "Phobos", "Posner", "Richard Posner"]
    posner, richard = by_name["Posner"]["_id"], by_name["Richard Posner"]["_id"]
    assert (by_name["Posner"]["mention_count"], by_name["Richard Posner"]["mention_count"]) == (1, 2)
    before = store.reads.snapshot()

    # --dry-run: says what it would merge, changes nothing.
    dry = d.cli("resolve", "merge", "--dry-run").stdout.splitlines()
    assert dry[0] == "would merge 1 entities across blocks; 4 entities now", dry
    assert re.match(r"^  Posner \(PERSON\) -> Richard Posner \(PERSON\): \S", dry[1]) and len(dry) == 2, dry
    assert store.reads.snapshot() == before
    assert store.db.entity_redirects.count_documents({}) == 0

    out = d.cli("resolve", "merge").stdout.splitlines()
    m = MERGE_LINE.match(out[0])
    assert m, out
    assert (int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[7])) == (1, 1, 4, 3, 2), out[0]
    assert out[1:] and re.match(r"^  Posner \(PERSON\) -> Richard Posner \(PERSON\): \S", out[1]), out
    # The store: the merged entity is gone and redirected to the survivor, which has every
    # mention and the relation with both chunks' evidence.
    assert sorted(e["name"] for e in store.db.entities.find()) == ["Mars", "Phobos", "Richard Posner"]
    assert store.db.entities.find_one({"_id": posner}) is None
    assert [(r["_id"], r["to"]) for r in store.db.entity_redirects.find()] == [(posner, richard)]
    survivor = store.db.entities.find_one({"_id": richard})
    assert survivor is not None and survivor["mention_count"] == 3
    assert {m["entity_id"] for m in store.db.entity_mentions.find({"surface": {"$in": ["Posner", "Richard Posner"]}})
            } == {richard}
    rel = list(store.db.relations.find())
    assert len(rel) == 1 and (rel[0]["source_id"], rel[0]["evidence_count"]) == (richard, 2), rel
    assert evidence_mismatches(store) == []
    again = json.loads(d.cli("resolve", "merge", "--json").stdout)  # idempotent
    assert (again["entities_before"], again["entities_after"], again["chunks_rewritten"],
            again["aliases_published"], again["dry_run"]) == (3, 3, 0, 0, False), again
    assert store.db.entities.count_documents({}) == 3
    assert_no_stall(worker)


# --------------------------------------------------------------------------- canary secret scan

CANARY = "canary-7f3a9c-secret"


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as err:
        return str(err.read().decode())


def test_no_secret_leaks_into_logs_outputs_metrics_topics_or_the_store(
        deployment_factory: DeploymentFactory, services: Services) -> None:
    apps = parse_stages("all")
    base = free_port_block(len(apps))
    assert services.mongo_uri.startswith("mongodb://") and "@" not in services.mongo_uri
    # FerretDB (SQLite backend) takes any user and password over PLAIN; the local Kafka
    # listener is PLAINTEXT, where librdkafka accepts and ignores the SASL credentials.
    uri = services.mongo_uri.replace("mongodb://", f"mongodb://canary-user:{CANARY}@", 1) + "/?authMechanism=PLAIN"
    d = deployment_factory({**LOCAL,
                            "openai": {"api_key": CANARY, "base_url": ""},
                            "mongodb": {"uri": uri},
                            "kafka": {"sasl_username": "canary-user", "sasl_password": CANARY},
                            "cache": {"redis_url": f"redis://:{CANARY}@127.0.0.1:1/0"},
                            "api": {"token": CANARY},
                            "monitoring": {"metrics_port": base}})
    s = d.settings
    assert CANARY in d.config_path.read_text()
    secrets = [s.openai.api_key, s.mongodb.uri, s.kafka.sasl_password, s.cache.redis_url, s.api.token]
    assert all(x is not None and CANARY in x.get_secret_value() for x in secrets)
    assert not s.llm_enabled  # the key is set, the offline extractor runs: nobody calls OpenAI

    worker = d.start_worker("all")
    d.cli("submit", *VIDEOS[:2])
    produce_raw(s, topics_for(s).requested, [(b"canary-bad", b"{not json")])
    outputs = [d.cli("wait", *VIDEOS[:2], "--timeout", "400", "--interval", "1", timeout=450)]
    wait_quiescent(s, workers=[worker])
    store = GraphStore.from_settings(s)
    assert [v["status"] for v in store.videos.find(VIDEOS[:2])] == ["done", "done"]

    shown = d.cli("config", "show")
    masked = json.loads(shown.stdout)
    assert [masked["openai"]["api_key"], masked["mongodb"]["uri"], masked["kafka"]["sasl_password"],
            masked["cache"]["redis_url"], masked["api"]["token"]] == ["**********"] * 5
    outputs.append(shown)
    for args in (["config", "check"], ["status"], ["status", *VIDEOS[:2], "--json"], ["dlq"], ["dlq", "--json"],
                 ["lag"], ["lag", "--json"], ["graph"], ["graph", "--json"], ["topics", "list"],
                 ["communities", "list"], ["wait", NEVER_SUBMITTED, "--timeout", "1", "--interval", "1"],
                 ["config", "show", "--env", "development"], ["resolve", "merge", "--dry-run"]):
        outputs.append(d.cli(*args, check=args[0] != "wait"))
    dlq = [json.loads(line) for line in d.cli("dlq", "--json").stdout.splitlines()]
    assert [r["headers"]["reason"] for r in dlq] == ["invalid_json"]

    # Every place the canary could leak to, as text.
    places: dict[str, str] = {}
    for p in outputs:
        places[f"`{' '.join(str(a) for a in p.args[3:])}`"] = p.stdout + p.stderr
    pages = {f"{stage.value} {path}": _get(f"http://127.0.0.1:{base + i}{path}")
             for i, stage in enumerate(apps) for path in ("/metrics", "/readyz", "/livez")}
    assert sum("graphrag_events_in_total" in body for body in pages.values()) == len(apps), list(pages)
    places.update(pages)
    for topic in topics_for(s).all():
        for m in consume_all(s, topic):
            places[f"{topic}[{m.partition()}]@{m.offset()}"] = repr((m.key(), m.value(), m.headers()))
    assert any(key.startswith(topics_for(s).dlq) for key in places)
    for name in store.db.list_collection_names():
        places[f"db.{name}"] = json_util.dumps(list(store.db[name].find()))
    assert json_util.loads(places["db.videos"]) and "done" in places["db.videos"]
    d.stop_workers()  # the supervisor and children log their shutdown too
    for w in [worker]:
        places[f"worker log {w.log_path.name}"] = w.log_path.read_text(errors="replace")
    assert "dead-lettered" in places[f"worker log {worker.log_path.name}"]
    for log in d.tmp.rglob("*.log"):
        places[f"file {log.name}"] = log.read_text(errors="replace")
    kinds = Counter(where.split("[")[0].split()[0] if where.startswith(("worker", "file")) else
                    where.split("[")[0] for where in places)
    print(f"\ncanary scan: {len(places)} places, {sum(len(t) for t in places.values())} characters: "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    leaks = [where for where, text in places.items() if CANARY in text]
    assert leaks == [], f"the canary secret appears in: {leaks}"
    # The scan sees a leak where there is one.
    assert CANARY in subprocess.run(["cat", str(d.config_path)], capture_output=True, text=True).stdout
