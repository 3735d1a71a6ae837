#!/usr/bin/env bash
# Download, on a machine that reaches PyPI, the wheels that the GPU machine's image lacks
# (nibabel: NIfTI files; connected-components-3d: lesion extraction; pynrrd: lesions.seg.nrrd)
# into .whl/ at the repository root, ignored by git, for benchmarks/gpu_check.sh to install.
# The image has Python 3.12, numpy, packaging and typing-extensions, which these need.
#
#   bash benchmarks/fetch_gpu_wheels.sh      # then carry .whl to the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl nibabel==5.4.2 connected-components-3d==3.29.0 pynrrd==1.1.3
ls -l .whl
