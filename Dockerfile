# syntax=docker/dockerfile:1
# graphrag-streams: one image for every stage, the lag exporter and the CLI.
#
#   docker build -t graphrag-streams .
#   docker run --rm graphrag-streams worker --stages extract      # one stage
#   docker run --rm graphrag-streams lag-exporter
#   docker run --rm graphrag-streams topics create
#
# The configuration comes from GRAPHRAG_CONFIG (a mounted file; the Helm chart mounts
# /etc/graphrag/config.yaml) or from /app/config/<GRAPHRAG_ENV>.yaml baked in here;
# secrets only from the environment at run time. Pin the base image by digest in CI:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers only here, for any dependency without a wheel for this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The pinned dependencies first, every file checked against the lock's hashes: this layer
# is reused while only the code changes. A venv without pip, filled by the builder's pip.
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --require-hashes --no-deps --requirement requirements.lock

# The project's wheel (config/ ships inside it as package data), then installed from that
# wheel only (no index), with the `redis` extra (the LLM cache's Redis layer when REDIS_URL
# is set), whose dependencies the lock already put in place; the runtime stage copies just
# /opt/venv.
COPY pyproject.toml README.md LICENSE ./
COPY config ./config
COPY schemas ./schemas
COPY streams ./streams
COPY agents ./agents
RUN pip wheel --wheel-dir /wheels --no-deps . \
 && pip --python /opt/venv/bin/python install --no-index --find-links /wheels "graphrag-streams[redis]" \
 && pip --python /opt/venv/bin/python check

# --------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="graphrag-streams" \
      org.opencontainers.image.description="Event-driven GraphRAG indexer: Kafka + faust-streaming stages, MongoDB sink" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    GRAPHRAG_CONFIG_DIR=/app/config \
    FAUST_DATADIR=/tmp/{conf.name}-data

# No pip/setuptools in the final image; an unprivileged user with a fixed numeric ID
# (Kubernetes' runAsNonRoot can only verify a numeric USER).
RUN python -m pip uninstall -y pip setuptools wheel >/dev/null 2>&1 || true \
 && groupadd --system --gid 10001 graphrag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin graphrag

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY config/ /app/config/
# The sample transcripts, for the local transcript source (GRAPHRAG_TRANSCRIPTS_DIR in
# docker-compose.yml; config/development.yaml's default samples/transcripts from /app).
COPY samples/transcripts/ /app/samples/transcripts/

# Read-only-root friendly: nothing below writes outside /tmp (HOME and Faust's data
# directory point there; mount an emptyDir at /tmp when the root filesystem is read-only).
USER 10001:10001

# Smoke test at build time: the entry point starts and the stage and exporter code imports.
RUN graphrag-streams --help >/dev/null \
 && python -c "import agents.worker, streams.monitoring.exporter, streams.kafka.clients, streams.store.graph_store"

# 9400: a worker's /metrics, /livez, /readyz; 9410: the lag exporter's.
EXPOSE 9400 9410

ENTRYPOINT ["graphrag-streams"]
CMD ["--help"]
