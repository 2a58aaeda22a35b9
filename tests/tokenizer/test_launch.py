"""The tokenize launcher's checks and the folder it readies, without Beam."""

import json
import shutil
from dataclasses import asdict

import pytest

from datastore import schema, shards
from tokenizer.encoders.base import EncoderConfig
from tokenizer.launch import CodebookMismatch, plan_tokens
from tokenizer.manifests import ManifestConfig


def _plan(codebook, corpus, out, *, encoder="mfcc", append=False, **enc):
    return plan_tokens(
        codebook_dir=str(codebook),
        encoder=EncoderConfig(name=encoder, **enc),
        manifest=ManifestConfig(format="fleurs", input=str(corpus / "fleurs")),
        out=str(out),
        append=append,
    )


def test_a_fresh_plan_lists_parts_and_empties_the_folder(mfcc_codebook, mini_corpus, tmp_path):
    out = tmp_path / "out"
    (out / schema.TOKENS_DIR).mkdir(parents=True)
    (out / schema.TOKENS_DIR / "part-00000.parquet").write_bytes(b"stale")
    plan = _plan(mfcc_codebook, mini_corpus, out)
    assert plan.identity.encoder == "mfcc" and plan.previous is None
    assert plan.parts and all(p.source.endswith(".tsv") and p.span is None for p in plan.parts)
    assert not (out / schema.TOKENS_DIR).exists()


def test_features_of_another_encoder_are_refused(mfcc_codebook, mini_corpus, tmp_path):
    with pytest.raises(CodebookMismatch, match="encoder="):
        _plan(mfcc_codebook, mini_corpus, tmp_path / "out", encoder="whisper-base")


def test_a_folder_of_another_codebook_is_refused_and_left_alone(
    mfcc_codebook, mini_corpus, tmp_path
):
    out = tmp_path / "out"
    index = shards.Index(job="tokenize", config={}, extra={"codebook": "mfcc-L0-k16-00000000"})
    index.write(str(out))
    with pytest.raises(CodebookMismatch, match="new output folder"):
        _plan(mfcc_codebook, mini_corpus, out, append=True)
    assert json.loads((out / schema.INDEX_FILE).read_text())["extra"] == asdict(index)["extra"]


def test_a_wider_codebook_than_the_encoder_is_refused(mfcc_codebook, mini_corpus, tmp_path):
    import numpy as np

    wide = tmp_path / "wide"
    shutil.copytree(mfcc_codebook, wide)
    meta = json.loads((wide / "codebook.json").read_text())
    centroids = np.load(wide / "centroids.npy", allow_pickle=False)
    from kmeans import Codebook

    Codebook(np.concatenate([centroids, centroids], axis=1), meta).save(str(wide))
    with pytest.raises(ValueError, match="dim centroids but the encoder gives"):
        _plan(wide, mini_corpus, tmp_path / "out")


def test_fit_plan_clears_an_earlier_codebook(mini_corpus, tmp_path):
    from tokenizer.launch import plan_frames

    out = tmp_path / "cb"
    out.mkdir()
    for name in ("centroids.npy", "codebook.json", "_index.json", "notes.txt"):
        (out / name).write_text("old")
    identity, sources = plan_frames(
        encoder=EncoderConfig(name="mfcc"),
        manifest=ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs")),
        out=str(out),
    )
    assert identity.encoder == "mfcc" and sources
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
