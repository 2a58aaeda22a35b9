"""A trained run used outside training: ``speechtok embed``, ``search`` and ``export``.

One mini-FLEURS token folder (mfcc, dedup) and one 2-step ``debug`` run
serve every test. Retrieval is set up where it must succeed whatever the
model learnt: an audio query that is a training recording (same audio ->
same tokens -> the same embedding, score 1 against itself) and a text query
identical to one of the indexed texts. The export parity test loads the
exported folder in a fresh ``python -I`` that cannot import speechtok.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from datastore import schema, shards
from pipelines.cli import main


@pytest.fixture(scope="module")
def tokens(mini_corpus, mfcc_codebook, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    args = ["tokenize", "--format", "fleurs", "--input", str(mini_corpus / "fleurs")]
    args += ["--encoder", "mfcc", "--codebook", str(mfcc_codebook), "--out", str(out), "--dedup"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def run(tokens, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    args = ["train", "--shards", str(tokens), "--llm", "debug", "--out", str(out)]
    assert main([*args, "--steps", "2", "--batch-size", "4", "--precision", "fp32"]) == 0
    return out


def _train_rows(tokens):
    return shards.read_table(str(tokens), "tokens", where={"split": ["train"]}).to_pylist()


def test_run_records_how_audio_became_tokens(run, tokens, mfcc_codebook):
    config = json.loads((run / "config.json").read_text())
    prov = config["tokens"]
    cb = json.loads((mfcc_codebook / "codebook.json").read_text())
    assert prov["encoder"]["name"] == "mfcc" and prov["dedup"] is True
    assert prov["identity"]["encoder"] == "mfcc" and prov["identity"]["layer"] == 0
    assert prov["codebook"]["id"] == cb["id"] == config["codebook"]["id"]
    assert prov["codebook"]["sha256"] == cb["sha256"] and prov["codebook"]["downsample"] == 1
    assert prov["codebook_dir"] == "codebook"
    for name in ("centroids.npy", "codebook.json"):  # a self-contained copy
        assert (run / "codebook" / name).read_bytes() == (mfcc_codebook / name).read_bytes()
    # New audio through the run alone gives exactly the training tokens.
    from trainer.provenance import audio_to_tokens

    rows = _train_rows(tokens)[:3]
    got = audio_to_tokens(str(run), [r["audio"] for r in rows])
    assert [g.tolist() for g in got] == [r["tokens"] for r in rows]


def test_embed_and_search_return_the_query(run, tokens, tmp_path, capsys):
    emb = tmp_path / "emb"
    args = ["embed", "--run", str(run), "--shards", str(tokens), "--split", "train"]
    assert main([*args, "--out", str(emb), "--faiss", "--batch-size", "5"]) == 0
    train = _train_rows(tokens)
    index = shards.Index.read(str(emb))
    assert index.counts == {"input": len(train), "accepted": len(train), "rejected": 0}
    table = shards.read_table(str(emb), "embeddings")
    assert table.schema.equals(schema.EMBEDDING_SCHEMA)
    assert table.column("id").to_pylist() == [r["id"] for r in train]  # input order
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert vectors.shape == (len(train), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (emb / "index.faiss").is_file() and "configs:" in (emb / "README.md").read_text()
    capsys.readouterr()

    query = next(r for r in train if r["lang"] == "de")
    search = ["search", "--run", str(run), "--index", str(emb), "--top-k", "3"]
    assert main([*search, "--query-audio", query["audio"], "--lang", "de"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[2] == query["id"] and float(lines[1].split()[1]) == pytest.approx(1.0)
    assert len(lines) == 4


def test_text_embeddings_with_rejects_and_exact_scan_search(run, tokens, tmp_path, capsys):
    test_rows = shards.read_table(str(tokens), "tokens", where={"split": ["test"]}).to_pylist()
    texts = {}
    for r in test_rows:  # one line per distinct sentence and language
        texts.setdefault((r["lang"], r["text"]), f"{r['lang']}-{len(texts)}")
    lines = [json.dumps({"id": i, "text": t, "lang": lang}) for (lang, t), i in texts.items()]
    lines[3:3] = ["", "{not json", json.dumps({"id": "x", "text": "", "lang": "fr"})]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    emb = tmp_path / "emb-text"
    assert main(["embed", "--run", str(run), "--text", str(jsonl), "--out", str(emb)]) == 0
    index = shards.Index.read(str(emb))
    assert index.counts == {"input": len(texts) + 2, "accepted": len(texts), "rejected": 2}
    assert index.rejects_by_reason == {"malformed_line": 1, "bad_text": 1}
    assert not (emb / "index.faiss").exists()
    capsys.readouterr()
    (lang, text), want = list(texts.items())[-1]
    args = ["search", "--run", str(run), "--index", str(emb), "--query-text", text]
    assert main([*args, "--lang", lang, "--top-k", "1"]) == 0
    hit = capsys.readouterr().out.strip().splitlines()[1].split("\t")
    assert hit[0].split()[-1] == want and hit[1] == lang and hit[3] == text


def test_search_refuses_embeddings_of_another_run(run, tokens, tmp_path, capsys):
    emb = tmp_path / "emb"
    args = ["embed", "--run", str(run), "--shards", str(tokens), "--split", "test"]
    assert main([*args, "--out", str(emb), "--langs", "fr"]) == 0
    config = json.loads((emb / "_index.json").read_text())
    config["extra"]["run_step"] = 99
    (emb / "_index.json").write_text(json.dumps(config))
    capsys.readouterr()
    code = main(
        ["search", "--run", str(run), "--index", str(emb), "--query-text", "a", "--lang", "fr"]
    )
    assert code == 2 and "run_step=99" in capsys.readouterr().err


def test_query_audio_needs_a_run_that_records_its_tokens(synthetic_shards, tmp_path, capsys):
    from trainer.train import debug_config, train

    shards_dir, _ = synthetic_shards
    train(debug_config(shards_dir, str(tmp_path / "run"), steps=1))
    assert json.loads((tmp_path / "run/config.json").read_text())["tokens"]["codebook_dir"] is None
    emb = tmp_path / "emb"
    args = ["embed", "--run", str(tmp_path / "run"), "--shards", shards_dir, "--split", "test"]
    assert main([*args, "--out", str(emb), "--langs", "fr"]) == 0
    capsys.readouterr()
    wav = tmp_path / "q.wav"
    wav.write_bytes(b"")
    code = main(
        [
            "search",
            "--run",
            str(tmp_path / "run"),
            "--index",
            str(emb),
            "--query-audio",
            str(wav),
            "--lang",
            "fr",
        ]
    )
    assert code == 2 and "--query-text" in capsys.readouterr().err


# --- export -------------------------------------------------------------------------------

PARITY_SCRIPT = r"""
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"speechtok", "tokenizer", "trainer", "pipelines", "kmeans", "gguf"}:
            raise ImportError(f"the export must not need {name}")
sys.meta_path.insert(0, Refuse())
export_dir, inputs, out = sys.argv[1:4]
sys.path.insert(0, export_dir)
import numpy as np
from encode import DualEncoder
data = json.load(open(inputs))
enc = DualEncoder(export_dir)
speech = enc.embed_speech(data["tokens"], data["speech_langs"]).numpy()
text = enc.embed_text(data["texts"], data["text_langs"]).numpy()
np.save(out, np.concatenate([speech, text]), allow_pickle=False)
"""


# The export through sentence-transformers, as its users load it (prompts name the
# language and modality); first refused without trust_remote_code.
ST_SCRIPT = (
    PARITY_SCRIPT.split("import numpy as np")[0]
    + r"""
import numpy as np
from sentence_transformers import SentenceTransformer
data = json.load(open(inputs))
try:
    SentenceTransformer(export_dir)
    raise SystemExit("loaded without trust_remote_code")
except ValueError as exc:
    assert "trust_remote_code" in str(exc), exc
model = SentenceTransformer(export_dir, trust_remote_code=True)
speech = [model.encode(["".join(f"<a{c}>" for c in codes)], prompt_name=f"speech-{lang}")[0]
          for codes, lang in zip(data["tokens"], data["speech_langs"])]
text = [model.encode([t], prompt_name=f"text-{lang}")[0]
        for t, lang in zip(data["texts"], data["text_langs"])]
np.save(out, np.asarray(speech + text, dtype=np.float32), allow_pickle=False)
"""
)


def _parity(run, tokens_dir, split, tmp_path, script=PARITY_SCRIPT) -> tuple[float, np.ndarray]:
    """Max abs difference between `speechtok embed` and the exported folder loaded
    without speechtok, on 20 recordings and 20 texts of the shards."""
    model_dir = tmp_path / "model"
    assert main(["export", "--run", str(run), "--out", str(model_dir)]) == 0
    where = {"split": [split]} if split else None
    rows = shards.read_table(str(tokens_dir), "tokens", where=where).to_pylist()[:20]
    emb = tmp_path / "emb"
    args = ["embed", "--run", str(run), "--shards", str(tokens_dir), "--out", str(emb)]
    assert main(args + (["--split", split] if split else [])) == 0
    by_id = {r["id"]: r["embedding"] for r in shards.read_table(str(emb), "embeddings").to_pylist()}
    # Distinct texts: the rows' transcripts cut at different lengths.
    text_rows = [
        {"id": str(i), "text": r["text"][: 10 + 7 * i], "lang": r["lang"]}
        for i, r in enumerate(rows)
    ]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("".join(json.dumps(t) + "\n" for t in text_rows))
    assert (
        main(["embed", "--run", str(run), "--text", str(jsonl), "--out", str(tmp_path / "et")]) == 0
    )
    text_emb = shards.read_table(str(tmp_path / "et"), "embeddings").column("embedding").to_pylist()
    ours = np.asarray([by_id[r["id"]] for r in rows] + text_emb, dtype=np.float32)
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps(
            {
                "tokens": [r["tokens"] for r in rows],
                "speech_langs": [r["lang"] for r in rows],
                "texts": [t["text"] for t in text_rows],
                "text_langs": [t["lang"] for t in text_rows],
            }
        )
    )
    out = tmp_path / "theirs.npy"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script, str(model_dir), str(inputs), str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        # dynamic modules are copied under HF_HOME; nothing is fetched
        env={**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = np.load(out, allow_pickle=False)
    assert theirs.shape == ours.shape and len(ours) == 40
    assert len({tuple(np.round(v, 4)) for v in ours}) > 30  # distinct inputs, distinct vectors
    return float(np.abs(theirs - ours).max()), ours


def test_export_gives_the_embeddings_of_speechtok_embed(run, tokens, tmp_path):
    diff, ours = _parity(run, tokens, None, tmp_path)
    assert diff < 1e-4 and ours.shape[1] == 64
    model_dir = tmp_path / "model"
    meta = json.loads((model_dir / "dual_encoder.json").read_text())
    assert meta["audio_token_offset"] == 260 and meta["audio_rows"] == 64
    assert (model_dir / "codebook" / "centroids.npy").is_file()
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == 260 + 64
    assert "from encode import DualEncoder" in (model_dir / "README.md").read_text()


def test_export_loads_in_sentence_transformers_with_the_same_vectors(run, tokens, tmp_path):
    pytest.importorskip("sentence_transformers")
    diff, _ = _parity(run, tokens, None, tmp_path, script=ST_SCRIPT)
    assert diff < 1e-4
    meta = json.loads((tmp_path / "model" / "dual_encoder.json").read_text())
    trained = sorted({r["lang"] for r in _train_rows(tokens)})
    assert meta["languages"] == trained and len(trained) > 1  # every language trained on
    card = (tmp_path / "model" / "README.md").read_text()
    assert "language:" + "".join(f"\n- {lang}" for lang in trained) + "\n" in card


@pytest.mark.slow
def test_export_parity_with_gemma(synthetic_shards, tmp_path):
    """The real Gemma 3 270M (1 layer kept): the merged 262,144 + 128 row table."""
    from trainer.configs import DualEncoderConfig, TrainConfig
    from trainer.train import debug_config, train

    shards_dir, _ = synthetic_shards
    base = debug_config(shards_dir, str(tmp_path / "run"), steps=1).to_dict()
    base["model"] = DualEncoderConfig(llm="gemma-3-270m", layers=1, max_speech_tokens=128).__dict__
    train(TrainConfig.from_dict(base))
    diff, ours = _parity(tmp_path / "run", shards_dir, "test", tmp_path)
    assert diff < 1e-4 and ours.shape[1] == 640


@pytest.mark.slow
def test_embed_and_search_with_gemma(synthetic_shards, tmp_path, capsys):
    """The real Gemma 3 270M (1 layer kept): a held-out test sentence, queried by
    its own text, comes back first among every test sentence of its language."""
    from trainer.configs import DualEncoderConfig, TrainConfig
    from trainer.train import debug_config, train

    shards_dir, _ = synthetic_shards
    base = debug_config(shards_dir, str(tmp_path / "run"), steps=1).to_dict()
    base["model"] = DualEncoderConfig(llm="gemma-3-270m", layers=1, max_speech_tokens=128).__dict__
    train(TrainConfig.from_dict(base))
    emb = tmp_path / "emb"
    args = ["embed", "--run", str(tmp_path / "run"), "--shards", shards_dir, "--split", "test"]
    assert main([*args, "--langs", "fr", "--modality", "text", "--out", str(emb)]) == 0
    rows = shards.read_table(shards_dir, "tokens", where={"split": ["test"]}).to_pylist()
    query = [r for r in rows if r["lang"] == "fr"][-1]
    capsys.readouterr()
    search = ["search", "--run", str(tmp_path / "run"), "--index", str(emb), "--top-k", "1"]
    assert main([*search, "--query-text", query["text"], "--lang", "fr"]) == 0
    hit = capsys.readouterr().out.strip().splitlines()[1].split("\t")
    assert hit[1] == "fr" and hit[3] == query["text"]


def test_export_refuses_a_foreign_folder(run, tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "docs")]) == 2
    assert (tmp_path / "docs" / "notes.txt").read_text() == "mine"


def test_embedding_shards_read_with_pyarrow(run, tokens, tmp_path):
    emb = tmp_path / "emb"
    args = ["embed", "--run", str(run), "--shards", str(tokens), "--split", "test", "--langs", "sw"]
    assert main([*args, "--out", str(emb), "--modality", "text"]) == 0
    table = pq.read_table(str(emb / "embeddings"))
    assert set(table.column("modality").to_pylist()) == {"text"}
    assert set(table.column("lang").to_pylist()) == {"sw"}


@pytest.mark.parametrize("command", ["embed", "search", "export"])
def test_subcommands_have_help_and_refuse_unknown_flags(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and f"usage: speechtok {command}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main([command, "--run", "r", "--out", "o", "--index", "i", "--text", "t", "--bogus"])
    assert exc.value.code == 2


def test_embed_needs_exactly_one_source(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["embed", "--run", "r", "--out", "o"])
    assert exc.value.code == 2 and "--shards" in capsys.readouterr().err
    assert main(["search", "--run", "r", "--index", "i", "--query-text", "hello"]) == 2
    assert "--lang" in capsys.readouterr().err
