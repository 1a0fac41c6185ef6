#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv.
#   scripts/env.sh core  - pipelines, vocab, jieba + perceptron LTP (enough for the demo)
#   scripts/env.sh full  - core + TensorFlow trainer, Horovod (built from source),
#                          CPU torch + neural LTP (what the test suite needs)
# Re-running is cheap: a stamp file records what was installed for which setup.py.
set -euo pipefail
level="${1:-core}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
stamp_src="$(cat setup.py scripts/env.sh scripts/build_horovod.sh 2>/dev/null | sha256sum | cut -c1-16)"
stamp=".venv/.corpusflow-$level-$stamp_src"
if [ -f "$stamp" ]; then exit 0; fi
echo "[env] installing corpusflow ($level) into .venv" >&2
.venv/bin/pip install -q -e ".[dev,ltp,gcp,dask]"
if [ "$level" = "full" ]; then
  # torch first and pinned: this version's CPU wheel is what pip takes here; a bare
  # 'torch' requirement (ltp's) would otherwise pull a multi-GB CUDA build.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q "ltp==4.2.14" "transformers>=4.30,<5" "torch==2.13.0"
  bash scripts/build_horovod.sh
fi
touch "$stamp"
