#!/bin/bash
# Training seeds 1 and 2 of the same key rows, added to run_key_rows.sh's folder (seed 0 is
# already there): three chains of two single-thread runs on 2 cores.
set -u
cd "$(dirname "$0")/../../.."   # the repository root
D=/tmp/s16/synth-seed5; O=/tmp/s16/long5; L=/tmp/s17
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 --key-rows-only --seeds 0 1 2"
export OMP_NUM_THREADS=1
mkdir -p $L
chain() { for id in "$@"; do .venv/bin/brainmetseg experiment $ARGS --only $id > $L/log-$id.txt 2>&1; done; }
chain full-a3-b1-n100-s1 full-a3-b1-n100-s2 &
chain stochastic50-a3-b1-n100-s1 stochastic50-a3-b1-n100-s2 &
chain stochastic50-a3-b0.1-n100-s1 stochastic50-a3-b0.1-n100-s2 &
wait
.venv/bin/brainmetseg experiment $ARGS --report-only > $L/log-report.txt 2>&1
echo done
