"""The lab's tiny test guest: a Debian cloud kernel plus a busybox initramfs.

Why this shape: guests here run under TCG (no usable KVM), so a full OS image
would take minutes to boot. A direct-kernel-boot of Debian's small "cloud"
kernel with an initramfs that only loads the virtio modules and prints a
marker boots in a few seconds and still exercises everything kvmmgr cares
about (define/start/stop, serial log, VNC, virtio disk and NIC, migration with
a memory-dirtying workload).

The kernel package is fetched with ``apt-get download`` and unpacked with
``dpkg-deb -x`` so the machine's own kernel/bootloader setup is never touched.
Artifacts are cached in ``/var/cache/kvmmgr-lab/guest`` (``KVMMGR_LAB_CACHE``).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

from tests.lab._util import LabError, log, run

#: Line /init writes to the serial port once the guest is usable.
GUEST_MARKER = "KVMMGR-GUEST-UP"

#: Modules the guest needs; their dependencies are added automatically.
# button + evdev let busybox acpid see the ACPI power button (virsh shutdown).
WANTED_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "button", "evdev")

BUSYBOX = Path("/bin/busybox")
META_PACKAGE = "linux-image-cloud-amd64"

# The guest's PID 1. It runs inside the guest under busybox sh (not on the host).
# {modules} is replaced with the insmod order computed from the .modinfo deps.
INIT_TEMPLATE = r"""#!/bin/sh
# kvmmgr lab guest init: mount, load virtio modules, configure eth0, signal, idle.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
for m in {modules}; do
    insmod "/lib/modules/$m.ko" || echo "kvmmgr-guest: insmod $m failed" >/dev/ttyS0
done
hostname kvmmgr-guest
# Power button -> /etc/acpi/PWRF/00000080 -> poweroff, so `virsh shutdown` works.
acpid -f -l /dev/ttyS0 &
ip link set lo up
addr=""
gw=""
dirty=""
dirtyfresh=""
counter=""
records=""
fill=""
echo_port=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        ip=*) addr="${{arg#ip=}}" ;;
        gw=*) gw="${{arg#gw=}}" ;;
        dirty=*) dirty="${{arg#dirty=}}" ;;
        dirtyfresh=*) dirtyfresh="${{arg#dirtyfresh=}}" ;;
        counter=*) counter="${{arg#counter=}}" ;;
        records=*) records="${{arg#records=}}" ;;
        fill=*) fill="${{arg#fill=}}" ;;
        echo=*) echo_port="${{arg#echo=}}" ;;
    esac
done
if [ -n "$addr" ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ -e /sys/class/net/eth0 ]; then
        ip addr add "$addr" dev eth0
        ip link set eth0 up
        [ -n "$gw" ] && ip route add default via "$gw"
        echo "KVMMGR-GUEST-NET eth0 $addr" >/dev/ttyS0
    else
        echo "KVMMGR-GUEST-NET-MISSING eth0" >/dev/ttyS0
    fi
fi
if [ -n "$echo_port" ]; then
    # A TCP echo server (one forked cat per connection): held connections must survive migration.
    nc -ll -p "$echo_port" -e cat &
    echo "KVMMGR-GUEST-ECHO $echo_port" >/dev/ttyS0
fi
if [ -n "$fill" ] && [ -b /dev/vda ]; then
    # Guest RAM holding what the disk holds (a benchmark writes realistic data there):
    # the first $fill MiB of /dev/vda, copied into a tmpfs once.
    mkdir -p /fill
    mount -t tmpfs -o size=$((fill + 4))m tmpfs /fill
    dd if=/dev/vda of=/fill/data bs=1M count="$fill" 2>/dev/null
    echo "KVMMGR-GUEST-FILL ${{fill}}MiB" >/dev/ttyS0
fi
if [ -n "$dirty" ]; then
    mkdir -p /dirty
    # Two copies (source, buffer), three with dirtyfresh: a 128 MiB guest has no room
    # for a third copy it does not use.
    copies=2
    [ "$dirtyfresh" = 1 ] && copies=3
    mount -t tmpfs -o size=$((dirty * copies + 4))m tmpfs /dirty
    dd if=/dev/urandom of=/dirty/src bs=1M count="$dirty" 2>/dev/null
    alt=/dirty/src
    # dirtyfresh=1: every other second from a second random source, so each rewrite
    # changes every byte (XBZRLE's worst case; by default the bytes stay the same).
    if [ "$dirtyfresh" = 1 ]; then
        alt=/dirty/alt
        dd if=/dev/urandom of="$alt" bs=1M count="$dirty" 2>/dev/null
    fi
    # Rewrite the same pages in place every second: ~$dirty MiB/s of dirty RAM.
    (n=0; while :; do
        from=/dirty/src
        [ $((n % 2)) = 1 ] && from="$alt"
        dd if="$from" of=/dirty/buf bs=1M conv=notrunc 2>/dev/null
        n=$((n + 1))
        sleep 1
    done) &
    echo "KVMMGR-GUEST-DIRTY ${{dirty}}MiB/s" >/dev/ttyS0
fi
if [ -n "$counter" ]; then
    # An increasing counter every 100 ms: a migrated guest continues it, a rebooted one restarts.
    (c=0; while :; do c=$((c + 1)); echo "KVMMGR-COUNT $c" >/dev/ttyS0; sleep 0.1; done) &
fi
if [ -n "$records" ] && [ -b /dev/vda ]; then
    # Numbered records, one per 512-byte sector of the disk, each announced only
    # after it reached the disk: whatever was announced must survive a migration.
    (r=0; while :; do
        r=$((r + 1))
        printf 'KVMMGR-REC %08d\n' "$r" | dd of=/dev/vda bs=512 seek="$r" count=1 \
            conv=sync,notrunc,fsync 2>/dev/null && echo "KVMMGR-RECORD $r" >/dev/ttyS0
        sleep 0.2
    done) &
fi
echo "{marker}" >/dev/ttyS0
n=0
while :; do
    sleep 5
    n=$((n + 5))
    echo "KVMMGR-GUEST-ALIVE $n" >/dev/ttyS0
done
"""


# Run by busybox acpid inside the guest when the ACPI power button is pressed.
POWEROFF_SCRIPT = """#!/bin/sh
echo KVMMGR-GUEST-POWEROFF >/dev/ttyS0
sync
poweroff -f
"""


@dataclass(frozen=True)
class GuestArtifacts:
    """Paths of a bootable kernel and initramfs (shared read-only by all nodes)."""

    kernel: Path
    initrd: Path


def cache_dir() -> Path:
    """Where guest artifacts live; overridable so CI can point at a warm cache."""
    return Path(os.environ.get("KVMMGR_LAB_CACHE", "/var/cache/kvmmgr-lab/guest"))


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise builders (parallel pytest workers, a human running the CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_guest_artifacts() -> GuestArtifacts:
    """Return the cached kernel + initramfs, building them on first use.

    The cache is keyed by a manifest that records the kernel version and a hash
    of the init script and busybox, so editing ``INIT_TEMPLATE`` rebuilds only
    the initramfs while an unchanged cache needs neither apt nor network.
    """
    root = cache_dir()
    with _locked(root):
        manifest_path = root / "manifest.json"
        manifest = _load_manifest(manifest_path)
        kernel = Path(manifest["kernel"]) if manifest.get("kernel") else None
        modules_dir = Path(manifest["modules_dir"]) if manifest.get("modules_dir") else None
        if (
            kernel is None
            or modules_dir is None
            or not kernel.is_file()
            or not modules_dir.is_dir()
        ):
            kernel, modules_dir, package = _fetch_kernel(root)
            manifest = {"package": package, "kernel": str(kernel), "modules_dir": str(modules_dir)}
        try:
            order = _module_order(modules_dir)
        except LabError:
            # WANTED_MODULES grew since the cache was filled: fetch again.
            kernel, modules_dir, package = _fetch_kernel(root)
            manifest = {"package": package, "kernel": str(kernel), "modules_dir": str(modules_dir)}
            order = _module_order(modules_dir)
        init_text = INIT_TEMPLATE.format(modules=" ".join(order), marker=GUEST_MARKER)
        digest = hashlib.sha256()
        digest.update(init_text.encode())
        digest.update(BUSYBOX.read_bytes())
        for name in order:
            digest.update((modules_dir / f"{name}.ko").read_bytes())
        initrd = root / f"initrd-{digest.hexdigest()[:16]}.img"
        if not initrd.is_file():
            _write_atomic(initrd, _build_initramfs(init_text, modules_dir, order))
            log.info("built guest initramfs %s", initrd)
        manifest["initrd"] = str(initrd)
        _write_atomic(manifest_path, json.dumps(manifest, indent=2).encode())
        return GuestArtifacts(kernel=kernel, initrd=initrd)


def _load_manifest(path: Path) -> dict[str, str]:
    """Read the cache manifest; a missing or corrupt one just means "rebuild"."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via rename so a crash never leaves a half-written cache file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    tmp.replace(path)


def resolve_kernel_package() -> str:
    """Name of the concrete kernel package the cloud metapackage depends on.

    Resolved through apt-cache rather than hard-coded so the lab follows
    Debian's security updates (the ABI number in the name changes).
    """
    proc = run(["apt-cache", "depends", META_PACKAGE], check=False, timeout=60)
    match = re.search(r"Depends:\s*(linux-image-\S+-cloud-amd64)", proc.stdout)
    if not match:
        raise LabError(
            f"cannot resolve {META_PACKAGE} via apt-cache (run `apt-get update`?): "
            f"{proc.stdout.strip()} {proc.stderr.strip()}"
        )
    return match.group(1)


def _fetch_kernel(root: Path) -> tuple[Path, Path, str]:
    """Download and unpack the cloud kernel; keep only vmlinuz and needed modules."""
    package = resolve_kernel_package()
    log.info("downloading guest kernel package %s", package)
    with tempfile.TemporaryDirectory(prefix="kernel-", dir=root) as tmp_name:
        tmp = Path(tmp_name)
        # apt drops privileges to _apt for downloads; let it write here.
        tmp.chmod(0o777)
        run(["apt-get", "download", "-q", package], cwd=tmp, timeout=600)
        debs = sorted(tmp.glob("*.deb"))
        if not debs:
            raise LabError(f"apt-get download {package} produced no .deb")
        tree = tmp / "tree"
        run(["dpkg-deb", "-x", debs[0], tree], timeout=300)
        vmlinuz = sorted((tree / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise LabError(f"{package} contains no /boot/vmlinuz-*")
        kver = vmlinuz[0].name.removeprefix("vmlinuz-")
        kernel = root / f"vmlinuz-{kver}"
        _write_atomic(kernel, vmlinuz[0].read_bytes())
        modules_dir = root / f"modules-{kver}"
        shutil.rmtree(modules_dir, ignore_errors=True)
        modules_dir.mkdir()
        available = {
            p.name.removesuffix(".ko"): p for p in (tree / "lib" / "modules").rglob("*.ko")
        }
        for name in _dependency_closure(available, WANTED_MODULES):
            shutil.copyfile(available[name], modules_dir / f"{name}.ko")
    return kernel, modules_dir, package


def modinfo_depends(ko: Path) -> list[str]:
    """Read ``depends=`` from a module's ELF ``.modinfo`` section.

    The unpacked (not installed) kernel has no modules.dep, and depmod/modinfo
    would need the tree installed; the section is trivial to parse directly.
    """
    data = ko.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise LabError(f"{ko} is not a 64-bit ELF module (compressed?)")
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = e_shoff + index * e_shentsize
        name_off = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name_off, offset, size

    _, str_off, _ = section(e_shstrndx)
    for i in range(e_shnum):
        name_off, offset, size = section(i)
        end = data.index(b"\0", str_off + name_off)
        if data[str_off + name_off : end] == b".modinfo":
            for entry in data[offset : offset + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    value = entry.removeprefix(b"depends=").decode()
                    return [d for d in value.split(",") if d]
            return []
    return []


def _dependency_closure(available: dict[str, Path], wanted: tuple[str, ...]) -> list[str]:
    """Wanted modules plus their dependencies, dependencies first (insmod order)."""
    order: list[str] = []

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in stack:
            raise LabError(f"module dependency cycle: {(*stack, name)}")
        if name not in available:
            raise LabError(f"kernel module {name} not found in the kernel package")
        for dep in modinfo_depends(available[name]):
            visit(dep, (*stack, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def _module_order(modules_dir: Path) -> list[str]:
    """insmod order for the cached module copies."""
    available = {p.name.removesuffix(".ko"): p for p in modules_dir.glob("*.ko")}
    return _dependency_closure(available, WANTED_MODULES)


class _Cpio:
    """Minimal writer for the "newc" cpio format the kernel unpacks as initramfs.

    Written in Python because the ``cpio`` tool is not installed by default and
    building in memory lets us add device nodes without needing mknod on disk.
    """

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self._ino,
            mode,
            0,
            0,
            1,
            0,
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(encoded),
            0,
        )
        self._ino += 1
        header = b"070701" + b"".join(f"{f:08X}".encode() for f in fields)
        self._buf.write(header + encoded)
        self._pad()
        self._buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self._buf.write(b"\0" * (-self._buf.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._buf.getvalue()


def _build_initramfs(init_text: str, modules_dir: Path, order: list[str]) -> bytes:
    """Assemble busybox, applet links, modules and /init into a gzipped cpio."""
    archive = _Cpio()
    dirs = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "etc",
        "root",
        "lib",
        "lib/modules",
        "dirty",
        "fill",
    ]
    for d in dirs:
        archive.directory(d)
    # The kernel opens /dev/console for PID 1 before devtmpfs can be mounted.
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    applets = run([BUSYBOX, "--list-full"], timeout=30).stdout.split()
    for applet in applets:
        path = applet.strip("/")
        if path and path != "bin/busybox" and path.split("/")[0] in {"bin", "sbin", "usr"}:
            archive.symlink(path, "/bin/busybox")
    for name in order:
        archive.file(f"lib/modules/{name}.ko", (modules_dir / f"{name}.ko").read_bytes())
    archive.file("etc/hostname", b"kvmmgr-guest\n")
    archive.directory("etc/acpi")
    archive.directory("etc/acpi/PWRF")
    archive.file("etc/acpi/PWRF/00000080", POWEROFF_SCRIPT.encode(), 0o755)
    archive.file("init", init_text.encode(), 0o755)
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def guest_domain_xml(
    name: str,
    kernel: Path,
    initrd: Path,
    memory_mib: int = 128,
    vcpus: int = 1,
    disk_path: Path | None = None,
    vnc_port: int | Literal["auto"] | None = "auto",
    serial_log: Path | None = None,
    cmdline_extra: str = "",
    bridge: str | None = None,
    uuid: str | None = None,
    cdrom: str | None = None,
    extra_disks: tuple[str, ...] = (),
) -> str:
    """Libvirt XML for the tiny guest.

    ``type='qemu'`` and no ``<cpu>`` element because /dev/kvm here cannot run a
    stock kernel (TCG only, qemu64 model). The serial port is a plain file so
    tests can watch for :data:`GUEST_MARKER` without a console connection.
    ``serial_log`` defaults to ``/var/log/libvirt/qemu/<name>-serial.log`` which,
    inside a lab node, is that node's private log dir (so a migrated guest's two
    qemu processes never write the same file). ``bridge`` adds a virtio NIC on
    that bridge (use with ``cmdline_extra="ip=ADDR/PREFIX"``). ``cdrom`` attaches an
    image as a read-only IDE CD-ROM (``hdc``), as a VM installed from an ISO keeps it;
    ``extra_disks`` are further qcow2 paths (``vdb``, ``vdc``...).
    """
    if serial_log is None:
        serial_log = Path(f"/var/log/libvirt/qemu/{name}-serial.log")
    cmdline = f"console=ttyS0 quiet {cmdline_extra}".strip()
    devices = [
        (
            f"<serial type='file'><source path={quoteattr(str(serial_log))}/>"
            "<target port='0'/></serial>"
        ),
    ]
    if disk_path is not None:
        devices.append(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file={quoteattr(str(disk_path))}/><target dev='vda' bus='virtio'/></disk>"
        )
    for index, extra in enumerate(extra_disks):
        devices.append(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file={quoteattr(extra)}/><target dev='vd{chr(ord('b') + index)}' "
            "bus='virtio'/></disk>"
        )
    if cdrom is not None:
        devices.append(
            "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
            f"<source file={quoteattr(cdrom)}/><target dev='hdc' bus='ide'/><readonly/></disk>"
        )
    if bridge is not None:
        devices.append(
            f"<interface type='bridge'><source bridge={quoteattr(bridge)}/>"
            "<model type='virtio'/></interface>"
        )
    if vnc_port is not None:
        port = "autoport='yes'" if vnc_port == "auto" else f"port='{int(vnc_port)}' autoport='no'"
        devices.append(f"<graphics type='vnc' listen='127.0.0.1' {port}/>")
    devices.append("<video><model type='cirrus'/></video>")
    devices.append("<memballoon model='none'/>")
    uuid_xml = f"<uuid>{uuid}</uuid>" if uuid else ""
    body = "\n    ".join(devices)
    return f"""<domain type='qemu'>
  <name>{_xml_text(name)}</name>{uuid_xml}
  <memory unit='MiB'>{int(memory_mib)}</memory>
  <vcpu>{int(vcpus)}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{_xml_text(str(kernel))}</kernel>
    <initrd>{_xml_text(str(initrd))}</initrd>
    <cmdline>{_xml_text(cmdline)}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {body}
  </devices>
</domain>
"""


def _xml_text(value: str) -> str:
    """Escape text content for XML."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
