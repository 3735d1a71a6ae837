#!/usr/bin/env bash
# Issue 4's key rows (full CE; 50% censored CE; 50% censored lopsided 3/0.1) at full size — the
# `paper` preset's network and grid on a fresh full-size synthetic cohort — with one seed and as
# many steps as fit in BUDGET_S seconds (default 400, everything included) on one GPU:
#
#   BUDGET_S=550 bash benchmarks/gpu_key_rows.sh     (repository root; report in $OUT or /tmp)
#
# 1. `brainmetseg synth` a 23-case cohort (COHORT, default "--cases 23 --val-cases 4": 13 train,
#    4 val, 6 test; the first lease's "--cases 20" had 1 val case, and selection on a single
#    case reversed trial 3's conclusion, docs/results/dev-trial3) of the default
#    (BrainMetShare-like) preset, seed 2, one process per core (with 40 cases, 27 of them for
#    training, no schedule fitted a 290 s budget on an H200: the calibration alone, mostly
#    loading the cases, took 48 s);
# 2. benchmarks/gpu_schedule.py trains 40 calibration steps and writes the preset that fits;
# 3. `brainmetseg experiment --tables 1 --key-rows-only --seeds 0` with that preset, the three
#    runs side by side on the one GPU (`--only RUN_ID`, one process each: one run's loading,
#    validation and evaluation overlap the others' steps; PARALLEL=0 runs them one after the
#    other, as the first lease did), each stopped 30 s before the budget ends if it runs over,
#    then `--report-only`: a report of whatever finished, even when the schedule was priced too
#    low (the first lease's key rows left none);
# 4. report.md, results.json, the figures and each run's events in $OUT/key_rows.tar.gz.
# DEVICE=cpu BASE=small COHORT="--small --cases 8" makes a smoke run of the script on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-/tmp}
BUDGET_S=${BUDGET_S:-400}
SECONDS=0  # bash counts the seconds since this assignment
WORK=${WORK:-/tmp/brainmetseg-key-rows}
source benchmarks/gpu_env.sh
rm -rf "$WORK"; mkdir -p "$WORK" "$RESULTS"
echo "=== cohort"
$PY -m BrainMetSegLib synth --out "$WORK/cohort" ${COHORT:---cases 23 --val-cases 4} --seed 2 --workers "$(nproc)" || exit 1
KEY_ROWS=$($PY -c "from BrainMetSegLib.experiment_grid import plan_runs; print(*(r.run_id for r in plan_runs([1], [0], True)))")
if [ "${PARALLEL:-1}" = 1 ]; then  # one process per run, the host's cores shared among them
    SIDE_BY_SIDE=--parallel; THREADS=$(( $(nproc) / 3 )); export OMP_NUM_THREADS=$(( THREADS > 0 ? THREADS : 1 ))
else
    SIDE_BY_SIDE=
fi
echo "=== calibration ($SECONDS s in)"
$PY benchmarks/gpu_schedule.py --cohort "$WORK/cohort" --work "$WORK" --base "${BASE:-paper}" $SIDE_BY_SIDE \
    --device "${DEVICE:-cuda}" --seconds-left $(( BUDGET_S - SECONDS - 15 )) --out "$WORK/preset.json" || exit 1
GRID=(--dataset "$WORK/cohort" --out "$WORK/experiment" --preset "$WORK/preset.json" --tables 1 --key-rows-only --seeds 0)
echo "=== key rows ($SECONDS s in): $KEY_ROWS"
# SIGTERM stops a run at its next step with a checkpoint; 30 s stay for the report and the packing
LEFT=$(( BUDGET_S - SECONDS - 30 )); (( LEFT > 0 )) || LEFT=1  # `timeout 0` would mean no limit
rows() {  # rows RUN_ID...: train and evaluate these key rows in one process, within LEFT seconds
    timeout --kill-after=15 "$LEFT" $PY -m BrainMetSegLib experiment "${GRID[@]}" --device "${DEVICE:-cuda}" --only "$@"
}
if [ -n "$SIDE_BY_SIDE" ]; then
    first=1
    for run_id in $KEY_ROWS; do
        rows "$run_id" 2>&1 | sed -u "s/^/[$run_id] /" &
        if (( first )); then  # the first process claims the folder (experiment.json) for the others
            for _ in $(seq 120); do [ -f "$WORK/experiment/experiment.json" ] && break; sleep 0.5; done
            first=0
        fi
    done
    wait
else
    rows $KEY_ROWS
fi
echo "=== report of the runs that finished ($SECONDS s in)"
$PY -m BrainMetSegLib experiment "${GRID[@]}" --report-only
echo "=== packing ($SECONDS s in)"
( cd "$WORK/experiment" && tar czf "$RESULTS/key_rows.tar.gz" --exclude='*.safetensors' --exclude='*.nii.gz' \
    . ../preset.json ../cohort/synth.json ../cohort/dataset.json )
echo "done ($SECONDS s)"
