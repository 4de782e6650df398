"""deploy/install.sh on this machine, under a private --prefix, run twice.

All state, configuration, pidfiles and the nginx master live under a temporary
directory; ports are free high ports on loopback; the services run as root
(``--user root``) so no system user is created. The second run must change no
file and leave the same processes serving. Everything started is stopped by PID.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploysite import ARTIFACTS, ROOT, VENV, free_port, wait_for

INSTALL = ROOT / "deploy" / "install.sh"
ADMIN = ("boss", "boss-Secret-4711")
SERVICES = ("nginx", "uwsgi", "celery-worker", "celery-beat", "console", "redis")
# Files the running services write by themselves (database, logs, schedule, sockets):
# not what install.sh must leave untouched.
VOLATILE = (
    "db.sqlite3",
    "celerybeat-schedule",
    "auth-failures.offset",
    "/var/log/",
    "/run/kvmmgr/nginx-",
)


def _missing() -> list[str]:
    missing = [name for name in ("nginx", "redis-server", "openssl") if not shutil.which(name)]
    if not (VENV / "bin" / "uwsgi").exists():
        missing.append(".venv/bin/uwsgi")
    if os.geteuid() != 0:
        missing.append("root")
    return missing


def _pid(run_dir: Path, name: str) -> int | None:
    try:
        return int((run_dir / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _snapshot(prefix: Path) -> dict[str, tuple[str, int, int]]:
    """Every file under the prefix: checksum, mtime (ns) and mode, volatile ones aside."""
    listing = {}
    for path in sorted(prefix.rglob("*")):
        rel = "/" + str(path.relative_to(prefix))
        if any(part in rel for part in VOLATILE) or not path.is_file() or path.is_symlink():
            continue
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        listing[rel] = (digest, stat.st_mtime_ns, stat.st_mode)
    return listing


def _get(port: int, path: str, auth: tuple[str, str] | None = None) -> int:
    context = ssl._create_unverified_context()  # the installer's self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
    headers = {"Host": f"localhost:{port}"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    conn.request("GET", path, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.fixture
def prefix() -> Iterator[Path]:
    missing = _missing()
    if missing:
        reason = f"install.sh test needs {', '.join(missing)}"
        if os.environ.get("KVMMGR_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="kvmmgr-install-"))
    run_dir = root / "run" / "kvmmgr"
    try:
        yield root
    finally:
        for name in SERVICES:
            pid = _pid(run_dir, name)
            if pid is not None and _alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
        keep = ARTIFACTS / "install-logs"
        keep.mkdir(parents=True, exist_ok=True)
        for log in (root / "var" / "log" / "kvmmgr").glob("*.log"):
            shutil.copy(log, keep / log.name)
        shutil.rmtree(root, ignore_errors=True)


def _install(prefix: Path, ports: dict[str, int]) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KVMMGR_", "DATABASE_", "DJANGO_", "CELERY_", "PYTEST"))
    }
    result = subprocess.run(
        [
            str(INSTALL),
            "--prefix",
            str(prefix),
            "--no-apt",
            "--user",
            "root",
            "--listen",
            "127.0.0.1",
            "--server-name",
            "localhost",
            "--port",
            str(ports["http"]),
            "--https-port",
            str(ports["https"]),
            "--redis-port",
            str(ports["redis"]),
            "--console-port",
            str(ports["console"]),
            "--admin",
            ADMIN[0],
        ],
        input=ADMIN[1] + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"install.sh failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_install_twice_serves_and_changes_nothing(prefix: Path) -> None:
    ports = {
        "http": free_port(),
        "https": free_port(),
        "redis": free_port(),
        "console": free_port(),
    }
    first = _install(prefix, ports)
    assert "no systemd here (or --prefix)" in first.stdout
    etc = prefix / "etc" / "kvmmgr"
    run_dir = prefix / "run" / "kvmmgr"

    # Secrets: the env file and the key are private; the secret key was generated.
    env_file = etc / "kvmmgr.env"
    assert env_file.stat().st_mode & 0o777 == 0o640
    assert (etc / "tls" / "kvmmgr.key").stat().st_mode & 0o777 == 0o600
    assert (prefix / "var" / "lib" / "kvmmgr").stat().st_mode & 0o777 == 0o700
    env_lines = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )
    assert len(env_lines["SECRET_KEY"]) == 64
    assert env_lines["KVMMGR_AUTH"] == "remote_user"
    assert env_lines["DATABASE_URL"].startswith("sqlite:///")
    # Redis requires the generated password; it is in no command line, and the worker
    # connected with it.
    password = env_lines["KVMMGR_REDIS_PASSWORD"]
    assert len(password) == 48
    assert env_lines["CELERY_BROKER_URL"] == f"redis://:{password}@127.0.0.1:{ports['redis']}/0"
    assert (etc / "redis.conf").stat().st_mode & 0o777 == 0o600
    anonymous = subprocess.run(
        ["redis-cli", "-p", str(ports["redis"]), "ping"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert "NOAUTH" in anonymous.stdout + anonymous.stderr, anonymous
    redis_pid = _pid(run_dir, "redis")
    assert redis_pid is not None
    assert password not in Path(f"/proc/{redis_pid}/cmdline").read_text()
    worker_log = prefix / "var" / "log" / "kvmmgr" / "celery-worker.log"
    wait_for(lambda: "Connected to redis://" in worker_log.read_text(), 30, "worker on Redis")
    # The password came from stdin, so none was generated or saved.
    assert not (etc / "admin-password").exists()

    wait_for(lambda: _get(ports["https"], "/") == 401, 30, "nginx")
    assert _get(ports["https"], "/", ("boss", "wrong")) == 401
    assert _get(ports["https"], "/", ADMIN) == 200
    assert _get(ports["https"], "/static/css/kvmmgr.css", ADMIN) == 200
    # The console proxy answers behind nginx (a plain GET is not a websocket: 405, not 502).
    assert _get(ports["https"], "/websockify", ADMIN) == 405
    pids = {name: _pid(run_dir, name) for name in SERVICES}
    assert all(pid is not None and _alive(pid) for pid in pids.values()), pids
    before = _snapshot(prefix)
    assert "/etc/kvmmgr/kvmmgr-site-enabled.conf" in before

    second = _install(prefix, ports)
    assert "wrote" not in second.stdout and "started" not in second.stdout
    assert "admin boss exists (unchanged)" in second.stdout
    assert _snapshot(prefix) == before
    assert {name: _pid(run_dir, name) for name in SERVICES} == pids
    assert all(_alive(pid) for pid in pids.values() if pid is not None)
    assert _get(ports["https"], "/", ADMIN) == 200
    # Still exactly one admin, with the first password.
    users = subprocess.run(
        [str(VENV / "bin" / "python"), "manage.py", "users"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            **{
                key: value
                for key, value in env_lines.items()
                if key in ("SECRET_KEY", "DATABASE_URL", "KVMMGR_DATA_DIR", "KVMMGR_HTPASSWD")
            },
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert users == ["boss\tadmin\tactive\thtpasswd"]
