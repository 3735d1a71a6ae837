#!/bin/bash
# Table 2's key rows (50% censored by size: CE and lopsided) at 1,000 steps, training seed 0, in
# the same folder (the full-label row is shared with Table 1); started while run_seeds_1_2.sh's
# three processes were running, so five single-thread processes shared the 2 cores.
set -u
cd "$(dirname "$0")/../../.."   # the repository root
D=/tmp/s16/synth-seed5; O=/tmp/s16/long5; L=/tmp/s17
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 2 --key-rows-only --seeds 0 1 2"
export OMP_NUM_THREADS=1
mkdir -p $L
.venv/bin/brainmetseg experiment $ARGS --only size50-a3-b1-n100-s0 > $L/log-size50-a3-b1-n100-s0.txt 2>&1 &
.venv/bin/brainmetseg experiment $ARGS --only size50-a3-b0.1-n100-s0 > $L/log-size50-a3-b0.1-n100-s0.txt 2>&1 &
wait
echo done
