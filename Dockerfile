# The Notes API image: `notes-api serve` (migrations, then the API; the default) or
# `notes-api worker` (a standalone worker) from the same image.
#
#   docker build -t notes-api .
#   docker run -p 8000:8000 -e JWT_SECRET=$(openssl rand -hex 32) -e DATABASE_URL=... notes-api
#
# Plain Dockerfile syntax only (no RUN --mount, heredocs or COPY --parents), so any builder
# takes it: BuildKit, Koyeb's, podman 4.3.
# Both stages use the same pinned base (slim-bookworm): the venv points at that image's
# /usr/local/bin/python3.11, and the Debian suite should change on purpose, not when the
# upstream `3.11-slim` tag moves to the next one.

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---------------------------------------------------------------------------- builder
FROM python:3.11-slim-bookworm AS builder
COPY --from=uv /uv /usr/local/bin/uv
# Bytecode compiled at build time (the runtime user cannot write it); no uv cache in the
# layers; never download a Python: the venv must use this image's interpreter.
ENV UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# Then the project itself, installed editable (uv's default) so that the code finds
# /app/migrations next to /app/src as it does in a checkout.
COPY README.md ./
COPY src ./src
RUN uv sync --frozen --no-dev \
 && python -m compileall -q src

# ---------------------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="notes-api" \
      org.opencontainers.image.description="Notes for CRMs, summarized in the background" \
      org.opencontainers.image.licenses="UNLICENSED"

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin app

# The official image ships the standard library without bytecode and the runtime user cannot
# write it, so every start would compile it again: about 2.5 s of a 12 s cold start on a
# 0.1 vCPU instance, against some 20 MB here.
RUN python -m compileall -q -j 0 \
      -x '/(site-packages|idlelib|tkinter|turtledemo|ensurepip|lib2to3)/' \
      /usr/local/lib/python3.11

WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY --from=builder /app/src /app/src
COPY migrations /app/migrations
# The only writable place: the default SQLite database lives in ./data (relative to /app).
RUN mkdir /app/data && chown app:app /app/data

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json \
    MIGRATIONS_DIR=/app/migrations

USER 10001:10001
EXPOSE 8000

# Liveness only (no database). slim has no curl; the standard library does the request.
# A standalone worker (`notes-api worker`) serves no HTTP: nothing to probe there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request as u; sys.exit(0) if 'worker' in open('/proc/1/cmdline').read().split('\\0') else u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# Exec form: notes-api is PID 1 and receives SIGTERM itself (graceful drain of the worker).
CMD ["notes-api", "serve"]
