#!/usr/bin/env bash
# Runs the whole test suite on this machine, installing what is missing first:
# lint, Django checks, unit and integration tests on SQLite (a real libvirtd lab
# with a qemu guest, a real Redis and Celery worker), then the suite again on
# PostgreSQL. Extra arguments go to pytest (e.g. tests/run.sh -k inventory).
# Needs root for the lab (network namespaces, libvirtd); otherwise those tests skip.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/deploy/bootstrap.sh" test
PY="$ROOT/.venv/bin/python"
WORK="$(mktemp -d /tmp/kvmmgr-tests.XXXXXX)"
REDIS_PORT="${KVMMGR_TEST_REDIS_PORT:-6391}"
export KVMMGR_DATA_DIR="$WORK/data"
export KVMMGR_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
mkdir -p "$KVMMGR_DATA_DIR"

started_pg=""
cleanup() {
  if [ -f "$WORK/redis.pid" ]; then kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true; fi
  # shellcheck disable=SC2086 # version and cluster name, split on purpose
  if [ -n "$started_pg" ]; then pg_ctlcluster $started_pg stop || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# A private Redis for the Celery tests.
redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
  --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== lint and checks"
"$ROOT/.venv/bin/ruff" check .
"$ROOT/.venv/bin/ruff" format --check .
"$ROOT/.venv/bin/lint-imports" --no-cache
"$PY" manage.py check
"$PY" manage.py makemigrations --check --dry-run

# Lab scenarios marked "unstable" run only when asked for (KVMMGR_RUN_UNSTABLE=1).
# The lab scenarios (marker "lab": real libvirtd, sshd, OpenVPN in namespaces) run
# once, in the PostgreSQL pass (the production database); the SQLite pass runs
# everything else. Without PostgreSQL, the SQLite pass runs them. -m given as an
# argument comes later and wins.
STABLE="not unstable"
if [ "${KVMMGR_RUN_UNSTABLE:-0}" = "1" ]; then STABLE="unstable or not unstable"; fi

# PostgreSQL: the local cluster, with a role that may create the test database.
PG_URL=""
if [ "$(id -u)" -eq 0 ] && command -v pg_lsclusters >/dev/null 2>&1 \
  && [ -n "$(pg_lsclusters --no-header)" ]; then
  read -r pg_version pg_name pg_port pg_status _ < <(pg_lsclusters --no-header | head -n 1)
  if [ "$pg_status" != "online" ]; then
    pg_ctlcluster "$pg_version" "$pg_name" start
    started_pg="$pg_version $pg_name"
  fi
  runuser -u postgres -- psql -q -p "$pg_port" -v ON_ERROR_STOP=1 -c \
    "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='kvmmgr_test') THEN CREATE ROLE kvmmgr_test LOGIN CREATEDB PASSWORD 'kvmmgr_test'; END IF; END\$\$;"
  PG_URL="postgres://kvmmgr_test:kvmmgr_test@127.0.0.1:$pg_port/kvmmgr"
fi
if [ -n "$PG_URL" ]; then
  echo "== tests on SQLite (without the lab scenarios)"
  # (exit status 5: every selected test is a lab scenario, so none ran here)
  "$PY" -m pytest -m "($STABLE) and not lab" "$@" || [ $? -eq 5 ]
  echo "== tests on PostgreSQL (with the lab scenarios)"
  DATABASE_URL="$PG_URL" "$PY" -m pytest -m "$STABLE" "$@"
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is required in CI but no cluster was found" >&2
  exit 1
else
  echo "== PostgreSQL not available: everything on SQLite"
  "$PY" -m pytest -m "$STABLE" "$@"
fi
