"""``python -m tests.lab up|down|status|guest``: drive the lab by hand or from benchmarks.

The lab outlives this process (daemons run detached in their namespaces), so
``down``/``status``/``guest`` re-attach through the lab's state file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from tests.lab._util import LabError
from tests.lab.guest import ensure_guest_artifacts
from tests.lab.lab import Lab


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    artifacts = ensure_guest_artifacts()
    elapsed = time.monotonic() - started
    print(f"guest artifacts ready in {elapsed:.1f}s: {artifacts.kernel} {artifacts.initrd}")
    lab = Lab().setup()
    t0 = time.monotonic()
    lab.add_nodes([f"node{i}" for i in range(1, args.nodes + 1)])
    print(f"{args.nodes} node(s) ready in {time.monotonic() - t0:.1f}s")
    _print(lab)
    return 0


def _down(_: argparse.Namespace) -> int:
    started = time.monotonic()
    Lab.cleanup_stale()
    print(f"lab removed in {time.monotonic() - started:.1f}s")
    return 0


def _status(_: argparse.Namespace) -> int:
    lab = Lab.attach()
    _print(lab)
    for node in lab.nodes.values():
        proc = node.virsh("list", "--all", timeout=30)
        print(f"--- {node.name}: virsh list --all (rc={proc.returncode})")
        print(proc.stdout.rstrip() or proc.stderr.rstrip())
    return 0


def _guest(args: argparse.Namespace) -> int:
    lab = Lab.attach()
    node = lab.nodes.get(args.node)
    if node is None:
        print(f"no node {args.node}; have {sorted(lab.nodes)}", file=sys.stderr)
        return 2
    kwargs: dict[str, object] = {"memory_mib": args.memory}
    if args.disk:
        kwargs["disk_mib"] = args.disk
    if args.cmdline:
        kwargs["cmdline_extra"] = args.cmdline
    info, seconds = lab.boot_guest(node, args.name, timeout=args.timeout, **kwargs)
    print(f"guest {info.name} uuid={info.uuid} on {node.name} up in {seconds:.1f}s")
    print(f"serial log: {info.serial_log}")
    return 0


def _print(lab: Lab) -> None:
    desc = lab.describe()
    print(f"ssh key:   {desc['key']}")
    print(f"bridge:    {desc['bridge']}")
    print(f"blackhole: {desc['blackhole']}")
    for node in desc["nodes"]:
        print(
            f"node {node['name']}: {node['uri']}"
            f"  host_uuid={node['host_uuid']} running={node['running']}"
        )
    if os.environ.get("KVMMGR_LAB_JSON"):
        print(json.dumps(desc))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and dispatch; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build the lab (removes any previous one)")
    up.add_argument("--nodes", type=int, default=2)
    up.set_defaults(func=_up)
    sub.add_parser("down", help="remove the lab and everything it started").set_defaults(func=_down)
    sub.add_parser("status", help="show nodes and their domains").set_defaults(func=_status)
    guest = sub.add_parser("guest", help="define, start and wait for a tiny guest")
    guest.add_argument("node")
    guest.add_argument("name")
    guest.add_argument("--memory", type=int, default=128, help="MiB")
    guest.add_argument("--disk", type=int, default=0, help="qcow2 disk size in MiB (0: none)")
    guest.add_argument("--cmdline", default="", help="extra kernel args, e.g. 'dirty=8'")
    guest.add_argument("--timeout", type=float, default=90.0)
    guest.set_defaults(func=_guest)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if os.geteuid() != 0:
        print("the lab needs root (namespaces, bridge, libvirtd)", file=sys.stderr)
        return 1
    try:
        return int(args.func(args))
    except LabError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
