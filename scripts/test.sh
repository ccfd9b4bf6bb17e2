#!/usr/bin/env bash
# The whole test suite: install what is missing, start Asterisk, run unit and
# integration tests (integration tests talk to the real Asterisk). Extra
# arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/pytest "$@"
