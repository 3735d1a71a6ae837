#!/bin/bash
# Table 2's key rows (50% censored by size: CE and lopsided) at 1,000 steps for the training seeds
# given as arguments, in run_key_rows.sh's folder (the full-label rows are shared with Table 1):
# one single-thread process per run, all at once, then the report of Tables 1 and 2. In a new
# folder the first process claims it (experiment.json) before the others start.
#   bash run_size_rows.sh 0      # ran alongside run_seeds_1_2.sh: five processes on 2 cores
#   bash run_size_rows.sh 1 2    # ran afterwards: four processes
set -u
cd "$(dirname "$0")/../../.."   # the repository root
# D (cohort), O (experiment folder) and L (logs) may be set in the environment; the defaults are
# cohort seed 5's. Cohort seed 6: D=/tmp/s18/synth-seed6 O=/tmp/s18/long6 L=/tmp/s18 bash run_size_rows.sh 0
D=${D:-/tmp/s16/synth-seed5}; O=${O:-/tmp/s16/long5}; L=${L:-/tmp/s17}
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 2 --key-rows-only --seeds 0 1 2"
export OMP_NUM_THREADS=1
mkdir -p $L
for seed in "$@"; do
  for id in size50-a3-b1-n100-s$seed size50-a3-b0.1-n100-s$seed; do
    .venv/bin/brainmetseg experiment $ARGS --only $id > $L/log-$id.txt 2>&1 &
    while [ ! -f $O/experiment.json ] && kill -0 $! 2>/dev/null; do sleep 2; done
  done
done
wait
.venv/bin/brainmetseg experiment $ARGS --report-only > $L/log-report-size.txt 2>&1
echo done
