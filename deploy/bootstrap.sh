#!/usr/bin/env bash
# Installs what kvmmgr needs on Debian 13 (trixie) or Debian 12 (bookworm) and builds
# the Python venv. On Debian 12 libvirt and QEMU come from bookworm-backports
# (libvirt 11.3, QEMU 10.0: Debian 13's versions), which this script enables.
# Safe to run again: it installs only what is missing and reinstalls Python
# packages only when a requirements file changed.
#   deploy/bootstrap.sh run    packages to run the manager
#   deploy/bootstrap.sh test   plus what the test suite and its lab need
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-run}"

RUN_PACKAGES=(
  python3 python3-venv python3-dev gcc pkg-config
  virtinst redis-server openssh-client ca-certificates
)
# Taken from bookworm-backports on Debian 12 (QEMU 7.2 loses guest memory in TCG live
# migration and libvirt 9.0 has no multifd compression); from the release on Debian 13.
VIRT_PACKAGES=(libvirt-dev libvirt-clients libvirt-daemon-system qemu-system-x86 qemu-utils)
TEST_PACKAGES=(
  openssh-server busybox-static cpio iproute2 iptables postgresql
  # real OpenVPN tunnels between lab nodes (vpn app, tests/integration/test_vpn_real.py)
  openvpn
  # the real nginx + uwsgi site and the browser tests (tests/support/deploysite.py, tests/e2e)
  nginx apache2-utils chromium chromium-driver
)

packages=("${RUN_PACKAGES[@]}")
if [ "$MODE" = "test" ]; then packages+=("${TEST_PACKAGES[@]}"); fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# shellcheck disable=SC1091 # the running system's release file
CODENAME="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
BACKPORTS=""
[ "$CODENAME" = "bookworm" ] && [ "${KVMMGR_NO_BACKPORTS:-0}" != "1" ] && BACKPORTS="bookworm-backports"
# libvirt >= 10 ships its drivers as separate packages and the interface driver (which
# lists a node's bridges for the create form and the MTU checks) is only recommended.
if [ -n "$BACKPORTS" ] || [ "$CODENAME" != "bookworm" ]; then
  VIRT_PACKAGES+=(libvirt-daemon-driver-interface)
fi

missing=()
for pkg in "${packages[@]}"; do installed "$pkg" || missing+=("$pkg"); done
virt_missing=()
for pkg in "${VIRT_PACKAGES[@]}"; do
  if ! installed "$pkg"; then
    virt_missing+=("$pkg")
  elif [ -n "$BACKPORTS" ] && ! dpkg-query -W -f='${Version}' "$pkg" | grep -q bpo; then
    virt_missing+=("$pkg") # Debian 12's own 9.0/7.2: upgrade to the backports
  fi
done
# npm builds the vendored browser libraries. A machine may already have Node.js from
# another source (with npm bundled): Debian's npm would conflict with it.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
if [ "${#missing[@]}" -gt 0 ] || [ "${#virt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing packages ${missing[*]} ${virt_missing[*]}; run as root (see README: Installing)" >&2
    exit 1
  fi
  if [ -n "$BACKPORTS" ] && ! grep -rqs "$BACKPORTS" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "bootstrap: enabling $BACKPORTS for libvirt 11 / QEMU 10"
    printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: $BACKPORTS" \
      "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" \
      > /etc/apt/sources.list.d/kvmmgr-backports.sources
  fi
  apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  if [ "${#virt_missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${virt_missing[*]}${BACKPORTS:+ from $BACKPORTS}"
    apt-get install -y -qq --no-install-recommends ${BACKPORTS:+-t "$BACKPORTS"} \
      "${virt_missing[@]}" >/dev/null
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/requirements.txt"
[ "$MODE" = "test" ] && REQUIREMENTS="$ROOT/requirements-dev.txt"
if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.installed-$(basename "$REQUIREMENTS")"
digest="$(cat "$ROOT/requirements.txt" "$REQUIREMENTS" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "bootstrap: installing Python packages from $(basename "$REQUIREMENTS") (libvirt-python and uwsgi compile: ~2 min the first time)"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$REQUIREMENTS"
  echo "$digest" > "$stamp"
fi
# libvirt-python must be built against the libvirt installed now: pip reuses a wheel it
# cached before libvirt was upgraded (9.0 -> 11.3 from backports), which lacks the newer API.
if ! "$VENV/bin/python" -P "$ROOT/nodes/hypervisor/binding.py"; then
  pin="$(grep -i '^libvirt-python==' "$ROOT/requirements.txt")"
  echo "bootstrap: rebuilding $pin against the installed libvirt (~1 min)"
  "$VENV/bin/pip" install -q --force-reinstall --no-cache-dir --no-deps "$pin"
  "$VENV/bin/python" -P "$ROOT/nodes/hypervisor/binding.py"
fi

# Browser libraries (uPlot for the charts, noVNC for consoles) from npm, pinned by package-lock.json,
# copied into static/vendor/ so the pages load them from the manager: no CDN.
vendor_stamp="$ROOT/static/vendor/.installed"
lock_digest="$(cat "$ROOT/package.json" "$ROOT/package-lock.json" "$ROOT/deploy/vendor_static.mjs" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$vendor_stamp" ] || [ "$(cat "$vendor_stamp")" != "$lock_digest" ]; then
  echo "bootstrap: installing browser libraries with npm (package-lock.json)"
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
  echo "$lock_digest" > "$vendor_stamp"
fi
