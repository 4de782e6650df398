"""The lab's WAN emulation: profiles, tc/iptables arguments, the UDP delay relay."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.lab import wan
from tests.lab.udp_delay import DelayLine, Relay, parse_address


def test_delay_line_releases_items_after_the_delay_in_order() -> None:
    line = DelayLine(0.02, limit=10)
    assert line.push(1.000, "a")
    assert line.push(1.005, "b")
    assert line.pop_due(1.019) == []
    assert line.next_due() == pytest.approx(1.020)
    assert line.pop_due(1.0201) == ["a"]
    assert line.pop_due(1.1) == ["b"]
    assert line.next_due() is None
    assert line.passed == 2


def test_delay_line_drops_when_full_like_a_router_queue() -> None:
    line = DelayLine(1.0, limit=2)
    assert line.push(0, 1) and line.push(0, 2)
    assert not line.push(0, 3)
    assert line.dropped == 1
    assert line.pop_due(5) == [1, 2]


@pytest.mark.parametrize("text", ["198.51.100.13", "host:1194", "198.51.100.13:0", "1.2.3:9"])
def test_parse_address_rejects_what_is_not_ipv4_host_port(text: str) -> None:
    with pytest.raises((ValueError, OSError)):
        parse_address(text)


def test_parse_address() -> None:
    assert parse_address("198.51.100.13:1194") == ("198.51.100.13", 1194)


def _echo_server() -> tuple[socket.socket, threading.Event]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                data, addr = server.recvfrom(2048)
            except TimeoutError:
                continue
            server.sendto(data.upper(), addr)

    threading.Thread(target=serve, daemon=True).start()
    return server, done


def test_relay_delays_both_ways_and_answers_from_its_listening_socket() -> None:
    server, done = _echo_server()
    relay = Relay(("127.0.0.1", 0), server.getsockname(), delay_s=0.03)
    listen = relay.sock.getsockname()
    stop = threading.Event()
    runner = threading.Thread(target=relay.run, args=(10, stop.is_set), daemon=True)
    runner.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        started = time.monotonic()
        client.sendto(b"ping", listen)
        data, source = client.recvfrom(2048)
        rtt = time.monotonic() - started
    finally:
        stop.set()
        runner.join(5)
        relay.close()
        done.set()
        client.close()
        server.close()
    assert data == b"PING"
    assert source == listen
    assert rtt >= 0.06  # 30 ms to the server, 30 ms back
    assert relay.to_server.passed == relay.to_client.passed == 1


def test_profiles_hold_the_issue_s_links() -> None:
    wan100 = wan.PROFILES["wan100"]
    assert (wan100.rate_mbit, wan100.delay_ms, wan100.loss_pct) == (100, 20, 0.1)
    assert wan.PROFILES["wan20"].rate_mbit == 20
    assert "0.1 % loss" in wan100.describe()


@pytest.mark.parametrize(
    "kwargs",
    [{"rate_mbit": 0}, {"rate_mbit": 100, "delay_ms": -1}, {"rate_mbit": 1, "loss_pct": 100}],
)
def test_profile_rejects_impossible_links(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        wan.Profile("bad", **kwargs)  # type: ignore[arg-type]


def test_tbf_arguments_scale_burst_and_queue_with_the_rate() -> None:
    argv = wan.tbf_argv("eth0", 100)
    assert argv[:8] == ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate"]
    values = dict(zip(argv[7::2], argv[8::2], strict=True))
    assert values["rate"] == "100mbit"
    assert int(values["burst"]) == 62_500  # 5 ms of 12.5 MB/s
    assert int(values["limit"]) == 625_000  # 50 ms
    slow = dict(zip(wan.tbf_argv("lan0", 1)[7::2], wan.tbf_argv("lan0", 1)[8::2], strict=True))
    assert int(slow["burst"]) == 32 * 1024  # never below one tick's worth


def test_loss_and_dnat_rules() -> None:
    assert wan.loss_rule("eth0", 0.1)[-5:] == ["random", "--probability", "0.001000", "-j", "DROP"]
    rule = wan.relay_dnat_rule("198.51.100.13", 1194)
    assert rule[rule.index("-d") + 1] == "198.51.100.13"
    assert rule[-1] == f"{wan.ROUTER_INSIDE}:{wan.RELAY_PORT}"
    argv = wan.relay_argv("198.51.100.13", 1194, 20)
    assert argv[argv.index("--upstream") + 1] == "198.51.100.13:1194"
    assert argv[argv.index("--max-seconds") + 1] == str(wan.RELAY_MAX_SECONDS)
