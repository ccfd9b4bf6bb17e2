#!/usr/bin/env bash
# First run: install everything, start Asterisk, run the agent and call every tenant.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/voice-agent demo "$@"
