#!/usr/bin/env bash
# The whole test suite: install what is missing, start Asterisk, check the import
# layers, run unit and integration tests (integration tests talk to the real Asterisk). Extra
# arguments go to pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Layers point down (pyproject [tool.importlinter]): fails naming the offending import.
.venv/bin/lint-imports
exec .venv/bin/pytest "$@"
