#!/bin/bash
# Keep each run's step-500 (epoch 1) checkpoint before step 600 replaces it, so that epoch_scores.py
# can score both epochs; runs alongside run_seeds_1_2.sh and stops at its "done".
mkdir -p /tmp/s17/epoch1
while true; do
  for run in /tmp/s16/long5/runs/*/; do
    name=$(basename $run); dest=/tmp/s17/epoch1/$name
    [ -f $dest/checkpoint.safetensors ] && continue
    ev=$run/events.jsonl; [ -f $ev ] || continue
    if grep -q '"step": 500, "total_steps": 1000, "epoch": 1, "reason": "epoch"' $ev && ! grep -q '"step": 600, "total_steps": 1000, "epoch": 2, "reason": "step"' $ev; then
      mkdir -p $dest.tmp && cp $run/checkpoint.safetensors $dest.tmp/ && mv $dest.tmp $dest && echo "$(date +%T) copied $name"
    fi
  done
  grep -q '^done' /tmp/s17/run.out 2>/dev/null && exit 0
  sleep 5
done
