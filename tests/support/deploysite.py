"""A real kvmmgr site for tests: nginx + uwsgi started from deploy/ files, on loopback.

The configuration is rendered by ``kvmmgr.deployconfig`` (what install.sh uses)
into a private directory; nginx runs its own master with basic auth on a free
high port, uwsgi runs ``deploy/uwsgi/kvmmgr.ini`` in remote_user mode, a private
Redis and a Celery worker run the jobs. Users are made with ``manage.py adduser``
(password on stdin). Everything started here is stopped by PID at the end.

Skipped without nginx or redis-server, except under ``KVMMGR_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
ARTIFACTS = ROOT / "test-artifacts"
USERS = {
    "ada": ("admin", "ada-Secret-4711"),
    "otto": ("operator", "otto-Secret-4711"),
    "vic": ("viewer", "vic-Secret-4711"),
}
NODE_NAME = "demo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout} s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Browser:
    """A tiny HTTP client: basic auth, cookies, CSRF token; never follows redirects."""

    port: int
    user: str | None = None
    password: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            sent["Authorization"] = f"Basic {token}"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode(data)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        raw = conn.getresponse()
        text = raw.read().decode("utf-8", "replace")
        for header in raw.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        conn.close()
        return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, text)

    def get(self, path: str, **kwargs: object) -> Response:
        return self.request("GET", path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: object) -> Response:
        """POST with the CSRF token of a previous page, as the browser would."""
        if "csrftoken" not in self.cookies:
            self.get("/")
        form = {"csrfmiddlewaretoken": self.cookies.get("csrftoken", ""), **(data or {})}
        headers = {"Referer": f"http://127.0.0.1:{self.port}/", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return self.request("POST", path, data=form, headers=headers)


@dataclass
class Site:
    root: Path
    port: int
    env: dict[str, str]
    node_xml: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.root / "data" / "db.sqlite3"

    def browser(self, user: str | None = None, password: str | None = None) -> Browser:
        if user is not None and password is None:
            password = USERS[user][1]
        return Browser(self.port, user, password)

    def manage(
        self, *args: str, stdin: str | None = None, check: bool = True, extra: dict | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(VENV / "bin" / "python"), "manage.py", *args],
            check=False,
            cwd=ROOT,
            env={**self.env, **(extra or {})},
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def audit(self, **filters: str) -> list[dict]:
        args = ["audit", "--format", "json"]
        for key, value in filters.items():
            args += [f"--{key}", value]
        lines = self.manage(*args).stdout.splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def _missing() -> list[str]:
    missing = [name for name in ("nginx", "redis-server") if shutil.which(name) is None]
    if not (VENV / "bin" / "uwsgi").exists():
        missing.append(".venv/bin/uwsgi")
    if os.geteuid() != 0:
        missing.append("root (nginx workers run as www-data, uwsgi chowns its socket)")
    return missing


def _start(site: Site, argv: list[str], log: str) -> subprocess.Popen[bytes]:
    handle = (site.root / "log" / log).open("ab")
    proc = subprocess.Popen(argv, cwd=ROOT, env=site.env, stdout=handle, stderr=handle)
    site.procs.append(proc)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _write_node_xml(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.nodexml import RUNSTATE_SHUTOFF, FakeDomain, write_node_xml

    write_node_xml(
        path,
        [
            FakeDomain("keep-off", "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0001", RUNSTATE_SHUTOFF),
            FakeDomain("keep-on", "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0002", vnc_port=5901),
            # The browser test's own VM, so the HTTP tests' actions cannot disturb it.
            FakeDomain("browse-me", "6b2f3a62-5c1e-4a7e-9a55-2f4d2e7d0003", RUNSTATE_SHUTOFF),
        ],
    )


@pytest.fixture(scope="session")
def deployed_site() -> Iterator[Site]:
    with run_site() as site:
        yield site


def _test_node_ready(site: Site) -> bool:
    # The worker's first refresh fills the inventory (the node has three domains).
    return site.query("SELECT count(*) FROM vms_virtualmachine")[0][0] >= 3


@contextmanager
def run_site(
    *,
    extra_env: dict[str, str] | None = None,
    node: tuple[str, ...] | None = None,
    ready: Callable[[Site], bool] = _test_node_ready,
) -> Iterator[Site]:
    """Start the whole site; ``node`` is ``addnode``'s arguments (default: the test node).

    ``extra_env`` reaches uwsgi, the Celery worker and ``manage.py`` (e.g. the lab's
    KVMMGR_SSH_KEY); ``ready`` says when the first inventory refresh has happened.
    """
    missing = _missing()
    if missing:
        reason = f"real nginx/uwsgi site unavailable: missing {', '.join(missing)}"
        if os.environ.get("KVMMGR_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="kvmmgr-site-"))
    # nginx workers (www-data) traverse it; the secrets inside are 0600/0640 themselves.
    root.chmod(0o755)
    for sub in ("data", "run", "log", "conf", "static"):
        (root / sub).mkdir(mode=0o755)
    port = free_port()
    redis_port = free_port()
    console_port = free_port()
    node_xml = root / "node.xml"
    _write_node_xml(node_xml)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KVMMGR_", "DATABASE_", "DJANGO_", "CELERY_", "PYTEST"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "kvmmgr.settings",
            "KVMMGR_DATA_DIR": str(root / "data"),
            "KVMMGR_AUTH": "remote_user",
            "KVMMGR_HTPASSWD": str(root / "data" / "htpasswd"),
            "STATIC_ROOT": str(root / "static"),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "KVMMGR_INVENTORY_INTERVAL": "5",
            "KVMMGR_AUTH_FAILURE_LOG": str(root / "log" / "auth-failures.log"),
            "KVMMGR_AUTH_FAILURE_INTERVAL": "1",
            **(extra_env or {}),
        }
    )
    site = Site(root=root, port=port, env=env, node_xml=node_xml)
    values = {
        "APP_DIR": str(ROOT),
        "VENV": str(VENV),
        "DATA_DIR": str(root / "data"),
        "RUN_DIR": str(root / "run"),
        "LOG_DIR": str(root / "log"),
        "STATIC_ROOT": str(root / "static"),
        "HTPASSWD": str(root / "data" / "htpasswd"),
        "SOCKET": str(root / "run" / "uwsgi.sock"),
        "SERVICE_USER": "root",
        "NGINX_USER": "www-data",
        "NGINX_GROUP": "www-data",
        "LISTEN": "127.0.0.1",
        "HTTP_PORT": str(port),
        "HTTPS_PORT": str(free_port()),
        "SERVER_NAME": "127.0.0.1",
        "CONSOLE_PORT": str(console_port),
        "ENV_FILE": str(root / "conf" / "kvmmgr.env"),
        "DB_UNIT": "",
        "TLS_CERT": "",
        "TLS_KEY": "",
    }
    from kvmmgr.deployconfig import render_all

    render_all(values, root / "conf", tls=False)
    try:
        site.manage("migrate", "--no-input", "-v", "0")
        site.manage("collectstatic", "--no-input", "-v", "0")
        for name, (role, password) in USERS.items():
            site.manage("adduser", name, "--role", role, stdin=password + "\n")
        redis = _start(
            site,
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            "redis.log",
        )
        wait_for(lambda: port_open(redis_port), 10, "redis")
        # One solo worker: libvirt's test driver keeps its state per process. Beat runs
        # inside it (-B) so the inventory keeps the node online however long the
        # session-scoped site lives (a node not refreshed for 3 intervals shows offline).
        _start(
            site,
            [
                str(VENV / "bin" / "celery"),
                "-A",
                "kvmmgr",
                "worker",
                "-B",
                "--schedule",
                str(root / "run" / "celerybeat-schedule"),
                "--pool",
                "solo",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
            ],
            "celery-worker.log",
        )
        site.manage("addnode", *(node or (NODE_NAME, f"test://{node_xml}")))
        _start(
            site,
            [
                str(VENV / "bin" / "python"),
                "manage.py",
                "consoleproxy",
                "--listen",
                "127.0.0.1",
                "--port",
                str(console_port),
            ],
            "consoleproxy.log",
        )
        uwsgi = _start(
            site,
            [str(VENV / "bin" / "uwsgi"), "--ini", str(root / "conf" / "kvmmgr.ini")],
            "uwsgi.log",
        )
        wait_for((root / "run" / "uwsgi.sock").exists, 30, "uwsgi socket")
        subprocess.run(
            ["nginx", "-c", str(root / "conf" / "nginx-private.conf")],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for(lambda: port_open(port), 10, "nginx")
        wait_for(lambda: port_open(console_port), 20, "console proxy")
        wait_for(lambda: ready(site), 60, "the first inventory refresh")
        assert redis.poll() is None and uwsgi.poll() is None
        yield site
    finally:
        pid_file = root / "run" / "nginx.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not pid_file.exists(), 10, "nginx stop")
        for proc in reversed(site.procs):
            _stop(proc)
        keep = ARTIFACTS / "site-logs"
        keep.mkdir(parents=True, exist_ok=True)
        for log in (root / "log").glob("*.log"):
            shutil.copy(log, keep / log.name)
        shutil.rmtree(root, ignore_errors=True)
