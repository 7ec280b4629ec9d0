"""Re-index side by side, `graph diff` and `graph promote` on a live graph of a sixth of the
corpus with bad chunks in its topic (`sample_run`: a re-index consumes the live chunks
again, so on the whole corpus each costs most of a run): two re-indexes with the offline
extractor under two settings, beside the live pipeline: what each consumed, that the live
graph and DLQ are untouched, the diff of the two, and promoting one and going back.

The rules: tests/unit/test_reindex.py.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from pymongo import MongoClient

from streams.kafka.dlq import parse_headers
from tests.integration.corpus_run import BAD_CHUNKS, SAMPLE_SETTINGS, sample_run
from tests.support import Deployment, DeploymentFactory, consume_all


def _reindex(d: Deployment, name: str, *root: str) -> dict[str, Any]:
    proc = d.cli(*root, "reindex", "--name", name, "--extractor", "offline", "--until-caught-up",
                 "--timeout", "1200", "--interval", "2", timeout=1800)
    assert "chunks extracted; lag" in proc.stderr  # progress on the way
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.integration
def test_two_reindexes_beside_the_live_graph_diff_and_promote(deployment_factory: DeploymentFactory) -> None:
    d: Deployment = deployment_factory(SAMPLE_SETTINGS)
    live = sample_run(d)
    prefix = d.settings.kafka.topic_prefix
    live_counts = live.reads.counts()
    live_dlq = len(consume_all(d.settings, f"{prefix}dlq"))
    client: MongoClient[dict[str, Any]] = MongoClient(d.services.mongo_uri)
    try:
        first = _reindex(d, "a")
        second = _reindex(d, "b", "--set", "graphrag.extraction.max_entities_per_chunk=4")
        # Each consumed every chunk of the live topic: the same chunks as the live graph.
        live_chunks = {c["_id"] for c in live.db.chunks.find({}, {"_id": 1})}
        for name, out in (("a", first), ("b", second)):
            db = client[out["database"]]
            assert out["database"] == f"{d.settings.mongodb.database}_{name}"
            assert {c["_id"] for c in db.chunks.find({}, {"_id": 1})} == live_chunks
            assert out["counts"]["entities"] > 0 and db.communities.estimated_document_count() > 0
            # The bad chunks of the live topic went to the re-index's own DLQ, with the same reasons.
            dlq = consume_all(d.settings, f"{prefix}reindex.{name}.dlq")
            assert Counter(parse_headers(m.headers())["reason"] for m in dlq) == Counter(r for _, r in BAD_CHUNKS)
        assert second["counts"]["entity_mentions"] < first["counts"]["entity_mentions"]
        # The live pipeline saw none of it.
        assert live.reads.counts() == live_counts
        assert len(consume_all(d.settings, f"{prefix}dlq")) == live_dlq

        diff = json.loads(d.cli("graph", "diff", "a", "b", "--json", "--top", "3").stdout)
        print("\ngraph diff a b:", json.dumps({k: {x: v for x, v in diff[k].items() if x != "examples"}
                                               for k in ("entities", "relations", "communities")}))
        for kind, count in (("entities", "entities"), ("relations", "relations")):
            k = diff[kind]
            assert (k["a"], k["b"]) == (first["counts"][count], second["counts"][count])
            assert k["b"] - k["a"] == k["added"] - k["removed"]
            assert k["a"] == k["removed"] + k["changed"] + k["unchanged"]
        assert diff["entities"]["removed"] > 0 and len(diff["entities"]["examples"]["removed"]) == 3
        assert diff["entities"]["changed"] > 0  # fewer mentions kept per chunk
        text = d.cli("graph", "diff", "a", "b").stdout
        assert text.startswith("graph diff a -> b") and "entities" in text and "communities" in text
        same = json.loads(d.cli("graph", "diff", "a", "a", "--json").stdout)
        assert all(same[k][c] == 0 for k in ("entities", "relations", "communities")
                   for c in ("added", "removed", "changed"))

        # Promote b: `graph` and `query` read it; the pipeline still writes live.
        assert "now read b" in d.cli("graph", "promote", "b").stdout
        counts = json.loads(d.cli("graph", "--json").stdout)["counts"]
        assert counts["entities"] == second["counts"]["entities"] != live_counts["entities"]
        d.cli("graph", "promote", "live")
        assert json.loads(d.cli("graph", "--json").stdout)["counts"]["entities"] == live_counts["entities"]
        missing = d.cli("graph", "diff", "a", "nosuch", check=False)
        assert missing.returncode == 2 and "there is no graph 'nosuch'" in missing.stderr
        bad = d.cli("graph", "promote", "Not-A-Name", check=False)
        assert bad.returncode == 2 and "a re-index name is" in bad.stderr
    finally:
        d.cli("graph", "promote", "live", check=False)
        for name in ("a", "b"):
            client.drop_database(f"{d.settings.mongodb.database}_{name}")
        client.close()
