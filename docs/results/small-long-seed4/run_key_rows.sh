#!/bin/bash
# Two sequential chains of single-thread runs on 2 cores; chain A's first run claims the folder.
set -u
cd "$(dirname "$0")/../../.."   # the repository root
D=/tmp/s15/synth-seed4; O=/tmp/s15/fresh4
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 --key-rows-only --seeds 0 1 2"
export OMP_NUM_THREADS=1
chain() { for id in "$@"; do .venv/bin/brainmetseg experiment $ARGS --only $id > /tmp/s15/log-$id.txt 2>&1; done; }
chain full-a3-b1-n100-s0 stochastic50-a3-b0.1-n100-s0 stochastic50-a3-b1-n100-s1 full-a3-b1-n100-s2 stochastic50-a3-b0.1-n100-s2 &
while [ ! -f $O/experiment.json ]; do sleep 2; done
chain stochastic50-a3-b1-n100-s0 full-a3-b1-n100-s1 stochastic50-a3-b0.1-n100-s1 stochastic50-a3-b1-n100-s2 &
wait
.venv/bin/brainmetseg experiment $ARGS --report-only > /tmp/s15/log-report.txt 2>&1
echo done
