#!/bin/bash
# Key rows of Table 1 at 1,000 steps, training seed 0, cohort seed 5: three single-thread processes at once.
cd "$(dirname "$0")/../../.."   # the repository root
D=/tmp/s16/synth-seed5; O=/tmp/s16/long5
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 --key-rows-only --seeds 0"
export OMP_NUM_THREADS=1
.venv/bin/brainmetseg experiment $ARGS --only full-a3-b1-n100-s0 > /tmp/s16/long-full.txt 2>&1 &
while [ ! -f $O/experiment.json ]; do sleep 2; done
.venv/bin/brainmetseg experiment $ARGS --only stochastic50-a3-b1-n100-s0 > /tmp/s16/long-ce.txt 2>&1 &
.venv/bin/brainmetseg experiment $ARGS --only stochastic50-a3-b0.1-n100-s0 > /tmp/s16/long-lop.txt 2>&1 &
wait
.venv/bin/brainmetseg experiment $ARGS --report-only > /tmp/s16/long-report.txt 2>&1
echo done
