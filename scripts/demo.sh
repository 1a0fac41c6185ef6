#!/usr/bin/env bash
# The demo: bundled sample -> cleaned docs -> dedup -> TFRecords, all local, no network.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/env.sh core
out="${1:-demo_out}"
.venv/bin/python -m pipelines.build \
  --input 'data/sample/*.jsonl' --input 'data/sample/*.gz' --input 'data/sample/*.txt' \
  --output "$out" --overwrite \
  --max_seq_length 128 --max_predictions_per_seq 20 --dupe_factor 2 \
  --masking wwm --pair_task sop --num_shards 8 --runner DirectRunner
echo "demo output in $out/: manifest.json, docs/, rejects/, tfrecords/"
