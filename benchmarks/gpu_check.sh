#!/usr/bin/env bash
# Every GPU figure of issue 7, in one command of at most LIMITS seconds on one H100/H200:
#
#   bash benchmarks/gpu_check.sh          (repository root; tables on stdout, JSON in $OUT or /tmp)
#
# Each step is stopped at its limit (LIMITS="60 150 60 90", seconds, steps 1 2 4 3 in the order
# they run), so that a device lease's minutes are not lost to one slow step: torch.compile is
# last, since its compilation alone can take minutes.
# 1. fast paths against fp32 on the GPU (same lesions?)       benchmarks/equivalence.py
# 2. default inference (bf16 autocast, channels_last) and training, ResNet-50 and MobileNetV3,
#    with the naive per-slice batch-1 fp32 loop on all 200 slices  benchmarks/run.py
# 3. inference with torch.compile + CUDA graphs, ResNet-50 (the issue's targets are ResNet-50's)
# 4. inference with bf16 weights + CUDA graphs, ResNet-50
#
# Needs python3 with torch (CUDA), torchvision, numpy, scipy, safetensors, tqdm, psutil (the
# GPU machine's image has them) and nibabel, connected-components-3d, pynrrd (it has not):
# run benchmarks/fetch_gpu_wheels.sh here first and carry .whl; this script installs them.
# On a machine without CUDA each step prints "skipped: no CUDA device".
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=${OUT:-/tmp}
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
started=$(date +%s)
step() { echo; echo "=== $1 ($(( $(date +%s) - started )) s in)"; }

read -r -a limit <<< "${LIMITS:-60 150 60 90}"
bounded() {  # bounded SECONDS COMMAND...: run, and say so when the step hit its limit
    local seconds=$1; shift
    timeout --kill-after=10 "$seconds" "$@"
    local status=$?
    [ $status -eq 124 ] && echo "stopped at its ${seconds} s limit: not measured"
    return 0
}

step "1/4 fast paths against fp32"
bounded "${limit[0]}" $PY benchmarks/equivalence.py --device cuda
step "2/4 default inference and training"
bounded "${limit[1]}" $PY benchmarks/run.py --device cuda --backbones resnet50 mobilenet_v3_large \
    --json "$RESULTS/gpu_default.json"
step "4/4 bf16 weights + CUDA graphs"
bounded "${limit[2]}" $PY benchmarks/run.py --device cuda --backbones resnet50 --precision bf16-weights \
    --cuda-graphs --train-backbones --json "$RESULTS/gpu_bf16_weights.json"
step "3/4 torch.compile + CUDA graphs"
bounded "${limit[3]}" $PY benchmarks/run.py --device cuda --backbones resnet50 --compile --cuda-graphs \
    --train-backbones --json "$RESULTS/gpu_compiled_graphs.json"
step "done"
