"""The platform under the manager: the libvirt binding and the scripts that install it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import libvirt

from nodes.hypervisor.binding import API_XML, check_binding

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["deploy/bootstrap.sh", "deploy/dev.sh", "deploy/install.sh", "tests/run.sh", ".ci/run"]


def test_the_binding_was_built_against_the_installed_libvirt() -> None:
    report = check_binding()
    installed = subprocess.run(
        ["pkg-config", "--modversion", "libvirt"], capture_output=True, text=True, check=True
    ).stdout.strip()
    print(report.describe())
    # The library the binding loaded is the installed one, and the binding knows every
    # name of its API description (it was generated from it, not from an older libvirt).
    assert report.library_version == installed
    assert report.api_names > 1000, report.describe()
    assert report.ok, report.describe()
    pinned = re.search(r"^libvirt-python==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and report.binding_version == pinned[1]


def test_a_binding_built_against_an_older_libvirt_is_told_apart(tmp_path: Path) -> None:
    """An API description with a name the binding lacks, as after a libvirt upgrade."""
    api = tmp_path / "libvirt-api.xml"
    text = API_XML.read_text()
    api.write_text(
        text.replace(
            "</symbols>",
            "<enum name='VIR_MIGRATE_FROM_THE_FUTURE' file='libvirt-domain' value='1'/>"
            "<enum name='VIR_SOMETHING_LAST' file='libvirt-domain' value='2'/></symbols>",
        )
    )
    report = check_binding(api)
    assert not report.ok
    assert report.missing == ["VIR_MIGRATE_FROM_THE_FUTURE"]  # *_LAST sentinels are skipped
    assert "built against an older libvirt" in report.describe()
    assert "--no-cache-dir" in report.describe()
    assert not hasattr(libvirt, "VIR_MIGRATE_FROM_THE_FUTURE")
    assert not check_binding(tmp_path / "absent.xml").ok


def test_scripts_assume_no_postgresql_or_python_version() -> None:
    """Debian 13 ships PostgreSQL 17 and Python 3.13, Debian 12 15 and 3.11: detect them."""
    pattern = re.compile(
        r"postgresql-\d|postgresql/\d|pg_ctlcluster \d|python3\.\d|:5432|\b(?:15|17) main\b"
    )
    for script in SCRIPTS:
        for number, line in enumerate((ROOT / script).read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not pattern.search(code), f"{script}:{number}: {line.strip()}"
