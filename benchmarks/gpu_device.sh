#!/usr/bin/env bash
# The GPU measurements in one call of the device tool (a lent H100: no network,
# no Beam): install the wheels benchmarks/gpu_wheels.sh gathered into .gpu/whl,
# synthesize a 160-clip MP3 corpus, then the steps in priority order, each bounded
# by a timeout so a slow one cannot eat the rest (the whole ran in ~450 s there).
# Usage, repo root on the device, `.gpu` carried: bash benchmarks/gpu_device.sh [STEP...]
# Steps: synth env jobs stage threads levers agree pytest compile (default: all); `threads`
# reruns tokenize with --decode-pool threads (the jobs use auto: processes on CUDA). Results: $OUT/*.json.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SPEECHTOK_PROGRESS_INTERVAL=5
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; W=/tmp/speechtok-gpu; mkdir -p $W
T0=$(date +%s)
el() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }
STEPS=${*:-"synth env jobs stage threads levers agree pytest compile"}
has() { [[ " $STEPS " == *" $1 "* ]]; }
if [ ! -f /tmp/site/.ok ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl && touch /tmp/site/.ok || { echo "wheel install failed"; exit 1; }
fi
export PYTHONPATH=/tmp/site
el "wheels in"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
python3 -c "import torch, transformers, apache_beam, numpy, pyarrow; print('torch', torch.__version__, 'transformers', transformers.__version__, 'beam', apache_beam.__version__, 'numpy', numpy.__version__, 'pyarrow', pyarrow.__version__)" || exit 1
if has synth && [ ! -f /tmp/corpus/corpus.json ]; then
  timeout 120 python3 -m pipelines.cli corpus synth --out /tmp/corpus --langs fr,de,es,it --per-lang 40 --voices 2 2>&1 | tail -2
  el "corpus"
fi
G="python3 -m benchmarks.gpu --corpus /tmp/corpus --hours 30 --work $W"
if has env; then timeout 60 $G --steps env --json $OUT/env.json 2>&1 | tail -3; el "env"; fi
if has jobs; then
  timeout 330 $G --steps fit,tokenize --json $OUT/jobs.json 2>&1 | tail -4; el "jobs"
  for f in fit tokenize; do echo "--- $f.log"; grep -v "^\s*$" $W/$f.log | tail -14; done
fi
if has stage && [ -f $W/codebook/codebook.json ]; then  # GPU issue item 2: model stage / bare <= 1.10
  timeout 90 python3 -m benchmarks.model_stage --device cuda --encoder hf:$W/whisper-base-random \
    --layer 3 --audio /tmp/corpus --codebook $W/codebook --clips 160 --batch-seconds 1200 \
    --repeats 3 --dedup --json $OUT/stage.json 2>&1 | grep -E '"(model|bare)_s"|over_bare|audio_s'
  el "model stage"
fi
if has threads; then
  timeout 150 $G --steps tokenize --job-args="--decode-pool threads" --json $OUT/tok-threads.json \
    2>&1 | tail -2; grep -v "^\s*$" $W/tokenize.log | tail -3; el "tokenize, decode threads"
fi
if has levers; then
  timeout 200 python3 -m benchmarks.trainer_levers --device cuda --work $W --no-compile --repeats 3 \
    --only "default,varlen,all levers,activation checkpointing,gradient cache" --batch-sizes 32,128 --sweep 128,256 \
    --cache 4096,128 --json $OUT/levers.json 2>&1 | tail -14
  el "levers"
fi
if has agree; then
  timeout 120 $G --steps encoder,agree --encoder-clips 200 --json $OUT/encoder.json 2>&1 | tail -9
  el "encoder, agree"
fi
if has pytest; then
  timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/pipelines/test_gpu_tokens.py \
    tests/kmeans/test_fit.py tests/tokenizer/encoders/test_whisper.py tests/tokenizer/encoders/test_hf.py \
    2>&1 | tail -25
  el "pytest"
fi
if has compile; then
  timeout 170 python3 -m benchmarks.trainer_levers --device cuda --work $W --repeats 3 \
    --only "all levers" --sweep 128 --json $OUT/compile.json 2>&1 | tail -5
  el "compile"
fi
el "done"
