#!/usr/bin/env bash
# Install everything voice-agent and its test suite need on Debian 12, then start
# the local Asterisk 22. Idempotent: re-running only does what is missing.
#   host packages: mmdebstrap, sip-tester (sipp), sox, espeak-ng, postgresql (apt; the
#                  suite tests the call history against a real PostgreSQL server),
#                  systemd (systemd-analyze checks the shipped unit's hardening),
#                  iptables (NFQUEUE impairs the media leg: packet loss, jitter, outages),
#                  chromium (the dashboard is tested in a real headless browser)
#   Python:        uv (pip), then the locked environment in .venv (uv sync --frozen)
#   Asterisk:      Debian sid chroot under VOICE_AGENT_ASTERISK_ROOT (first run ≈1 min)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1;36m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (apt-get, mmdebstrap, chroot and mount need it): sudo $0" >&2
  exit 1
fi

missing=()
for pair in mmdebstrap:mmdebstrap sipp:sip-tester sox:sox espeak-ng:espeak-ng \
    systemd-analyze:systemd setpriv:util-linux iptables-legacy:iptables chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing host packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv (Python package manager) with pip"
  python3 -m pip install -q --root-user-action=ignore 'uv==0.13.8'
fi

say "syncing the Python environment (.venv, uv.lock)"
uv sync --frozen --quiet

say "starting the local Asterisk 22"
.venv/bin/voice-agent asterisk up
