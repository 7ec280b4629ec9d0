"""Where a pipeline run's CPU goes: each stage process's CPU seconds (and the broker's and
FerretDB's) for a run of corpus videos through `worker --stages all` (offline extractor), per
chunk; beside it, the assemble stage's own logic per event, timed alone on the same chunks'
offline extractions, to set against the assemble process's CPU per event in the run (the
rest is the runtime's per-message cost: decode, table write and changelog, send, commit).

    python benchmarks/stage_cpu.py [--fraction 0.1667]

CPU from /proc/<pid>/stat (user + system) before the submit and after every video is done;
the broker and FerretDB also serve whatever else runs on the stack, so run it on a quiet one.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import CORPUS, cpu_seconds, deployment, stack_pids

from agents.assemble import Assembly
from schemas import ChunkExtraction, MentionResolved, TranscriptChunk
from streams.extraction.offline import extract_offline
from streams.resolution.resolve import mention_requests, new_entity
from streams.settings import DEFAULT_ENTITY_TYPES
from streams.store import GraphStore
from tests.support import consume_all, corpus_sample, supervised_children, wait_until


def assemble_logic(chunks: list[TranscriptChunk]) -> tuple[int, float]:
    """The assemble stage's domain logic for each chunk's extraction and every mention answer,
    as the stage calls it per event: (events, seconds)."""
    extractions = []
    for c in chunks:
        found = extract_offline(c.text)
        extractions.append(ChunkExtraction(chunk=c, entities=found.entities, relations=found.relations,
                                           extractor="offline-plain", prompt_version="bench"))
    events = 0
    started = time.perf_counter()
    for x in extractions:
        state = replace(Assembly.from_table({}), extraction=x)
        table = state.to_table()
        events += 1
        state.complete(entity_types=DEFAULT_ENTITY_TYPES, block_chars=2)
        for r in mention_requests(x, entity_types=DEFAULT_ENTITY_TYPES):
            e = new_entity(r.name, r.type)
            state = Assembly.from_table(table).with_resolved(MentionResolved(
                chunk_id=r.chunk_id, mention=r.mention, entity_id=e.entity_id, type=e.type, canonical_name=e.name,
                how="new"))
            events += 1
            if state.complete(entity_types=DEFAULT_ENTITY_TYPES, block_chars=2) is None:
                table = state.to_table()
    return events, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1 / 6, help="part of the corpus (corpus_sample)")
    parser.add_argument("--offline-extractor", choices=["auto", "spacy", "rules"], default="auto",
                        help="extraction.offline_extractor (auto: spaCy where installed)")
    args = parser.parse_args()
    ids = [e["video_id"] for e in corpus_sample(args.fraction)]
    d = deployment({"graphrag": {"transcripts": {"local_dirs": [str(CORPUS)], "source": "local"},
                                 "extraction": {"extractor": "offline", "offline_extractor": args.offline_extractor},
                                 "communities": {"interval_seconds": 86400}}})
    try:
        worker = d.start_worker("all")
        wait_until(lambda: worker.log_count("Worker ready") >= 8, timeout=180, interval=0.5,
                   message=lambda: worker.log_tail())
        pids = {**supervised_children(worker), **stack_pids()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        store = GraphStore.from_settings(d.settings)
        started = time.monotonic()
        d.cli("submit", *ids)
        wait_until(lambda: len(store.videos.find(ids)) == len(ids)
                   and all(v["status"] in ("done", "failed") for v in store.videos.find(ids)), timeout=1800)
        wall = time.monotonic() - started
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        n_chunks = store.db.chunks.count_documents({})
        # The chunk events as the extract stage read them (the bad-input-free corpus: all valid).
        chunks = [TranscriptChunk.model_validate_json(m.value())
                  for m in consume_all(d.settings, f"{d.settings.kafka.topic_prefix}transcripts.chunks")]
        mentions = store.db.entity_mentions.count_documents({})
    finally:
        d.cleanup()
    print(f"{len(ids)} videos, {n_chunks} chunks, {mentions} entity mentions; {wall:.1f} s from submit to done; "
          f"{sum(used.values()):.1f} CPU s in all ({sum(used.values()) / wall:.2f} cores)")
    print(f"{'process':>14} {'CPU s':>7} {'ms/chunk':>9}")
    for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"{name:>14} {seconds:>7.2f} {seconds / max(1, n_chunks) * 1000:>9.1f}")
    events, logic = assemble_logic(chunks)
    print(f"assemble's own logic alone: {events} events for the same videos' chunks, {logic / events * 1000:.2f} ms "
          f"per event; the assemble process in the run: {used.get('assemble', 0) / max(1, events) * 1000:.2f} ms "
          f"per event (ratio {used.get('assemble', 0) / max(logic, 1e-9):.1f}x)")


if __name__ == "__main__":
    main()
