"""``jobs`` sits below the apps whose work it runs: it imports kvmmgr and Django only."""

from __future__ import annotations

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[2] / "jobs"
HIGHER = ("nodes", "vms", "vpn", "stats")


def test_jobs_never_imports_a_higher_app() -> None:
    found = []
    for path in JOBS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in HIGHER]
    assert found == []
