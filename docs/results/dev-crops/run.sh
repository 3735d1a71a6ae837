#!/bin/bash
# The crop probe of 2026-12-06 on the development cohort (seed 0): full-label CE (3, 1), the
# `small` schedule (200 steps, batch 4), whole 192-pixel frames against 128-pixel crops and
# 96-pixel crops of batch 8, training seeds 0, 1, 2; two single-thread runs at a time, each in
# its own experiment folder. Then: collect.py W/probe probe.json
#
#   W=/tmp/s24 bash docs/results/dev-crops/run.sh
set -euo pipefail
W=${W:?set W to a work folder}
cd "$(dirname "$0")/../../.."
.venv/bin/brainmetseg synth --small --cases 40 --val-cases 4 --seed 0 --out "$W/synth-seed0" --workers 1
mkdir -p "$W/probe"
.venv/bin/python - "$W/probe" <<'PY'
import json, sys
from BrainMetSegLib.experiment_presets import PRESETS
base = dict(PRESETS["small"].to_json(), crop_size=None)
for name, extra in {"small": {}, "crop128": {"crop_size": 128}, "crop96b8": {"crop_size": 96, "batch_size": 8}}.items():
    document = dict(base, name="small" if name == "small" else "small-" + name, **extra)
    json.dump(document, open(f"{sys.argv[1]}/{name}.json", "w"), indent=1)
PY
one_run() {  # PRESET SEED
  OMP_NUM_THREADS=1 .venv/bin/brainmetseg experiment --dataset "$W/synth-seed0" --out "$W/probe/out-$1-s$2" \
    --preset "$W/probe/$1.json" --tables 1 --key-rows-only --seeds "$2" --only "full-a3-b1-n100-s$2" \
    > "$W/probe/log-$1-s$2.txt" 2>&1
}
export -f one_run; export W
printf "crop128 0\ncrop96b8 0\nsmall 0\ncrop128 1\ncrop96b8 1\nsmall 1\ncrop128 2\ncrop96b8 2\nsmall 2\n" |
  xargs -P 2 -L 1 bash -c 'one_run "$0" "$1"'
