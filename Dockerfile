# syntax=docker/dockerfile:1
# The jobprov image: `jobprov process` (stream-processor workers), `jobprov serve` (query API), `jobprov db migrate`.
#   docker build -t registry.example.org/jobprov/jobprov:0.1.0 .
# The Helm chart (helm/jobprov) runs it as user 10001 with a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: a virtual environment with jobprov and the extras the chart's commands need ----
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler in case a dependency has no wheel for this platform; it stays in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/jobprov
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jobprov ./jobprov
COPY emitters ./emitters
COPY schemas ./schemas
COPY stream_processors ./stream_processors
COPY sinks ./sinks
COPY query ./query
# processors: prometheus-client (`jobprov process`); clickhouse: clickhouse-connect
# (`jobprov db migrate`, the sink); api: FastAPI + uvicorn (`jobprov serve`).
RUN /opt/jobprov/bin/pip install ".[processors,clickhouse,api]" \
    && /opt/jobprov/bin/jobprov --help >/dev/null \
    && /opt/jobprov/bin/python -m compileall -q /opt/jobprov/lib

# ---- runtime ----
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 jobprov \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin jobprov
COPY --from=builder /opt/jobprov /opt/jobprov
ENV PATH=/opt/jobprov/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
# Numeric, so that Kubernetes can check runAsNonRoot without resolving a name.
USER 10001:10001
# 8000: `jobprov serve --port`; 9464: the worker's Prometheus metrics.
EXPOSE 8000 9464
ENTRYPOINT ["jobprov"]
CMD ["--help"]
