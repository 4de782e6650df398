#!/usr/bin/env bash
# One command to run kvmmgr on this machine with the embedded defaults:
# SQLite, a local Redis, a Celery worker + beat, the web server on
# http://127.0.0.1:8000 and a demo node (the local qemu:///system where it
# works, else libvirt's test driver).
#   deploy/dev.sh          start everything (installs what is missing first)
#   deploy/dev.sh stop     stop what this script started
#   deploy/dev.sh status   show what runs
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${KVMMGR_DATA_DIR:-$ROOT/var}"
RUN="$VAR/run"
LOG="$VAR/log"
PY="$ROOT/.venv/bin/python"
PORT="${KVMMGR_DEV_PORT:-8000}"
CONSOLE_PORT="${KVMMGR_DEV_CONSOLE_PORT:-6080}"
# No nginx here: the console page opens its websocket on the proxy's own port.
export KVMMGR_CONSOLE_URL="ws://127.0.0.1:$CONSOLE_PORT/websockify"
export KVMMGR_CONSOLE_ORIGINS="http://127.0.0.1:$PORT"
export KVMMGR_DATA_DIR="$VAR"
export STATIC_ROOT="$VAR/static"
mkdir -p "$RUN" "$LOG"
chmod 700 "$VAR"

pid_of() { cat "$1" 2>/dev/null || true; }
alive() { local pid; pid="$(pid_of "$1")"; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# SIGTERM, then wait up to $2 seconds (a Celery worker finishes its current task
# first: warm shutdown). Returns 1, pidfile kept, if it is still running then.
stop_one() {
  local name="$1" wait_s="${2:-10}" pidfile="$RUN/$1.pid" pid
  pid="$(pid_of "$pidfile")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name (pid $pid) did not stop within $wait_s s; run '$0 stop' again, or kill $pid" >&2
      return 1
    fi
    echo "stopped $name"
  fi
  rm -f "$pidfile"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "${1:-start}" in
  stop)
    # Every daemon gets its stop even when one before it is slow.
    failed=0
    for name in web console-proxy celery-beat celery-worker redis libvirtd virtlogd; do
      wait_s=10
      [ "$name" = celery-worker ] && wait_s=60
      stop_one "$name" "$wait_s" || failed=1
    done
    exit "$failed" ;;
  status)
    for name in redis libvirtd celery-worker celery-beat console-proxy web; do
      if alive "$RUN/$name.pid"; then echo "$name: running (pid $(pid_of "$RUN/$name.pid"))"; else echo "$name: not started by dev.sh"; fi
    done
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

"$ROOT/deploy/bootstrap.sh" run
started=()

# Redis: our own, on a unix socket only this user may open (no TCP port, so no
# other local user can read the broker or send the worker control messages).
REDIS_SOCKET="$RUN/redis.sock"
export CELERY_BROKER_URL="redis+socket://$REDIS_SOCKET"
if ! alive "$RUN/redis.pid"; then
  redis-server --daemonize yes --port 0 --unixsocket "$REDIS_SOCKET" --unixsocketperm 700 \
    --save "" --appendonly no --pidfile "$RUN/redis.pid" --logfile "$LOG/redis.log"
  for _ in $(seq 50); do redis-cli -s "$REDIS_SOCKET" ping >/dev/null 2>&1 && break; sleep 0.1; done
  started+=("redis (unix socket $REDIS_SOCKET, mode 0700)")
fi

# libvirtd for the demo node: systemd where it runs, else the daemons directly.
if [ "$(id -u)" -eq 0 ] && ! virsh -c qemu:///system version >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl start libvirtd || true
  else
    alive "$RUN/virtlogd.pid" || virtlogd -d -p "$RUN/virtlogd.pid"
    libvirtd -d -p "$RUN/libvirtd.pid" && started+=("libvirtd")
  fi
  for _ in $(seq 300); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
fi

cd "$ROOT"
"$PY" manage.py migrate --no-input -v 0
"$PY" manage.py collectstatic --no-input -v 0
"$PY" manage.py setupdemo
"$PY" manage.py ensuredevuser admin --password-file "$VAR/admin-password"

if ! alive "$RUN/celery-worker.pid"; then
  "$ROOT/.venv/bin/celery" -A kvmmgr worker --detach --concurrency 2 --loglevel INFO \
    --pidfile "$RUN/celery-worker.pid" --logfile "$LOG/celery-worker.log"
  started+=("celery worker (log $LOG/celery-worker.log)")
fi
if ! alive "$RUN/celery-beat.pid"; then
  "$ROOT/.venv/bin/celery" -A kvmmgr beat --detach --loglevel INFO \
    --schedule "$VAR/celerybeat-schedule" \
    --pidfile "$RUN/celery-beat.pid" --logfile "$LOG/celery-beat.log"
  started+=("celery beat (log $LOG/celery-beat.log)")
fi
if ! alive "$RUN/console-proxy.pid"; then
  if port_busy "$CONSOLE_PORT"; then
    echo "port $CONSOLE_PORT is taken by another program; set KVMMGR_DEV_CONSOLE_PORT to use another" >&2
    exit 1
  fi
  "$PY" manage.py consoleproxy --listen 127.0.0.1 --port "$CONSOLE_PORT" --detach \
    --pidfile "$RUN/console-proxy.pid" --logfile "$LOG/console-proxy.log"
  for _ in $(seq 100); do port_busy "$CONSOLE_PORT" && break; sleep 0.1; done
  started+=("console proxy (127.0.0.1:$CONSOLE_PORT, log $LOG/console-proxy.log)")
fi
if ! alive "$RUN/web.pid"; then
  if port_busy "$PORT"; then
    echo "port $PORT is taken by another program; set KVMMGR_DEV_PORT to use another" >&2
    exit 1
  fi
  # --die-on-term: uwsgi would otherwise reload on SIGTERM instead of stopping.
  "$ROOT/.venv/bin/uwsgi" --die-on-term --http "127.0.0.1:$PORT" --module kvmmgr.wsgi:application \
    --chdir "$ROOT" --master --processes 2 --threads 2 --harakiri 30 \
    --static-map "/static=$VAR/static" --env "KVMMGR_DATA_DIR=$VAR" \
    --env "CELERY_BROKER_URL=$CELERY_BROKER_URL" \
    --env "KVMMGR_CONSOLE_URL=$KVMMGR_CONSOLE_URL" --env "KVMMGR_CONSOLE_ORIGINS=$KVMMGR_CONSOLE_ORIGINS" \
    --pidfile "$RUN/web.pid" --daemonize "$LOG/web.log"
  for _ in $(seq 100); do port_busy "$PORT" && break; sleep 0.1; done
  if ! alive "$RUN/web.pid" || ! port_busy "$PORT"; then
    echo "the web server did not start; see $LOG/web.log" >&2
    exit 1
  fi
  started+=("web server (uwsgi, log $LOG/web.log)")
fi
"$PY" manage.py refreshnodes --now || true

echo
if [ "${#started[@]}" -gt 0 ]; then
  echo "started:"; for item in "${started[@]}"; do echo "  - $item"; done
else
  echo "everything was already running"
fi
echo
echo "kvmmgr is at http://127.0.0.1:$PORT/  (user: admin, password: $(cat "$VAR/admin-password"))"
echo "nodes:  $PY manage.py nodes"
echo "stop:   $0 stop"
