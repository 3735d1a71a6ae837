#!/bin/bash
# Copy each run's step-500 (epoch 1) checkpoint before step 600 overwrites it, to score both epochs on test.
# Arguments (defaults: cohort seed 4's folders): the experiment folder, where the copies go, and the
# driver's output file, whose "done" line stops the loop.
EXPERIMENT=${1:-/tmp/s15/fresh4}; COPIES=${2:-/tmp/s15/epoch1}; DRIVER_OUT=${3:-/tmp/s15/drive.out}
mkdir -p $COPIES
while true; do
  for run in $EXPERIMENT/runs/*/; do
    name=$(basename $run); dest=$COPIES/$name
    [ -f $dest/checkpoint.safetensors ] && continue
    ev=$run/events.jsonl; [ -f $ev ] || continue
    if grep -q '"step": 500, "total_steps": 1000, "epoch": 1, "reason": "epoch"' $ev && ! grep -q '"step": 600, "total_steps": 1000, "epoch": 2, "reason": "step"' $ev; then
      mkdir -p $dest.tmp && cp $run/checkpoint.safetensors $dest.tmp/ && mv $dest.tmp $dest && echo "$(date +%T) copied $name"
    fi
  done
  [ -f $DRIVER_OUT ] && grep -q '^done' $DRIVER_OUT && exit 0
  sleep 5
done
