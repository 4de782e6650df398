"""OpenVPN tuning for bulk transfer: the product's config against variants, same run.

    .venv/bin/python -m bench.vpn_tuning [--rounds 3] [--mib 48] [--json PATH]

No lab and no lab lock: each variant runs in ``bench.vpn_overlay.standalone_tunnel``
(two private namespaces joined by one veth pair, the product's rendered OpenVPN
configs, optionally edited), once on the bare veth (what the tunnel itself can
carry: CPU-bound) and once with the veth shaped like the ``wan100`` profile of
``tests/lab/wan.py`` minus its delay (tbf 100 Mbit/s both ways + 0.1 % random
loss both ways; no relay here, so no added delay). One TCP stream of ``--mib``
MiB of mixed data (``bench.wan.realistic_data``: text, binaries, random; zstd -1
ratio printed) goes client to server; variants alternate within each round.

After each stream the IP fragmentation counters of both namespaces
(``/proc/net/snmp``: FragCreates on the sender, ReasmReqds on the receiver) tell
whether any OpenVPN datagram was fragmented on the underlay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import _common
from bench.vpn_overlay import standalone_django, standalone_tunnel, throughput
from bench.wan import realistic_data


def _add(lines: str) -> Callable[[str], str]:
    return lambda conf: conf + "\n" + lines + "\n"


def _ciphers(order: str) -> Callable[[str], str]:
    return lambda conf: conf.replace(
        "data-ciphers AES-256-GCM:CHACHA20-POLY1305", f"data-ciphers {order}"
    )


def _drop(prefixes: tuple[str, ...]) -> Callable[[str], str]:
    return lambda conf: "\n".join(
        line for line in conf.splitlines() if not line.startswith(prefixes)
    )


def _replace(old: str, new: str) -> Callable[[str], str]:
    return lambda conf: conf.replace(old, new)


VARIANTS: dict[str, Callable[[str], str] | None] = {
    "product": None,
    "no sndbuf/rcvbuf": _drop(("sndbuf", "rcvbuf")),
    "chacha20-poly1305": _ciphers("CHACHA20-POLY1305"),
    "tun-mtu 1400": _replace("tun-mtu 1500", "tun-mtu 1400"),
    "txqueuelen 1000": _add("txqueuelen 1000"),
    "compress lz4-v2": _add("allow-compression yes\ncompress lz4-v2"),
}


def _shape(srv_ns: str, cli_ns: str) -> None:
    from tests.lab import wan

    profile = wan.PROFILES["wan100"]
    for netns in (srv_ns, cli_ns):
        ns = ["ip", "netns", "exec", netns]
        subprocess.run([*ns, *wan.tbf_argv("eth0", profile.rate_mbit)], check=True, timeout=10)
        subprocess.run(
            [*ns, "iptables", "-A", "OUTPUT", *wan.loss_rule("eth0", profile.loss_pct)],
            check=True, timeout=10,
        )  # fmt: skip


def _snmp_ip(netns: str) -> dict[str, int]:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout.splitlines()  # fmt: skip
    names, values = [line.split()[1:] for line in out if line.startswith("Ip:")][:2]
    return dict(zip(names, map(int, values), strict=True))


def measure(variant: str, shaped: bool, mib: int, data: Path, round_: int) -> dict[str, Any]:
    edit = VARIANTS[variant]
    name = f"v{round_}{'s' if shaped else 'b'}{list(VARIANTS).index(variant)}"
    with standalone_tunnel(name, edit=edit, shape=_shape if shaped else None) as (
        srv_ns, cli_ns, tunnel_ip,
    ):  # fmt: skip
        rate = throughput(srv_ns, cli_ns, tunnel_ip, mib, data=data)
        frag = _snmp_ip(cli_ns)["FragCreates"] + _snmp_ip(srv_ns)["ReasmReqds"]
    return {"variant": variant, "shaped": shaped, "mib_s": round(rate, 2), "fragments": frag}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=48)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data_dir = standalone_django()
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kvmmgr-tune-") as tmp:
        data = Path(tmp) / "mix.bin"
        mix = realistic_data(data, 64)
        print(f"data: 64 MiB mix, {mix}", flush=True)
        try:
            for r in range(args.rounds):
                order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
                for shaped in (False, True):
                    for variant in order:
                        row = measure(variant, shaped, args.mib, data, r)
                        results.append(row)
                        print(f"  {'wan100' if shaped else 'bare  '} {variant:20s} "
                              f"{row['mib_s']:6.2f} MiB/s  fragments {row['fragments']}",
                              flush=True)  # fmt: skip
        finally:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    summary = []
    for shaped in (False, True):
        base = statistics.median(
            r["mib_s"] for r in results if r["shaped"] == shaped and r["variant"] == "product"
        )
        for variant in VARIANTS:
            rates = [
                r["mib_s"] for r in results if r["shaped"] == shaped and r["variant"] == variant
            ]
            frags = sum(
                r["fragments"] for r in results if r["shaped"] == shaped and r["variant"] == variant
            )
            med = statistics.median(rates)
            link = "wan100 (no delay)" if shaped else "bare veth"
            summary.append({"link": link, "variant": variant, "median_mib_s": med,
                            "ratio": round(med / base, 2), "all": rates,
                            "fragments": frags})  # fmt: skip
    print("\n| link | variant | MiB/s (median) | ratio to product | all | fragments |")
    print("|---|---|---:|---:|---|---:|")
    for s in summary:
        print(f"| {s['link']} | {s['variant']} | {s['median_mib_s']:.2f} | {s['ratio']:.2f}× | "
              f"{', '.join(f'{x:.1f}' for x in s['all'])} | {s['fragments']} |")  # fmt: skip
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    payload = {"machine": _common.machine(), "data": mix, "results": results, "summary": summary}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
