#!/usr/bin/env bash
# Wheels that the lent H200 machine lacks for benchmarks/googlenet.py: pymoo and the packages it
# needs that are not in that machine's image (Python 3.12, x86-64; torch, timm, numba, scikit-learn,
# pyarrow, safetensors, scipy, matplotlib and wrapt are there). Downloads into .whl/ (ignored by git):
#
#   echo /.whl/ >> .git/info/exclude; bash benchmarks/device_wheels.sh
#
# then, on the device (carry: [.whl]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; python3 benchmarks/googlenet.py --json $OUT/googlenet.json
set -euo pipefail
cd "$(dirname "$0")/.."
platforms=()
for p in manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  pymoo==0.6.2 moocore==0.3.2 autograd==1.9.1 cma==4.5.0 alive_progress==3.3.0 about-time==4.2.1 \
  graphemeu==0.7.2 Deprecated==3.0.1 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.8
ls -1 .whl
