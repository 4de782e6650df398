"""Whether the libvirt-python binding was built against the libvirt installed here.

libvirt-python generates its constants from the API description of the libvirt it
is compiled against (``libvirt-api.xml`` from libvirt-dev). pip caches the wheel it
built, keyed by libvirt-python's version only: after Debian 12's libvirt 9.0 is
upgraded to 11.3 from bookworm-backports, a reinstall may reuse a wheel built
against 9.0, which loads but lacks everything newer (zstd compression levels, for
one). This compares the binding with the installed API description and the
library it loaded. Runs without Django: ``python -P nodes/hypervisor/binding.py``
(deploy/bootstrap.sh does, after installing the venv; ``-P`` keeps this directory,
whose xml.py would shadow the standard library's, off the import path).
"""

from __future__ import annotations

import importlib.metadata
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import libvirt

API_XML = Path("/usr/share/libvirt/api/libvirt-api.xml")


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    return f"{major}.{rest // 1000}.{rest % 1000}"


@dataclass(frozen=True)
class BindingReport:
    binding_version: str
    library_version: str
    api_names: int
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.api_names > 0 and not self.missing

    def describe(self) -> str:
        if not self.api_names:
            return (
                f"libvirt-python {self.binding_version}, libvirt {self.library_version}: "
                f"no API description to compare with ({API_XML}: install libvirt-dev)"
            )
        if self.missing:
            return (
                f"libvirt-python {self.binding_version} lacks {len(self.missing)} of the "
                f"{self.api_names} names of the installed libvirt {self.library_version}'s "
                f"API (e.g. {', '.join(self.missing[:3])}): it was built against an older "
                "libvirt; rebuild it: pip install --force-reinstall --no-cache-dir "
                f"libvirt-python=={self.binding_version}"
            )
        return (
            f"libvirt-python {self.binding_version} was built against the installed "
            f"libvirt {self.library_version} (all {self.api_names} API names present)"
        )


def check_binding(api_xml: Path = API_XML) -> BindingReport:
    """Every enum value and string macro of the installed API must be in the binding.

    ``*_LAST`` sentinels are left out by libvirt-python on purpose.
    """
    binding = importlib.metadata.version("libvirt-python")
    library = _version(libvirt.getVersion())
    if not api_xml.exists():
        return BindingReport(binding, library, 0)
    symbols = ET.parse(api_xml).getroot().find("symbols")
    names = (
        []
        if symbols is None
        else [
            e.get("name", "")
            for e in symbols
            if (e.tag == "enum" and not e.get("name", "").endswith("_LAST"))
            or (e.tag == "macro" and e.get("string"))
        ]
    )
    missing = sorted(n for n in names if not hasattr(libvirt, n))
    return BindingReport(binding, library, len(names), missing)


if __name__ == "__main__":
    report = check_binding()
    print(f"bootstrap: {report.describe()}")
    sys.exit(0 if report.ok else 1)
