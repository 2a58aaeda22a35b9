#!/usr/bin/env bash
# Gather what a lent CUDA machine lacks (it has Python 3.12, CUDA torch,
# transformers, pyarrow, pytest, no network) as cp312 wheels in .gpu/whl/
# (git-ignored), for benchmarks/gpu_device.sh. About 60 MB: the device tool
# carries at most 64 MiB with the working tree. Usage, from the repo root:
#   bash benchmarks/gpu_wheels.sh
set -eu
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/whl
platforms=""
for p in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms="$platforms --platform ${p}_x86_64"
done
# Beam and its runtime imports, audio I/O, our transformers pin (the machine's
# own huggingface_hub satisfies it), and espeak for `speechtok corpus synth`.
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  $platforms -d .gpu/whl apache-beam==2.77.0 soundfile==0.14.0 soxr==1.1.0 "fastavro<2" "fasteners<1" \
  "httplib2<1" "jsonpickle<5" "objsize<0.8" orjson "pymongo<5" "proto-plus<2" pytz "zstandard<1" \
  "beartype<0.23,>=0.21" dill mmh3 "cryptography<51" cffi pycparser transformers==5.23.0 espeakng-loader
du -sh .gpu/whl
