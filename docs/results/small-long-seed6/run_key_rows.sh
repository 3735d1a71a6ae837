#!/bin/bash
# A fresh cohort seed (6, the third; then 7) for Table 1's key rows at 1,000 steps, training seeds 0, 1, 2:
# one chain of single-thread runs per row, three processes at once on 2 cores, so that each
# round of the chains completes one training seed's comparison.
set -u
cd "$(dirname "$0")/../../.."   # the repository root
# S (cohort seed) and W (work folder) may be set in the environment; the defaults are cohort
# seed 6's. Cohort seed 7: S=7 W=/tmp/s21 bash run_key_rows.sh
S=${S:-6}; W=${W:-/tmp/s18}
D=$W/synth-seed$S; O=$W/long$S; L=$W
ARGS="--dataset $D --out $O --preset docs/results/small-long/preset.json --tables 1 --key-rows-only --seeds 0 1 2"
export OMP_NUM_THREADS=1
mkdir -p $L
[ -d $D ] || .venv/bin/brainmetseg synth --small --cases 40 --val-cases 4 --seed $S --out $D > $L/log-synth.txt 2>&1
chain() { for id in "$@"; do .venv/bin/brainmetseg experiment $ARGS --only $id > $L/log-$id.txt 2>&1; done; }
chain full-a3-b1-n100-s0 full-a3-b1-n100-s1 full-a3-b1-n100-s2 &
while [ ! -f $O/experiment.json ]; do sleep 2; done   # the first process claims the folder
chain stochastic50-a3-b1-n100-s0 stochastic50-a3-b1-n100-s1 stochastic50-a3-b1-n100-s2 &
chain stochastic50-a3-b0.1-n100-s0 stochastic50-a3-b0.1-n100-s1 stochastic50-a3-b0.1-n100-s2 &
wait
.venv/bin/brainmetseg experiment $ARGS --report-only > $L/log-report.txt 2>&1
echo done
