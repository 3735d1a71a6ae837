#!/usr/bin/env bash
# Issue 4's key rows (full CE; 50% censored CE; 50% censored lopsided 3/0.1) at full size — the
# `paper` preset's network and grid on a fresh full-size synthetic cohort — with one seed and as
# many steps as fit in BUDGET_S seconds (default 400, everything included) on one GPU:
#
#   BUDGET_S=400 bash benchmarks/gpu_key_rows.sh     (repository root; report in $OUT or /tmp)
#
# 1. `brainmetseg synth` a 20-case cohort (COHORT, default "--cases 20": 13 train, 1 val, 6 test)
#    of the default (BrainMetShare-like) preset, seed 2, one process per core (with 40 cases,
#    27 of them for training, no schedule fitted a 290 s budget on an H200: the calibration
#    alone, mostly loading the cases, took 48 s);
# 2. benchmarks/gpu_schedule.py trains 40 calibration steps and writes the preset that fits;
# 3. `brainmetseg experiment --tables 1 --key-rows-only --seeds 0` with that preset, stopped
#    30 s before the budget ends if it runs over, then `--report-only`: a report of whatever
#    finished, even when the schedule was priced too low (the first lease's key rows left none);
# 4. report.md, results.json, the figures and each run's events in $OUT/key_rows.tar.gz.
# DEVICE=cpu BASE=small COHORT="--small --cases 8" makes a smoke run of the script on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-/tmp}
BUDGET_S=${BUDGET_S:-400}
SECONDS=0  # bash counts the seconds since this assignment
WORK=${WORK:-/tmp/brainmetseg-key-rows}
source benchmarks/gpu_env.sh
rm -rf "$WORK"; mkdir -p "$WORK"
echo "=== cohort"
$PY -m BrainMetSegLib synth --out "$WORK/cohort" ${COHORT:---cases 20} --seed 2 --workers "$(nproc)" || exit 1
echo "=== calibration ($SECONDS s in)"
$PY benchmarks/gpu_schedule.py --cohort "$WORK/cohort" --work "$WORK" --base "${BASE:-paper}" \
    --device "${DEVICE:-cuda}" --seconds-left $(( BUDGET_S - SECONDS - 15 )) --out "$WORK/preset.json" || exit 1
GRID=(--dataset "$WORK/cohort" --out "$WORK/experiment" --preset "$WORK/preset.json" --tables 1 --key-rows-only --seeds 0)
echo "=== key rows ($SECONDS s in)"
# SIGTERM stops a run at its next step with a checkpoint; 30 s stay for the report and the packing
LEFT=$(( BUDGET_S - SECONDS - 30 )); (( LEFT > 0 )) || LEFT=1  # `timeout 0` would mean no limit
timeout --kill-after=15 "$LEFT" $PY -m BrainMetSegLib experiment "${GRID[@]}" --device "${DEVICE:-cuda}"
echo "=== report of the runs that finished ($SECONDS s in)"
$PY -m BrainMetSegLib experiment "${GRID[@]}" --report-only
echo "=== packing ($SECONDS s in)"
( cd "$WORK/experiment" && tar czf "$RESULTS/key_rows.tar.gz" --exclude='*.safetensors' --exclude='*.nii.gz' \
    . ../preset.json ../cohort/synth.json ../cohort/dataset.json )
echo "done ($SECONDS s)"
