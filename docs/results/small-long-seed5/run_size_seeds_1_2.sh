#!/bin/bash
# Table 2's key rows (50% censored by size: CE and lopsided) at 1,000 steps, training seeds 1 and
# 2, in the same folder (the full-label rows are shared with Table 1): four single-thread
# processes at once on the 2 cores.
set -u
cd "$(dirname "$0")/../../.."   # the repository root
D=/tmp/s16/synth-seed5; O=/tmp/s16/long5; L=/tmp/s17
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 2 --key-rows-only --seeds 0 1 2"
export OMP_NUM_THREADS=1
mkdir -p $L
for id in size50-a3-b1-n100-s1 size50-a3-b0.1-n100-s1 size50-a3-b1-n100-s2 size50-a3-b0.1-n100-s2; do
  .venv/bin/brainmetseg experiment $ARGS --only $id > $L/log-$id.txt 2>&1 &
done
wait
.venv/bin/brainmetseg experiment $ARGS --report-only > $L/log-report2.txt 2>&1
echo done
