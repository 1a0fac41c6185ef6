#!/usr/bin/env bash
# The test suite, from a fresh clone: creates the full environment if needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/env.sh full
exec .venv/bin/python -m pytest -q "$@"
