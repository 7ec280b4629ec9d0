"""communities: a leader-only timer that merges duplicate entities, detects communities and
summarises the new and changed ones (``graphrag.communities.interval_seconds``).

Any number of replicas may run; Faust elects one leader and only it runs the timer.
"""

from __future__ import annotations

import logging

from agents.runtime import StageRuntime
from streams.jobs.community_run import make_summarizer, run_communities
from streams.store import GraphStore

log = logging.getLogger("graphrag.communities")


def register(rt: StageRuntime) -> None:
    settings = rt.settings
    store = GraphStore.from_settings(settings, app_name=f"graphrag-communities-{settings.environment}")

    async def maintain() -> None:
        summarizer, closer = make_summarizer(settings)
        try:
            await run_communities(settings, store, summarizer)
        except Exception:
            # A failed run changes nothing that the next run does not redo.
            log.exception("community run failed; the next one retries")
        finally:
            if closer is not None:
                await closer.aclose()

    rt.app.timer(interval=settings.graphrag.communities.interval_seconds, on_leader=True)(maintain)
