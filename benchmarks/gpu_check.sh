#!/usr/bin/env bash
# Every GPU figure of issue 7, in one command of about 8 minutes on one H100/H200:
#
#   bash benchmarks/gpu_check.sh          (repository root; tables on stdout, JSON in $OUT or /tmp)
#
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
PY=${PYTHON:-python3}
RESULTS=${OUT:-/tmp}
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/brainmetseg-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/brainmetseg-site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c "import torch, torchvision, numpy, scipy, safetensors, nibabel, cc3d, nrrd" || {
    echo "missing Python packages: run benchmarks/fetch_gpu_wheels.sh and carry .whl" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
started=$(date +%s)
step() { echo; echo "=== $1 ($(( $(date +%s) - started )) s in)"; }

step "1/4 fast paths against fp32"
$PY benchmarks/equivalence.py --device cuda
step "2/4 default inference and training"
$PY benchmarks/run.py --device cuda --backbones resnet50 mobilenet_v3_large --json "$RESULTS/gpu_default.json"
step "3/4 torch.compile + CUDA graphs"
$PY benchmarks/run.py --device cuda --backbones resnet50 --compile --cuda-graphs \
    --train-backbones --json "$RESULTS/gpu_compiled_graphs.json"
step "4/4 bf16 weights + CUDA graphs"
$PY benchmarks/run.py --device cuda --backbones resnet50 --precision bf16-weights --cuda-graphs \
    --train-backbones --json "$RESULTS/gpu_bf16_weights.json"
step "done"
