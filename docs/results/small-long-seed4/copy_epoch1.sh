#!/bin/bash
# Copy each run's step-500 (epoch 1) checkpoint before step 600 overwrites it, to score both epochs on test.
mkdir -p /tmp/s15/epoch1
while true; do
  for run in /tmp/s15/fresh4/runs/*/; do
    name=$(basename $run); dest=/tmp/s15/epoch1/$name
    [ -f $dest/checkpoint.safetensors ] && continue
    ev=$run/events.jsonl; [ -f $ev ] || continue
    if grep -q '"step": 500, "total_steps": 1000, "epoch": 1, "reason": "epoch"' $ev && ! grep -q '"step": 600, "total_steps": 1000, "epoch": 2, "reason": "step"' $ev; then
      mkdir -p $dest.tmp && cp $run/checkpoint.safetensors $dest.tmp/ && mv $dest.tmp $dest && echo "$(date +%T) copied $name"
    fi
  done
  [ -f /tmp/s15/drive.out ] && grep -q '^done' /tmp/s15/drive.out && exit 0
  sleep 5
done
