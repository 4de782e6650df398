"""Render deploy/ templates (nginx, uwsgi, systemd) with this host's paths and ports.

One renderer for ``deploy/install.sh`` and for the tests that start real nginx
and uwsgi, so what is tested is what is installed. Plain ``@@NAME@@``
placeholders; a missing value or one that could break out of a config line is
refused. Files are rewritten only when their content changes (install is idempotent).

    python -m kvmmgr.deployconfig --out DIR [--tls] NAME=VALUE...
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PLACEHOLDER = re.compile(r"@@([A-Z_]+)@@")
# Paths, names, addresses and ports only: nothing that ends or nests an nginx/ini line.
SAFE_VALUE = re.compile(r"[A-Za-z0-9_./:@+*=-]*")

NGINX_FILES = {
    "kvmmgr-locations.conf": "nginx/kvmmgr-locations.conf.in",
    "nginx-private.conf": "nginx/nginx-private.conf.in",
}
OTHER_FILES = {
    "kvmmgr.ini": "uwsgi/kvmmgr.ini.in",
    "systemd/kvmmgr-uwsgi.service": "systemd/kvmmgr-uwsgi.service.in",
    "systemd/kvmmgr-celery-worker.service": "systemd/kvmmgr-celery-worker.service.in",
    "systemd/kvmmgr-celery-beat.service": "systemd/kvmmgr-celery-beat.service.in",
    "systemd/kvmmgr-console.service": "systemd/kvmmgr-console.service.in",
}


class RenderError(ValueError):
    """A template needs a value that is missing or unsafe."""


def render(template: str, values: dict[str, str]) -> str:
    text = (DEPLOY / template).read_text(encoding="utf-8")

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise RenderError(f"{template} needs {name}=…")
        value = values[name]
        if not SAFE_VALUE.fullmatch(value):
            raise RenderError(f"{name}={value!r}: only letters, digits and _./:@+*=- allowed")
        return value

    return PLACEHOLDER.sub(substitute, text)


def render_all(values: dict[str, str], out: Path, *, tls: bool) -> list[Path]:
    """Write every rendered file under ``out``; returns the ones that changed."""
    values = {"CONF_DIR": str(out), **values}
    files = {
        **NGINX_FILES,
        **OTHER_FILES,
        "kvmmgr-site-enabled.conf": (
            "nginx/kvmmgr-site.conf.in" if tls else "nginx/kvmmgr-plain.conf.in"
        ),
    }
    rendered = {name: render(template, values) for name, template in files.items()}
    rendered["kvmmgr-uwsgi-params"] = (DEPLOY / "nginx" / "kvmmgr-uwsgi-params").read_text(
        encoding="utf-8"
    )
    changed = []
    for name, text in rendered.items():
        path = out / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o644)
        tmp.replace(path)
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tls", action="store_true", help="the TLS site (else loopback plain)")
    parser.add_argument("values", nargs="*", metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    values = {}
    for item in args.values:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{item!r} is not NAME=VALUE")
        values[name] = value
    try:
        changed = render_all(values, args.out.resolve(), tls=args.tls)
    except RenderError as exc:
        print(f"deployconfig: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
