"""Where kvmmgr puts OpenVPN files on a node (one place, so install and control agree)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

CONF_DIR = "/etc/openvpn/kvmmgr"
RUN_DIR = "/run/openvpn"
BRIDGE_SCRIPT = f"{CONF_DIR}/kvmmgr-bridge"
SYSTEMD_UNIT = "/etc/systemd/system/kvmmgr-openvpn@.service"
#: The management interface listens on the node's loopback only, password-protected;
#: the manager reaches it through the ssh session (direct-tcpip), never over the network.
MGMT_PORT = 7505
TEMPLATES = Path(settings.BASE_DIR) / "deploy" / "openvpn"


def conf(tunnel: str) -> str:
    return f"{CONF_DIR}/{tunnel}.conf"


def ccd_dir(tunnel: str) -> str:
    return f"{CONF_DIR}/{tunnel}-ccd"


def mgmt_file(tunnel: str) -> str:
    return f"{CONF_DIR}/{tunnel}.mgmt"


def crl_file(tunnel: str) -> str:
    return f"{CONF_DIR}/{tunnel}-crl.pem"


def pidfile(tunnel: str) -> str:
    return f"{RUN_DIR}/kvmmgr-{tunnel}.pid"


def log_file(tunnel: str) -> str:
    return f"{RUN_DIR}/kvmmgr-{tunnel}.log"
