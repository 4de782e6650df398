"""The one settings module, driven by the environment (see docs/configuration in README).

Defaults give an embedded setup: SQLite in ``KVMMGR_DATA_DIR`` and a local Redis.
"""

from __future__ import annotations

import socket
from pathlib import Path

import dj_database_url

from kvmmgr.env import env_bool, env_choice, env_float, env_int, env_list, env_str, private_file

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("KVMMGR_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DJANGO_DEBUG", False)
_secret = env_str("SECRET_KEY", "")
SECRET_KEY = _secret or private_file(DATA_DIR / "secret_key", generate=True)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "kvmmgr",
    "jobs",
    "nodes",
    "vms",
    "stats",
    "vpn",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "kvmmgr.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kvmmgr.urls"
WSGI_APPLICATION = "kvmmgr.wsgi.application"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "vms:vm_list"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "kvmmgr.access.context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while a worker writes inventory.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
        ),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

# --- who is asking -------------------------------------------------------------
# django: Django's own login page (development without nginx).
# remote_user: nginx authenticates (basic auth) and hands the name to uwsgi as the
# REMOTE_USER *uwsgi parameter*; a client's "Remote-User:" header arrives as
# HTTP_REMOTE_USER and is never read. Only run this mode behind deploy/nginx.
KVMMGR_AUTH = env_choice("KVMMGR_AUTH", "django", ("django", "remote_user"))
if KVMMGR_AUTH == "remote_user":
    MIDDLEWARE[MIDDLEWARE.index("kvmmgr.middleware.LoginRequiredMiddleware")] = (
        "kvmmgr.middleware.RemoteUserMiddleware"
    )
    MIDDLEWARE.insert(
        MIDDLEWARE.index("kvmmgr.middleware.RemoteUserMiddleware") + 1,
        "kvmmgr.middleware.AccountRequiredMiddleware",
    )
    AUTHENTICATION_BACKENDS = ["kvmmgr.middleware.RemoteUserBackend"]
# htpasswd file nginx reads; manage.py adduser writes it together with the Django user.
KVMMGR_HTPASSWD = Path(env_str("KVMMGR_HTPASSWD", str(DATA_DIR / "htpasswd")))
# Group that may read it (nginx's workers); the file is 0640 root:GROUP.
KVMMGR_HTPASSWD_GROUP = env_str("KVMMGR_HTPASSWD_GROUP", "www-data")

# Failed logins: an address with this many failures within the window has its next
# login-form passwords refused unchecked until the window has passed since the oldest.
KVMMGR_LOGIN_MAX_FAILURES = env_int("KVMMGR_LOGIN_MAX_FAILURES", 5, minimum=1)
KVMMGR_LOGIN_LOCKOUT_SECONDS = env_int("KVMMGR_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
# nginx's log of refused basic-auth attempts (install.sh sets it); imported into the
# audit log (action auth.failed) every KVMMGR_AUTH_FAILURE_INTERVAL seconds.
KVMMGR_AUTH_FAILURE_LOG = env_str("KVMMGR_AUTH_FAILURE_LOG", "")
KVMMGR_AUTH_FAILURE_INTERVAL = env_float("KVMMGR_AUTH_FAILURE_INTERVAL", 30.0, minimum=1.0)

# Browser consoles: the console proxy (manage.py consoleproxy) listens here; nginx
# forwards /websockify to it. A ticket opens one connection within this many seconds.
KVMMGR_CONSOLE_LISTEN = env_str("KVMMGR_CONSOLE_LISTEN", "127.0.0.1")
KVMMGR_CONSOLE_PORT = env_int("KVMMGR_CONSOLE_PORT", 6080, minimum=1)
KVMMGR_CONSOLE_TICKET_SECONDS = env_int("KVMMGR_CONSOLE_TICKET_SECONDS", 30, minimum=1)
# Where the console page opens its websocket: a path on this site (behind nginx),
# or a full ws:// URL (deploy/dev.sh: the proxy's own port).
KVMMGR_CONSOLE_URL = env_str("KVMMGR_CONSOLE_URL", "/websockify")
# Origins besides the site's own whose pages may open consoles (dev.sh's server).
KVMMGR_CONSOLE_ORIGINS = [
    origin.strip() for origin in env_str("KVMMGR_CONSOLE_ORIGINS", "").split(",") if origin.strip()
]

# Served over TLS (nginx terminates it and passes HTTPS=on as a uwsgi param).
KVMMGR_HTTPS = env_bool("KVMMGR_HTTPS", False)
if KVMMGR_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env_int("KVMMGR_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("KVMMGR_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("KVMMGR_HSTS_PRELOAD", False)
# Preloading is a commitment made by submitting the domain to the browsers' lists,
# for the owner of the domain to decide; not a default of ours.
SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- REST API (kvmmgr/api) ----------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "kvmmgr.api.auth.TokenAuthentication",
        # The pages' login (nginx basic auth -> REMOTE_USER, or the login form): the
        # browsable API, with CSRF for changes.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "kvmmgr.api.errors.handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "kvmmgr API",
    "DESCRIPTION": "VMs, nodes, jobs and VPN tunnels of kvmmgr. Authenticate with "
    "'Authorization: Token KEY' (manage.py apitoken create USER NAME).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "VMStateEnum": "nodes.hypervisor.states.VMState",
        "VpnStateEnum": "vpn.choices.VpnState",
    },
}

# --- Celery -----------------------------------------------------------------
# Default: the unix socket deploy/dev.sh starts Redis on (mode 0700: only this
# user), when it exists; otherwise a local Redis on TCP. Production sets the URL
# (with the Redis password) in the env file, which is not world-readable.
_DEV_REDIS_SOCKET = DATA_DIR / "run" / "redis.sock"
CELERY_BROKER_URL = env_str(
    "CELERY_BROKER_URL",
    f"redis+socket://{_DEV_REDIS_SOCKET}"
    if _DEV_REDIS_SOCKET.is_socket()
    else "redis://127.0.0.1:6379/0",
)
# kvmmgr never sends Celery control messages (abort is a database flag the job
# watches); with remote control off, a broker message cannot shut a worker down.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE

# --- kvmmgr -----------------------------------------------------------------
# Private key the manager uses for qemu+ssh (generated by `manage.py sshkey`).
KVMMGR_SSH_KEY = Path(env_str("KVMMGR_SSH_KEY", str(DATA_DIR / "ssh" / "id_ed25519")))
# Host keys the manager has pinned (first contact, then strict).
KVMMGR_SSH_KNOWN_HOSTS = Path(
    env_str("KVMMGR_SSH_KNOWN_HOSTS", str(DATA_DIR / "ssh" / "known_hosts"))
)
# A node that does not answer within this many seconds is reported unreachable.
KVMMGR_CONNECT_TIMEOUT = env_float("KVMMGR_CONNECT_TIMEOUT", 2.5, minimum=0.5)
# How often the beat refreshes every node's inventory.
KVMMGR_INVENTORY_INTERVAL = env_float("KVMMGR_INVENTORY_INTERVAL", 10.0, minimum=1.0)
# How often a refresh also re-reads a node's facts (memory, pools, ISOs, networks).
KVMMGR_FACTS_INTERVAL = env_float("KVMMGR_FACTS_INTERVAL", 60.0, minimum=0.0)
# A node whose last good contact is older than this many refresh intervals shows offline.
KVMMGR_OFFLINE_AFTER_INTERVALS = env_int("KVMMGR_OFFLINE_AFTER_INTERVALS", 3, minimum=1)

# A running job touches its heartbeat this often; the reaper fails it after STALE_AFTER.
KVMMGR_JOB_HEARTBEAT = env_float("KVMMGR_JOB_HEARTBEAT", 5.0, minimum=0.1)
KVMMGR_JOB_STALE_AFTER = env_float("KVMMGR_JOB_STALE_AFTER", 60.0, minimum=1.0)
# An evacuation leaves at least this much memory free on each destination it plans.
KVMMGR_EVACUATE_MEMORY_RESERVE_MIB = env_int("KVMMGR_EVACUATE_MEMORY_RESERVE_MIB", 256, minimum=0)
# How often failed migrations are re-checked on both nodes and their leftovers removed.
KVMMGR_RECONCILE_INTERVAL = env_float("KVMMGR_RECONCILE_INTERVAL", 60.0, minimum=5.0)
# After an abort, how long a migration job waits for libvirt to roll back before it
# gives up and leaves the rest to the reconciler (a cut link keeps libvirt's job
# "cancelling" until the link returns).
KVMMGR_MIGRATION_ABORT_WAIT = env_float("KVMMGR_MIGRATION_ABORT_WAIT", 10.0, minimum=1.0)
# Over a slow link (a tunnel, a bandwidth cap <= 125 MiB/s) live migrations use QEMU's
# auto-converge even when not asked: a busy guest otherwise never converges there.
KVMMGR_AUTO_CONVERGE_SLOW_LINKS = env_bool("KVMMGR_AUTO_CONVERGE_SLOW_LINKS", True)
# A live migration between the same nodes over the same peer path that succeeded this
# recently proves the path: the next one skips its ~1 s ssh check (0 turns this off).
KVMMGR_PEER_PROOF_SECONDS = env_float("KVMMGR_PEER_PROOF_SECONDS", 600.0, minimum=0.0)

# virt-install gets this long before the create job gives up on it.
KVMMGR_VIRT_INSTALL_TIMEOUT = env_float("KVMMGR_VIRT_INSTALL_TIMEOUT", 600.0, minimum=10.0)

# Stats: how often every online node is sampled, and how long each
# resolution is kept (raw samples, then per-minute and per-hour min/avg/max).
KVMMGR_STATS_INTERVAL = env_float("KVMMGR_STATS_INTERVAL", 5.0, minimum=1.0)
KVMMGR_STATS_RAW_HOURS = env_float("KVMMGR_STATS_RAW_HOURS", 24.0, minimum=1.0)
KVMMGR_STATS_MINUTE_DAYS = env_float("KVMMGR_STATS_MINUTE_DAYS", 30.0, minimum=1.0)
KVMMGR_STATS_HOUR_DAYS = env_float("KVMMGR_STATS_HOUR_DAYS", 365.0, minimum=1.0)
# How often rollups are computed and old rows pruned.
KVMMGR_STATS_ROLLUP_INTERVAL = env_float("KVMMGR_STATS_ROLLUP_INTERVAL", 60.0, minimum=10.0)
# Points in each VM list sparkline (the most recent raw samples).
KVMMGR_STATS_SPARKLINE_POINTS = env_int("KVMMGR_STATS_SPARKLINE_POINTS", 30, minimum=2)

# Host name VNC links use for consoles of local (qemu:///system) nodes.
KVMMGR_LOCAL_CONSOLE_HOST = env_str("KVMMGR_LOCAL_CONSOLE_HOST", socket.gethostname())

# VPN tunnels' PKI (CA, node keys, tls-crypt): a 0700 directory of 0600 files.
KVMMGR_VPN_DIR = Path(env_str("KVMMGR_VPN_DIR", str(DATA_DIR / "vpn")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
