#!/usr/bin/env bash
# `make container-test`: build the image, run it, and check it end to end
# (scripts/container-check.sh, then the demo) against the running container.
#
# Uses docker (when its engine answers) or podman, whichever can get the Dockerfile's base
# images. The container uses the machine's Postgres when one answers on 127.0.0.1:5432 (or
# CONTAINER_DB_URL), and its own SQLite file otherwise. On a machine where neither engine can
# reach a registry, ../shared/tools/container-smoke (when present) builds from local
# stand-ins of the base images instead.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${CONTAINER_TAG:-localhost/notes-api:test}
python=${VENV_PYTHON:-.venv/bin/python}
smoke=../shared/tools/container-smoke
checks="scripts/container-check.sh && $PWD/$python scripts/demo.py"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

# The machine's Postgres, in a database of the container's own, when there is one.
db_url=${CONTAINER_DB_URL:-}
if [ -z "$db_url" ] && command -v psql >/dev/null \
  && psql postgresql://postgres@127.0.0.1:5432/postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
  db_url=postgresql://postgres@127.0.0.1:5432/notes_container
fi
if [ -n "$db_url" ]; then
  admin="${db_url%/*}/postgres" db=${db_url##*/}
  psql "$admin" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
    || psql "$admin" -qc "CREATE DATABASE \"$db\""
  echo "container-test: the container uses $db_url"
else
  echo "container-test: no Postgres on 127.0.0.1:5432; the container uses its own SQLite file"
fi

# An engine that runs and can pull every base image the Dockerfile names (images already
# here will do offline, unless the stand-in tool is there: its local stand-ins are meant for
# it alone, with the podman options it sets).
usable() {
  command -v "$1" >/dev/null && "$1" info >/dev/null 2>&1 || return 1
  local image
  # Base images only: a FROM that names an earlier stage is skipped.
  while read -r image; do
    "$1" pull -q "$image" >/dev/null 2>&1 && continue
    [ ! -x "$smoke" ] && "$1" image inspect "$image" >/dev/null 2>&1 && continue
    return 1
  done < <(awk 'toupper($1) == "FROM" { if (!($2 in stage)) print $2 }
                toupper($1) == "FROM" && toupper($3) == "AS" { stage[$4] = 1 }' Dockerfile)
}

# Where ../shared/tools/container-smoke is present, that machine's podman needs the options
# it sets (ulimits a sandbox allows, local stand-ins of the base images): it is used first.
engine=""
if [ ! -x "$smoke" ]; then
  for candidate in docker podman; do
    if usable "$candidate"; then engine=$candidate; break; fi
  done
fi

if [ -z "$engine" ]; then
  if [ -x "$smoke" ]; then
    echo "container-test: using $smoke (this machine's podman needs its options)"
    env_args=(--env "PORT=$port" --env "JWT_SECRET=$secret" --env APP_ENV=production)
    [ -n "$db_url" ] && env_args+=(--env "DATABASE_URL=$db_url")
    exec "$smoke" . --tag "$tag" --network host --port "$port" --health /healthz \
      "${env_args[@]}" --then "$checks"
  fi
  echo "container-test: needs docker (with a running engine) or podman that can pull" \
    "the Dockerfile's base images" >&2
  exit 2
fi

echo "container-test: building $tag with $engine"
"$engine" build -t "$tag" .
name=notes-api-test-$$
run_args=(-d --name "$name" --network host -e "PORT=$port" -e "JWT_SECRET=$secret"
  -e APP_ENV=production)
[ -n "$db_url" ] && run_args+=(-e "DATABASE_URL=$db_url")
"$engine" run "${run_args[@]}" "$tag" >/dev/null
finish() {
  local code=$?
  if [ "$code" != 0 ]; then
    echo "container-test: FAILED; the container's last log lines:" >&2
    "$engine" logs "$name" 2>&1 | tail -40 >&2 || true
  fi
  "$engine" rm -f "$name" >/dev/null 2>&1 || true
  exit "$code"
}
trap finish EXIT

base_url=http://127.0.0.1:$port
for _ in $(seq 120); do
  curl -fsS -o /dev/null "$base_url/healthz" 2>/dev/null && break
  if [ "$("$engine" inspect -f '{{.State.Running}}' "$name")" != true ]; then
    echo "container-test: the container stopped before answering /healthz" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS -o /dev/null "$base_url/healthz" || { echo "container-test: no /healthz in 60 s" >&2; exit 1; }
echo "container-test: $tag answers on $base_url"
BASE_URL=$base_url bash -c "$checks"
