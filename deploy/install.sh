#!/usr/bin/env bash
# Turns a Debian 13 (or 12) host into a running kvmmgr: packages and venv (deploy/bootstrap.sh),
# a service user, /etc/kvmmgr/kvmmgr.env (secret key, database, auth mode), nginx +
# uwsgi + systemd files rendered by kvmmgr/deployconfig.py, a TLS certificate,
# migrate, collectstatic, the first admin, and the services started.
#
# Safe to run again: files are rewritten only when their content changes, users and
# database roles are created only when missing, running services are left running
# (reloaded only when their configuration changed).
#
#   deploy/install.sh [options]
#     --admin NAME        create this admin (password: first line of stdin, or generated,
#                         printed once and saved in /etc/kvmmgr/admin-password, 0600)
#     --server-name NAME  host name users type (default: hostname -f); in ALLOWED_HOSTS
#     --cert FILE --key FILE
#                         your TLS certificate and key; default: a self-signed pair made
#                         once in /etc/kvmmgr/tls/kvmmgr.crt and kvmmgr.key
#     --no-tls            plain HTTP; only with --listen 127.0.0.1 (ssh tunnel, tests)
#     --listen ADDR       address nginx listens on (default: all)
#     --port N            HTTP port (default 80; redirects to HTTPS)
#     --https-port N      HTTPS port (default 443)
#     --postgres          a local PostgreSQL role and database (default: SQLite); the
#                         generated password is kept only in the env file
#     --pg-name NAME      PostgreSQL role and database name (default kvmmgr)
#     --redis-port N      Redis on 127.0.0.1:N (default 6379), with a password (generated
#                         once, kept in the env file): systemd: Debian's redis-server
#                         gets it through /etc/redis/kvmmgr.conf; otherwise our own
#                         Redis is started from ETC/redis.conf (0600)
#     --console-port N    the console proxy on 127.0.0.1:N (default 6080), behind nginx
#                         at /websockify
#     --user NAME         run the services as this existing user (default: create the
#                         system user "kvmmgr")
#     --prefix DIR        put all state, configuration, logs and pidfiles under DIR
#                         (DIR/etc/kvmmgr, DIR/var/lib/kvmmgr, ...) and run the daemons
#                         directly, never through systemd or /etc/nginx: for tests
#     --no-apt            do not install Debian packages or build the venv
#
# Without systemd (/run/systemd/system absent: containers) or with --prefix, nginx,
# uwsgi, Redis and Celery are started directly, with pidfiles in RUN_DIR (printed).
set -euo pipefail
umask 022
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
VENV="$ROOT/.venv"

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: %s\n' "$*" >&2; exit 2; }

PREFIX=""
HTTP_PORT=80
HTTPS_PORT=443
APT=1
SERVICE_USER=kvmmgr
CREATE_USER=1
POSTGRES=0
PG_NAME=kvmmgr
ADMIN=""
CERT=""
KEY=""
TLS=1
LISTEN="*"
REDIS_PORT=6379
CONSOLE_PORT=6080
SERVER_NAME="$(hostname -f 2>/dev/null || hostname)"

need_value() { [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) need_value "$@"; PREFIX="$2"; shift 2 ;;
    --port) need_value "$@"; HTTP_PORT="$2"; shift 2 ;;
    --https-port) need_value "$@"; HTTPS_PORT="$2"; shift 2 ;;
    --redis-port) need_value "$@"; REDIS_PORT="$2"; shift 2 ;;
    --console-port) need_value "$@"; CONSOLE_PORT="$2"; shift 2 ;;
    --listen) need_value "$@"; LISTEN="$2"; shift 2 ;;
    --server-name) need_value "$@"; SERVER_NAME="$2"; shift 2 ;;
    --user) need_value "$@"; SERVICE_USER="$2"; CREATE_USER=0; shift 2 ;;
    --admin) need_value "$@"; ADMIN="$2"; shift 2 ;;
    --cert) need_value "$@"; CERT="$2"; shift 2 ;;
    --key) need_value "$@"; KEY="$2"; shift 2 ;;
    --pg-name) need_value "$@"; PG_NAME="$2"; shift 2 ;;
    --postgres) POSTGRES=1; shift ;;
    --no-tls) TLS=0; shift ;;
    --no-apt) APT=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# --- validate everything before changing anything --------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user, binds ports, writes /etc)"
for port in "$HTTP_PORT" "$HTTPS_PORT" "$REDIS_PORT" "$CONSOLE_PORT"; do
  [[ "$port" =~ ^[0-9]{1,5}$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
    || die "not a port: $port"
done
NAME_RE='^[a-z_][a-z0-9_-]{0,31}$'
[[ "$SERVICE_USER" =~ $NAME_RE ]] || die "--user: not a user name: $SERVICE_USER"
[[ "$PG_NAME" =~ $NAME_RE ]] || die "--pg-name: letters, digits, _ and - only"
[ -z "$ADMIN" ] || [[ "$ADMIN" =~ ^[A-Za-z0-9._@+-]{1,150}$ ]] || die "--admin: not a user name: $ADMIN"
[[ "$SERVER_NAME" =~ ^[A-Za-z0-9.-]{1,253}$ ]] || die "--server-name: not a host name: $SERVER_NAME"
[[ "$LISTEN" =~ ^(\*|[0-9.]+|\[[0-9a-fA-F:]+\])$ ]] || die "--listen: not an address: $LISTEN"
if [ -n "$CERT$KEY" ]; then
  [ -n "$CERT" ] && [ -n "$KEY" ] || die "--cert and --key go together"
  [ -r "$CERT" ] && [ -r "$KEY" ] || die "cannot read $CERT or $KEY"
  CERT="$(realpath "$CERT")"
  KEY="$(realpath "$KEY")"
fi
if [ "$TLS" -eq 0 ] && [ "$LISTEN" != "127.0.0.1" ]; then
  die "--no-tls sends basic-auth passwords in clear: only with --listen 127.0.0.1"
fi
if [ -n "$PREFIX" ]; then
  mkdir -p "$PREFIX"
  PREFIX="$(realpath "$PREFIX")"
fi
if [ "$CREATE_USER" -eq 0 ]; then
  id -u "$SERVICE_USER" >/dev/null 2>&1 || die "--user $SERVICE_USER: no such user"
  getent group "$SERVICE_USER" >/dev/null || die "--user $SERVICE_USER: no group of that name"
fi

# The admin's password comes first, before anything else may read stdin.
ADMIN_PASSWORD=""
if [ -n "$ADMIN" ] && [ ! -t 0 ]; then
  IFS= read -r ADMIN_PASSWORD || true
fi

USE_SYSTEMD=0
if [ -z "$PREFIX" ] && [ -d /run/systemd/system ]; then USE_SYSTEMD=1; fi

ETC="$PREFIX/etc/kvmmgr"
DATA_DIR="$PREFIX/var/lib/kvmmgr"
STATIC_ROOT="$PREFIX/var/www/kvmmgr/static"
LOG_DIR="$PREFIX/var/log/kvmmgr"
RUN_DIR="$PREFIX/run/kvmmgr"
ENV_FILE="$ETC/kvmmgr.env"
HTPASSWD="$ETC/htpasswd"
TLS_DIR="$ETC/tls"
NGINX_USER=www-data

# --- helpers ----------------------------------------------------------------------
# write_if_changed PATH MODE OWNER:GROUP  <content on stdin>: no rewrite (and no new
# mtime) when the content is the same; mode and owner are set either way.
write_if_changed() {
  local path="$1" mode="$2" owner="$3" tmp
  tmp="$(mktemp "$(dirname "$path")/.install.XXXXXX")"
  cat > "$tmp"
  if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
    rm -f "$tmp"
  else
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    mv -f "$tmp" "$path"
    say "wrote $path"
    CHANGED=1
  fi
  chmod "$mode" "$path"
  chown "$owner" "$path"
}

# The service's environment, from the env file only (never the caller's).
ENV_ARGS=()
load_env() {
  ENV_ARGS=(PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "HOME=$DATA_DIR" "PYTHONPATH=$ROOT"
    DJANGO_SETTINGS_MODULE=kvmmgr.settings LANG=C.UTF-8)
  local line
  while IFS= read -r line; do
    [[ "$line" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] && ENV_ARGS+=("$line")
  done < "$ENV_FILE"
}

# as_service CMD...: run with the service's environment, as the service user.
as_service() {
  if [ "$SERVICE_USER" = root ]; then
    env -i "${ENV_ARGS[@]}" "$@"
  else
    runuser -u "$SERVICE_USER" -- env -i "${ENV_ARGS[@]}" "$@"
  fi
}
# as_root CMD...: the service's environment as root (adduser writes /etc/kvmmgr/htpasswd).
as_root() { env -i "${ENV_ARGS[@]}" "$@"; }
manage() { (cd "$ROOT" && as_service "$PY" manage.py "$@"); }

pid_alive() { local pid; pid="$(cat "$1" 2>/dev/null || true)"; [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_until() {
  local what="$1" i
  shift
  for i in $(seq 300); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  die "$what not ready within 30 s (logs: $LOG_DIR)"
}
random_hex() { "$PY" -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"; }

# --- 1. packages and venv ---------------------------------------------------------
if [ "$APT" -eq 1 ]; then
  "$ROOT/deploy/bootstrap.sh" run
  missing=()
  for pkg in nginx apache2-utils openssl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "$POSTGRES" -eq 1 ] && { dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed" || missing+=(postgresql); }
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
[ -x "$PY" ] || die "no venv at $VENV: run without --no-apt (or deploy/bootstrap.sh run)"
command -v nginx >/dev/null || die "nginx is not installed"

# --- 2. service user and directories ----------------------------------------------
if [ "$CREATE_USER" -eq 1 ] && ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  say "creating system user $SERVICE_USER"
  adduser --system --group --home "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin \
    --disabled-login --quiet "$SERVICE_USER"
fi
CHANGED=0
install -d -m 0755 -o root -g root "$ETC"
install -d -m 0700 -o root -g root "$TLS_DIR"
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR"
install -d -m 0755 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATIC_ROOT"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$LOG_DIR"
install -d -m 0755 -o "$SERVICE_USER" -g "$SERVICE_USER" "$RUN_DIR"
if [ -n "$PREFIX" ]; then
  # nginx's workers (www-data) traverse DIR to the static files and the socket.
  chmod 0755 "$PREFIX"
fi

# --- 3. PostgreSQL (optional) -----------------------------------------------------
existing_value() { [ -f "$ENV_FILE" ] && sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1 || true; }
DATABASE_URL="$(existing_value DATABASE_URL)"
if [ "$POSTGRES" -eq 1 ]; then
  # The release's own cluster (Debian 13: 17, Debian 12: 15): the first one listed,
  # on its own port; no version is assumed.
  read -r pg_version pg_cluster pg_port _ < <(pg_lsclusters --no-header | head -n 1) || true
  [ -n "${pg_port:-}" ] || die "no PostgreSQL cluster found (pg_lsclusters lists none)"
  export PGPORT="$pg_port"
  if ! runuser -u postgres -- psql -qAtc 'SELECT 1' >/dev/null 2>&1; then
    if [ "$USE_SYSTEMD" -eq 1 ]; then
      systemctl enable --now postgresql
    else
      say "starting PostgreSQL cluster $pg_version/$pg_cluster (no systemd)"
      pg_ctlcluster "$pg_version" "$pg_cluster" start
    fi
  fi
  psql_q() { runuser -u postgres -- psql -qAt -v ON_ERROR_STOP=1 "$@"; }
  if [[ "$DATABASE_URL" != postgres://* ]]; then
    # A new password, known only to the env file; the SQL goes through stdin so it
    # never shows in a process listing.
    pg_password="$(random_hex 24)"
    if [ "$(psql_q -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_NAME'")" = 1 ]; then
      printf "ALTER ROLE \"%s\" LOGIN PASSWORD '%s';\n" "$PG_NAME" "$pg_password" | psql_q
    else
      say "creating PostgreSQL role $PG_NAME"
      printf "CREATE ROLE \"%s\" LOGIN PASSWORD '%s';\n" "$PG_NAME" "$pg_password" | psql_q
    fi
    DATABASE_URL="postgres://$PG_NAME:$pg_password@127.0.0.1:$pg_port/$PG_NAME"
  fi
  if [ "$(psql_q -c "SELECT 1 FROM pg_database WHERE datname = '$PG_NAME'")" != 1 ]; then
    say "creating PostgreSQL database $PG_NAME"
    runuser -u postgres -- createdb -O "$PG_NAME" "$PG_NAME"
  fi
  DB_UNIT=postgresql.service
else
  [ -n "$DATABASE_URL" ] || DATABASE_URL="sqlite:///$DATA_DIR/db.sqlite3"
  DB_UNIT=""
fi

# --- 4. the env file: keys missing from it are added; existing values are kept ------
# (delete a line to have it regenerated). Mode 0640 root:SERVICE_USER.
# Redis requires a password: any local user could otherwise read the broker and
# queue or drop jobs.
REDIS_PASSWORD="$(existing_value KVMMGR_REDIS_PASSWORD)"
[ -n "$REDIS_PASSWORD" ] || REDIS_PASSWORD="$(random_hex 24)"
BROKER_URL="redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
declare -a WANT=(
  "SECRET_KEY=$(existing_value SECRET_KEY)"
  "DATABASE_URL=$DATABASE_URL"
  "KVMMGR_AUTH=remote_user"
  "ALLOWED_HOSTS=$SERVER_NAME,127.0.0.1,localhost"
  "KVMMGR_HTTPS=$TLS"
  "KVMMGR_DATA_DIR=$DATA_DIR"
  "STATIC_ROOT=$STATIC_ROOT"
  "KVMMGR_HTPASSWD=$HTPASSWD"
  "KVMMGR_HTPASSWD_GROUP=$NGINX_USER"
  "KVMMGR_AUTH_FAILURE_LOG=$LOG_DIR/auth-failures.log"
  "KVMMGR_REDIS_PASSWORD=$REDIS_PASSWORD"
  "CELERY_BROKER_URL=$BROKER_URL"
)
env_content() {
  if [ -f "$ENV_FILE" ]; then
    # A broker URL without the password (written by earlier versions) is replaced.
    grep -v '^CELERY_BROKER_URL=redis://127\.0\.0\.1:' "$ENV_FILE" || true
  else
    echo "# kvmmgr's environment (deploy/install.sh). Secrets: keep this file 0640 root:$SERVICE_USER."
  fi
  for line in "${WANT[@]}"; do
    key="${line%%=*}"
    if ! { [ -f "$ENV_FILE" ] && grep -q "^$key=" "$ENV_FILE"; }; then
      if [ "$line" = "SECRET_KEY=" ]; then line="SECRET_KEY=$(random_hex 32)"; fi
      echo "$line"
    fi
  done
}
# Process substitution, not a pipe: write_if_changed sets CHANGED in this shell.
write_if_changed "$ENV_FILE" 0640 "root:$SERVICE_USER" < <(env_content)
ENV_CHANGED="$CHANGED"
load_env

# --- 5. TLS certificate -----------------------------------------------------------
TLS_CERT=""
TLS_KEY=""
if [ "$TLS" -eq 1 ]; then
  if [ -n "$CERT" ]; then
    TLS_CERT="$CERT"
    TLS_KEY="$KEY"
  else
    TLS_CERT="$TLS_DIR/kvmmgr.crt"
    TLS_KEY="$TLS_DIR/kvmmgr.key"
    if [ ! -s "$TLS_CERT" ] || [ ! -s "$TLS_KEY" ]; then
      say "making a self-signed certificate for $SERVER_NAME in $TLS_DIR (replace it with your own)"
      openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=$SERVER_NAME" \
        -addext "subjectAltName=DNS:$SERVER_NAME,DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null
      chmod 0600 "$TLS_KEY"
      chmod 0644 "$TLS_CERT"
    fi
  fi
fi

# --- 6. nginx, uwsgi and systemd files --------------------------------------------
render_args=(--out "$ETC")
[ "$TLS" -eq 1 ] && render_args+=(--tls)
render_out="$(cd "$ROOT" && "$PY" -m kvmmgr.deployconfig "${render_args[@]}" \
  "APP_DIR=$ROOT" "VENV=$VENV" "DATA_DIR=$DATA_DIR" "RUN_DIR=$RUN_DIR" "LOG_DIR=$LOG_DIR" \
  "STATIC_ROOT=$STATIC_ROOT" "HTPASSWD=$HTPASSWD" "SOCKET=$RUN_DIR/uwsgi.sock" \
  "SERVICE_USER=$SERVICE_USER" "NGINX_USER=$NGINX_USER" "NGINX_GROUP=$NGINX_USER" \
  "LISTEN=$LISTEN" "HTTP_PORT=$HTTP_PORT" "HTTPS_PORT=$HTTPS_PORT" \
  "SERVER_NAME=$SERVER_NAME" "CONSOLE_PORT=$CONSOLE_PORT" "ENV_FILE=$ENV_FILE" \
  "DB_UNIT=$DB_UNIT" "TLS_CERT=$TLS_CERT" "TLS_KEY=$TLS_KEY")"
CONF_CHANGED=0
if [ -n "$render_out" ]; then
  printf '%s\n' "$render_out" | sed 's/^/install: /'
  CONF_CHANGED=1
fi

# --- 7. database, static files, first admin ----------------------------------------
manage migrate --no-input -v 0
manage collectstatic --no-input -v 0
if [ -n "$ADMIN" ]; then
  users="$(cd "$ROOT" && as_root "$PY" manage.py users | cut -f1)"
  if grep -qxF -- "$ADMIN" <<< "$users"; then
    say "admin $ADMIN exists (unchanged)"
  else
    generated=0
    if [ -z "$ADMIN_PASSWORD" ]; then
      ADMIN_PASSWORD="$(random_hex 12)"
      generated=1
    fi
    printf '%s\n' "$ADMIN_PASSWORD" | (cd "$ROOT" && as_root "$PY" manage.py adduser "$ADMIN" --role admin)
    if [ "$generated" -eq 1 ]; then
      CHANGED=0
      write_if_changed "$ETC/admin-password" 0600 root:root <<< "$ADMIN_PASSWORD"
      say "admin $ADMIN, password $ADMIN_PASSWORD (also in $ETC/admin-password, 0600; delete it once noted)"
    fi
  fi
fi
# adduser runs as root (it writes the htpasswd in /etc/kvmmgr); what it left in the
# data directory belongs to the service user.
chown -R "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR"

# --- 8. services ------------------------------------------------------------------
if [ "$USE_SYSTEMD" -eq 1 ]; then
  units=(kvmmgr-uwsgi.service kvmmgr-celery-worker.service kvmmgr-celery-beat.service
    kvmmgr-console.service)
  UNITS_CHANGED=0
  for unit in "${units[@]}"; do
    if ! cmp -s "$ETC/systemd/$unit" "/etc/systemd/system/$unit"; then
      install -m 0644 "$ETC/systemd/$unit" "/etc/systemd/system/$unit"
      say "installed /etc/systemd/system/$unit"
      UNITS_CHANGED=1
    fi
  done
  [ "$UNITS_CHANGED" -eq 1 ] && systemctl daemon-reload
  site=/etc/nginx/sites-enabled/kvmmgr
  if [ "$(readlink "$site" 2>/dev/null || true)" != "$ETC/kvmmgr-site-enabled.conf" ]; then
    ln -sfn "$ETC/kvmmgr-site-enabled.conf" "$site"
    say "enabled $site"
    CONF_CHANGED=1
  fi
  nginx -t -q
  # Debian's redis-server: the password and port in a file its config includes last.
  CHANGED=0
  printf '# Written by kvmmgr install.sh\nport %s\nrequirepass %s\n' "$REDIS_PORT" "$REDIS_PASSWORD" \
    | write_if_changed /etc/redis/kvmmgr.conf 0640 root:redis
  REDIS_CHANGED="$CHANGED"
  if ! grep -qx 'include /etc/redis/kvmmgr.conf' /etc/redis/redis.conf; then
    echo 'include /etc/redis/kvmmgr.conf' >> /etc/redis/redis.conf
    REDIS_CHANGED=1
  fi
  if [ "$REDIS_CHANGED" -eq 1 ] && systemctl is-active --quiet redis-server; then
    systemctl restart redis-server
  fi
  systemctl enable --now --quiet redis-server nginx "${units[@]}"
  if [ "$ENV_CHANGED" -eq 1 ] || [ "$CONF_CHANGED" -eq 1 ] || [ "$UNITS_CHANGED" -eq 1 ]; then
    say "configuration changed: restarting kvmmgr, reloading nginx"
    systemctl restart "${units[@]}"
    systemctl reload nginx
  fi
  say "services: systemctl status nginx ${units[*]}"
else
  say "no systemd here (or --prefix): starting nginx, uwsgi, Redis and Celery directly; pidfiles in $RUN_DIR"
  RESTART=0
  if [ "$ENV_CHANGED" -eq 1 ] || [ "$CONF_CHANGED" -eq 1 ]; then RESTART=1; fi
  # Our own Redis, its password in a config file only root reads (not on the command
  # line, where ps shows it to every local user).
  CHANGED=0
  write_if_changed "$ETC/redis.conf" 0600 root:root <<REDISCONF
# Written by kvmmgr install.sh
bind 127.0.0.1
port $REDIS_PORT
requirepass $REDIS_PASSWORD
save ""
appendonly no
dir $DATA_DIR
pidfile $RUN_DIR/redis.pid
logfile $LOG_DIR/redis.log
REDISCONF
  if [ "$CHANGED" -eq 1 ] && pid_alive "$RUN_DIR/redis.pid"; then
    pid="$(cat "$RUN_DIR/redis.pid")"
    kill -TERM "$pid"
    wait_until "redis to stop" bash -c '! kill -0 "$1" 2>/dev/null' _ "$pid"
    RESTART=1
  fi
  if ! pid_alive "$RUN_DIR/redis.pid"; then
    port_busy "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is taken by another program; choose --redis-port"
    as_root redis-server "$ETC/redis.conf" --daemonize yes
    wait_until "redis" port_busy "$REDIS_PORT"
    say "started redis on 127.0.0.1:$REDIS_PORT (pid $(cat "$RUN_DIR/redis.pid"), password required)"
  fi

  if pid_alive "$RUN_DIR/uwsgi.pid"; then
    if [ "$RESTART" -eq 1 ]; then
      kill -HUP "$(cat "$RUN_DIR/uwsgi.pid")"
      say "reloaded uwsgi"
    fi
  else
    rm -f "$RUN_DIR/uwsgi.sock"
    (cd "$ROOT" && as_root "$VENV/bin/uwsgi" --ini "$ETC/kvmmgr.ini" \
      --daemonize "$LOG_DIR/uwsgi.log" --pidfile "$RUN_DIR/uwsgi.pid")
    wait_until "uwsgi" test -S "$RUN_DIR/uwsgi.sock"
    chmod 0644 "$RUN_DIR/uwsgi.pid"  # uwsgi writes it world-writable
    say "started uwsgi (pid $(cat "$RUN_DIR/uwsgi.pid"))"
  fi

  for part in worker beat; do
    pidfile="$RUN_DIR/celery-$part.pid"
    if pid_alive "$pidfile"; then
      if [ "$RESTART" -eq 0 ]; then continue; fi
      pid="$(cat "$pidfile")"
      kill -TERM "$pid"
      wait_until "celery $part to stop" bash -c '! kill -0 "$1" 2>/dev/null' _ "$pid"
    fi
    rm -f "$pidfile"
    args=(-A kvmmgr "$part" --detach --pidfile "$pidfile" --logfile "$LOG_DIR/celery-$part.log"
      --loglevel INFO)
    if [ "$part" = worker ]; then
      args+=(--concurrency 4)
    else
      args+=(--schedule "$DATA_DIR/celerybeat-schedule")
    fi
    (cd "$ROOT" && as_service "$VENV/bin/celery" --workdir "$ROOT" "${args[@]}")
    wait_until "celery $part" pid_alive "$pidfile"
    say "started celery $part (pid $(cat "$pidfile"))"
  done

  pidfile="$RUN_DIR/console.pid"
  if pid_alive "$pidfile" && [ "$RESTART" -eq 1 ]; then
    pid="$(cat "$pidfile")"
    kill -TERM "$pid"
    wait_until "the console proxy to stop" bash -c '! kill -0 "$1" 2>/dev/null' _ "$pid"
  fi
  if ! pid_alive "$pidfile"; then
    rm -f "$pidfile"
    (cd "$ROOT" && as_service "$PY" manage.py consoleproxy --listen 127.0.0.1 \
      --port "$CONSOLE_PORT" --detach --pidfile "$pidfile" --logfile "$LOG_DIR/console.log")
    wait_until "the console proxy" port_busy "$CONSOLE_PORT"
    say "started the console proxy on 127.0.0.1:$CONSOLE_PORT (pid $(cat "$pidfile"))"
  fi

  if pid_alive "$RUN_DIR/nginx.pid"; then
    if [ "$RESTART" -eq 1 ]; then
      nginx -t -q -c "$ETC/nginx-private.conf"
      nginx -c "$ETC/nginx-private.conf" -s reload
      say "reloaded nginx"
    fi
  else
    nginx -t -q -c "$ETC/nginx-private.conf"
    nginx -c "$ETC/nginx-private.conf"
    wait_until "nginx" pid_alive "$RUN_DIR/nginx.pid"
    say "started nginx (pid $(cat "$RUN_DIR/nginx.pid"))"
  fi
  say "stop them with: kill \$(cat $RUN_DIR/{nginx,uwsgi,celery-worker,celery-beat,console,redis}.pid)"
fi

if [ "$TLS" -eq 1 ]; then
  say "kvmmgr answers on https://$SERVER_NAME:$HTTPS_PORT/ (certificate $TLS_CERT)"
else
  say "kvmmgr answers on http://127.0.0.1:$HTTP_PORT/"
fi
