#!/usr/bin/env bash
# The README tour (mfcc + whisper-base), a JSONL corpus with every reject kind,
# duplicates, an append and FLEURS from tar.gz: each folder's counts and shard
# sha256 in OUT/hashes.json, to compare two commits (the audio column is
# absolute: use the same OUT for both). Usage: benchmarks/shard_hashes.sh REPO OUT
set -euo pipefail
REPO=$1; OUT=$2
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
ST="$REPO/.venv/bin/python -m pipelines.cli"
export PYTHONPATH=$REPO HF_HUB_OFFLINE=1
$ST corpus synth --out mini --langs fr,de,sw,hi --per-lang 10 --voices 2 > synth.log 2>&1
$ST fit-codebook --format fleurs --input mini/fleurs --langs fr,de --splits train \
    --encoder whisper-base --k 256 --out cb/wb-L3-k256 > fit.log 2>&1
$ST tokenize --format fleurs --input mini/fleurs --encoder whisper-base \
    --codebook cb/wb-L3-k256 --out tok --dedup > tok.log 2>&1
$ST tokenize --format covost --input mini/covost/covost_v2.fr_en.tsv \
    --audio-root mini/cv/fr --encoder whisper-base --codebook cb/wb-L3-k256 --out tok-covost > covost.log 2>&1
$ST bitext --input 'mini/wikimatrix/*.tsv.gz' --min-score 1.04 --out bt > bt.log 2>&1
$ST fit-codebook --format fleurs --input mini/fleurs --encoder mfcc --k 32 --out cb-mfcc > fitm.log 2>&1
$ST tokenize --format fleurs --input mini/fleurs --encoder mfcc --codebook cb-mfcc --out tok-mfcc --rows-per-shard 7 > tokm.log 2>&1
# Part 2: rejects, duplicates, tar layout, appends, multi-bucket shards (mfcc).
"$REPO/.venv/bin/python" - <<'PY'
import json, pathlib, shutil, tarfile, sys
sys.path.insert(0, ".")
from benchmarks.load import write_corpus
folder = pathlib.Path("load")
info = write_corpus(folder, 300, 7)
lines = (folder / "manifest.jsonl").read_text().splitlines()
extra = [
  json.dumps({"id": "utt00001", "audio": "clips/utt00002.wav", "text": "dup other audio", "lang": "de", "split": "train"}),
  json.dumps({"id": "utt00003", "audio": "clips/utt00003.wav", "text": "utterance 3", "lang": "en", "split": "train"}),
  json.dumps({"id": "utt00004", "audio": "clips/utt00000.wav", "text": "a winner by uri", "lang": "fr", "split": "train"}),
  "{not json",
  json.dumps({"id": "esc", "audio": "../../etc/passwd", "text": "x", "lang": "fr", "split": "train"}),
]
(folder / "manifest.jsonl").write_text("\n".join(lines[:150] + extra + lines[150:]) + "\n")
(folder / "first.jsonl").write_text("\n".join(lines[:200]) + "\n")
# FLEURS read from its published tar.gz
shutil.copytree("mini/fleurs", "fleurs-tar")
for lang in ("fr_fr", "de_de"):
    audio = pathlib.Path("fleurs-tar", lang, "audio")
    for split in ("train", "test"):
        with tarfile.open(audio / f"{split}.tar.gz", "w:gz") as t:
            t.add(audio / split, arcname=split)
        shutil.rmtree(audio / split)
PY
"$REPO/.venv/bin/python" - <<'PY'
import sys; sys.path.insert(0, ".")
from benchmarks.load import fit_codebook
import glob
import json as _j; fit_codebook([str(p) for p in sorted(glob.glob("load/clips/*.wav")) if __import__("os").path.getsize(p) > 5000][:200], __import__("pathlib").Path("cb-load"))
PY
$ST tokenize --format jsonl --input load/manifest.jsonl --encoder mfcc --codebook cb-load --out tok-load --rows-per-shard 20 > tokl.log 2>&1
$ST tokenize --format jsonl --input load/first.jsonl --encoder mfcc --codebook cb-load --out tok-append --rows-per-shard 20 > toka1.log 2>&1
$ST tokenize --format jsonl --input load/manifest.jsonl --encoder mfcc --codebook cb-load --out tok-append --rows-per-shard 20 --skip-existing > toka2.log 2>&1
$ST tokenize --format fleurs --input fleurs-tar --encoder mfcc --codebook cb-mfcc --out tok-tar --dedup > tokt.log 2>&1
$ST fit-codebook --format jsonl --input load/manifest.jsonl --encoder mfcc --k 16 --out cb-fit-load > fitl.log 2>&1
"$REPO/.venv/bin/python" - <<'PY'
import json, hashlib, pathlib
out = {}
for idx in sorted(pathlib.Path(".").glob("*/_index.json")) + sorted(pathlib.Path(".").glob("cb/*/_index.json")):
    d = json.loads(idx.read_text())
    out[str(idx.parent)] = {"counts": d["counts"], "reasons": d["rejects_by_reason"],
        "shards": {s["path"]: s["sha256"] for s in d["shards"]}}
    p = idx.parent / "centroids.npy"
    if p.exists():
        out[str(idx.parent)]["centroids.npy"] = hashlib.sha256(p.read_bytes()).hexdigest()
pathlib.Path("hashes.json").write_text(json.dumps(out, indent=1, sort_keys=True))
print(json.dumps({k: (v["counts"], v["reasons"], len(v["shards"])) for k, v in out.items()}))
PY
