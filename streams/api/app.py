"""`graphrag-streams serve`: the graph's read side and video submission over HTTP, and the explorer.

Routes stay thin: they validate, call a read of :mod:`streams.api.reads` or the query code,
and shape errors. Every error is JSON ``{"error": "..."}`` with a 4xx/5xx status, never a
traceback; the store being down is a 503, like Kafka refusing a submission.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pymongo.errors import ConnectionFailure
from starlette.exceptions import HTTPException as StarletteHTTPException

from streams.api import reads
from streams.api.export import MEDIA_TYPES, ExportFormat, export_graph
from streams.api.models import (
    CommunityDetail,
    CommunitySummary,
    EntityDetail,
    EntitySummary,
    Neighbourhood,
    Pipeline,
    SubmitRequest,
    SubmitResult,
    VideoDetail,
    VideoRow,
)
from streams.kafka.clients import make_producer, produce_and_confirm
from streams.kafka.dlq_reader import DeadLetterCounts, count_dead_letters
from streams.kafka.submission import InvalidSubmission, request_messages
from streams.kafka.topics import topics_for
from streams.model.views import iso
from streams.query.answers import answer_global, answer_local, answer_with_llm
from streams.query.snapshot import SnapshotHolder
from streams.settings import Settings
from streams.store import GraphStore

log = logging.getLogger(__name__)
T = TypeVar("T")
STATIC = resources.files("streams.api") / "static"
DLQ_COUNTS_TTL_SECONDS = 15.0
SUBMIT_TIMEOUT_MS = 20_000
bearer = HTTPBearer(auto_error=False, description="api.token of the configuration (GRAPHRAG_API_TOKEN)")


class ApiState:
    """What the routes share: settings, the store, a producer made on first submission."""

    def __init__(self, settings: Settings, store: GraphStore) -> None:
        self.settings = settings
        self.store = store
        self.snapshots = SnapshotHolder(store, settings.api.refresh_seconds, settings.api.snapshot_max_age_seconds)
        self.producer: Any = None
        self.producer_lock = threading.Lock()
        self.dlq: tuple[float, DeadLetterCounts | str] | None = None  # (when, counts or why not)
        self.registry = CollectorRegistry()
        self.latency = Histogram("graphrag_api_request_seconds", "HTTP request latency by route",
                                 ["route", "method", "status"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def dead_letters(self) -> DeadLetterCounts | str:
        """DLQ counts, or why they could not be read; at most every 15 s, failures included
        (reading the topic costs a consumer's start, a broker that is down a timeout)."""
        now = time.monotonic()
        if self.dlq is None or now - self.dlq[0] > DLQ_COUNTS_TTL_SECONDS:
            try:
                self.dlq = (now, count_dead_letters(self.settings, timeout=5.0))
            except Exception as exc:
                self.dlq = (now, f"could not read the dead-letter topic: {exc}")
        return self.dlq[1]

    def producer_for_submissions(self) -> Any:
        with self.producer_lock:
            if self.producer is None:
                # A submission the broker has not acknowledged in this time is reported as
                # failed, so it must not be delivered later either.
                self.producer = make_producer(self.settings, **{"message.timeout.ms": SUBMIT_TIMEOUT_MS})
            return self.producer


def _found(value: T | None, message: str) -> T:
    """The read's answer, or a 404 with ``message`` when there is none."""
    if value is None:
        raise HTTPException(404, message)
    return value


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body", "path"))
        parts.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(settings: Settings, store: GraphStore | None = None) -> FastAPI:
    """The API for one configuration; ``store`` defaults to the configured MongoDB."""
    state = ApiState(settings, store or GraphStore.for_reads(settings, app_name="graphrag-api"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.snapshots.start()
        yield
        state.snapshots.stop()
        if state.producer is not None:
            state.producer.flush(5)
        state.store.close()

    # /docs is served below from the vendored Swagger UI (FastAPI's default loads it from a CDN).
    app = FastAPI(title="graphrag-streams", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="The knowledge graph built from video transcripts: query it with citations, "
                              "browse entities, communities and videos, export it, submit videos.")
    app.state.api = state

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500  # what the client gets when the route raised
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            path = getattr(request.scope.get("route"), "path", None) or "unmatched"
            state.latency.labels(path, request.method, str(status)).observe(time.perf_counter() - start)

    @app.exception_handler(StarletteHTTPException)  # ours, and the router's 404 and 405
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _describe(exc))

    @app.exception_handler(ConnectionFailure)  # also timeouts of server selection, reconnects
    async def store_down(_: Request, exc: ConnectionFailure) -> JSONResponse:
        log.warning("store error: %s", exc)
        return _error(503, "the graph store is not reachable; try again shortly")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    # ------------------------------------------------------------------ operations

    @app.get("/livez", include_in_schema=False)
    def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        if not state.store.ping():
            return _error(503, "the graph store is not reachable")
        if state.snapshots.current is None:
            return _error(503, "loading the graph into memory")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ the explorer

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="graphrag-streams API",
                                   swagger_js_url="/static/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui.css", swagger_favicon_url="data:,")

    # ------------------------------------------------------------------ answers

    @app.get("/api/query", tags=["query"])
    async def query(q: Annotated[str, Query(min_length=1, max_length=1000, description="The question.")],
                    mode: Literal["local", "global"] = "local") -> dict[str, Any]:
        """The answer with citations (video ID, mm:ss, youtu.be link with t=), entities and communities used."""
        answer_from = answer_local if mode == "local" else answer_global
        # From the graph in memory, as the store holds it now (rebuilt first if it changed).
        answer = await run_in_threadpool(lambda: answer_from(state.snapshots.latest(), q))
        if settings.llm_enabled and answer.citations:
            from streams.llm.client import LLMClient  # the openai client, only when an LLM answers

            client = LLMClient(settings)
            try:
                answer = await answer_with_llm(answer, client)
            finally:
                await client.aclose()
        return answer.as_dict()

    # ------------------------------------------------------------------ entities

    @app.get("/api/entities", tags=["entities"])
    def entities(search: Annotated[str, Query(max_length=200)] = "",
                 type: Annotated[str | None, Query(max_length=40, description="PERSON, ORGANIZATION, ...")] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 20) -> list[EntitySummary]:
        """Entities whose name or an alias contains `search`, most mentioned first."""
        return reads.search_entities(state.store, state.snapshots.current, search, type, limit)

    @app.get("/api/entity-types", tags=["entities"])
    def entity_types() -> dict[str, int]:
        """How many entities of each type the graph holds."""
        return reads.entity_types(state.store, state.snapshots.current)

    def _moved(request: Request, entity_id: str, suffix: str = "") -> RedirectResponse:
        survivor = reads.redirected_to(state.store, entity_id)
        if survivor is None:
            raise HTTPException(404, f"no entity {entity_id!r}")
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/api/entities/{survivor}{suffix}{query}", status_code=308)

    @app.get("/api/entities/{entity_id}", tags=["entities"], response_model=EntityDetail,
             responses={308: {"description": "The entity was merged into another; follow Location."}})
    def entity(request: Request, entity_id: str) -> Any:
        """Names, aliases, type, description, neighbours with relation types and weights, evidence, communities."""
        return reads.entity_detail(state.store, state.snapshots.current, entity_id) or _moved(request, entity_id)

    @app.get("/api/entities/{entity_id}/neighbourhood", tags=["entities"], response_model=Neighbourhood)
    def entity_neighbourhood(request: Request, entity_id: str,
                             limit: Annotated[int, Query(ge=1, le=200)] = 40) -> Any:
        """The entity, its strongest neighbours and the relations among them: what the explorer draws."""
        found = reads.neighbourhood(state.store, state.snapshots.current, entity_id, limit=limit)
        return found or _moved(request, entity_id, "/neighbourhood")

    # ------------------------------------------------------------------ communities

    @app.get("/api/communities", tags=["communities"])
    def communities(level: Annotated[int | None, Query(ge=0, le=20)] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[CommunitySummary]:
        """Communities, largest first, with their report's title, rating and summary."""
        return reads.list_communities(state.store, state.snapshots.current, level, limit)

    @app.get("/api/communities/{community_id}", tags=["communities"])
    def community(community_id: str) -> CommunityDetail:
        """The report, its members and its findings with their evidence."""
        return _found(reads.community_detail(state.store, state.snapshots.current, community_id),
                      f"no community {community_id!r}")

    # ------------------------------------------------------------------ videos and the pipeline

    @app.get("/api/videos", tags=["videos"])
    def videos() -> list[VideoRow]:
        """Every video with its per-stage status (what `status` shows)."""
        return reads.list_videos(state.store)

    @app.get("/api/videos/{video_id}", tags=["videos"])
    def video(video_id: str) -> VideoDetail:
        """One video's status and its chunks with their times."""
        return _found(reads.video_detail(state.store, state.snapshots.current, video_id),
                      f"no video {video_id!r} has been seen by the pipeline")

    @app.get("/api/pipeline", tags=["videos"])
    def pipeline() -> Pipeline:
        """Videos per status, graph counts, and dead letters per stage and reason."""
        dlq = state.dead_letters()  # Kafka unreachable: the rest is still answered
        last = state.store.communities.last_run()
        by_status, by_stage = reads.video_counts(state.store)
        counts = dlq if isinstance(dlq, DeadLetterCounts) else DeadLetterCounts(0, {}, {})
        return Pipeline(videos_by_status=by_status, videos_by_stage=by_stage, counts=state.store.reads.counts(),
                        dead_letters=counts.total if dlq is counts else None,
                        dead_letters_by_stage=counts.by_stage, dead_letters_by_reason=counts.by_reason,
                        dead_letters_error=dlq if isinstance(dlq, str) else None,
                        last_community_run={k: iso(v) for k, v in last.items() if k != "_id"} if last else None)

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        token = settings.api.token
        if token is None:
            raise HTTPException(403, "submission over HTTP is off: set api.token (GRAPHRAG_API_TOKEN)")
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(),
                                                          token.get_secret_value().encode()):
            raise HTTPException(401, "a valid bearer token is required (Authorization: Bearer <api.token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.post("/api/videos", tags=["videos"], status_code=202, dependencies=[Depends(authorized)])
    def submit(body: SubmitRequest) -> SubmitResult:
        """Put video IDs on the ingest topic; answers once the broker acknowledged every one."""
        if len(body.video_ids) > settings.api.max_videos_per_request:
            raise HTTPException(413, f"{len(body.video_ids)} video IDs in one request; "
                                     f"at most {settings.api.max_videos_per_request} (api.max_videos_per_request)")
        try:
            messages = request_messages(settings, body.video_ids, source=body.source, languages=body.languages)
        except InvalidSubmission as exc:
            raise HTTPException(422, str(exc)) from None
        topic = topics_for(settings).requested
        try:
            n = produce_and_confirm(state.producer_for_submissions(), messages, timeout=SUBMIT_TIMEOUT_MS / 1000)
        except Exception as exc:
            raise HTTPException(503, f"could not produce to {topic}: {exc}") from None
        return SubmitResult(submitted=n, topic=topic, video_ids=list(dict.fromkeys(body.video_ids)))

    # ------------------------------------------------------------------ export

    @app.get("/api/graph/export", tags=["graph"], response_class=Response,
             responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
    def export(format: ExportFormat = "graphml") -> Response:
        """The whole graph for Gephi or Cytoscape (GraphML, GEXF) or as node-link JSON."""
        nodes, edges = reads.whole_graph(state.store)
        return Response(export_graph(nodes, edges, format), media_type=MEDIA_TYPES[format],
                        headers={"Content-Disposition": f'attachment; filename="graphrag.{format}"'})

    return app
