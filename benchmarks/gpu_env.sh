# Sourced by the GPU scripts: install the carried wheels (.whl, from fetch_gpu_wheels.sh) that the
# GPU machine's image lacks and check that every package the library needs imports.
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD/BrainMetSeg${PYTHONPATH:+:$PYTHONPATH}  # the library, not installed there
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/brainmetseg-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/brainmetseg-site${PYTHONPATH:+:$PYTHONPATH}
fi
$PY -c "import torch, torchvision, numpy, scipy, safetensors, nibabel, cc3d, nrrd, matplotlib" || {
    echo "missing Python packages: run benchmarks/fetch_gpu_wheels.sh and carry .whl" >&2; exit 1; }
