"""The fit-codebook and tokenize jobs end to end on mini-FLEURS with mfcc."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from datastore import schema, shards
from kmeans import Codebook
from pipelines import tokenize as job
from pipelines.cli import main
from tokenizer.encoders.base import EncoderConfig
from tokenizer.manifests import ManifestConfig


def tokenize(corpus, cb, out, **kw):
    manifest = kw.pop("manifest", ManifestConfig(format="fleurs", input=str(corpus / "fleurs")))
    cfg = job.TokenizeJobConfig(
        manifest=manifest, encoder=EncoderConfig(name="mfcc"), codebook=str(cb), out=str(out), **kw
    )
    return job.run(cfg)


def read_tokens(out):
    return ds.dataset(str(out / "tokens"), format="parquet", partitioning="hive").to_table()


def fleurs_rows(corpus):
    frames = []
    for tsv in sorted((corpus / "fleurs").glob("*/*.tsv")):
        if not tsv.stat().st_size:
            continue  # a split with no sentence at this corpus size
        df = pd.read_csv(tsv, sep="\t", header=None, quoting=3, dtype=str, keep_default_na=False)
        df["code"], df["split"] = tsv.parent.name, tsv.stem
        frames.append(df)
    return pd.concat(frames)


def test_codebook_folder(mfcc_codebook):
    cb = Codebook.load(str(mfcc_codebook))
    assert cb.k == 16 and cb.dim == 39 and cb.id.startswith("mfcc-L0-k16-")
    meta = json.loads((mfcc_codebook / "codebook.json").read_text())
    assert meta["encoder"] == "mfcc" and meta["frame_rate"] == 50.0
    index = json.loads((mfcc_codebook / "_index.json").read_text())
    assert index["counts"]["input"] == index["counts"]["accepted"] + index["counts"]["rejected"]
    assert set(meta["sample_per_lang"]) >= {"fr", "de", "sw"}


def test_saved_sample_refits_the_same_codebook(mfcc_codebook):
    """``save_sample``: exactly the frames k-means saw, stored without pickle."""
    import kmeans

    cb = Codebook.load(str(mfcc_codebook))
    frames = np.load(mfcc_codebook / "sample" / "frames.npy", allow_pickle=False)
    langs = np.load(mfcc_codebook / "sample" / "langs.npy", allow_pickle=False)
    assert frames.dtype == np.float32 and frames.shape == (len(langs), 39)
    per_lang = dict(zip(*np.unique(langs, return_counts=True), strict=True))
    assert {str(k): int(v) for k, v in per_lang.items()} == cb.metadata["sample_per_lang"]
    refit = kmeans.fit(frames, cb.k, seed=0)
    np.testing.assert_array_equal(refit.centroids, cb.centroids)


def test_tokenize_end_to_end(mini_corpus, mfcc_codebook, tmp_path):
    index = tokenize(mini_corpus, mfcc_codebook, tmp_path / "out", dedup=True)
    table = read_tokens(tmp_path / "out")
    expected = fleurs_rows(mini_corpus)
    # Counts reconcile and every TSV row became exactly one shard row.
    assert index.counts == {"input": len(expected), "accepted": len(expected), "rejected": 0}
    assert table.num_rows == len(expected)
    # Schema column by column: the file holds TOKEN_SCHEMA minus the partition keys
    # (those are its folder names), and the readers give back TOKEN_SCHEMA.
    one = pq.ParquetFile(tmp_path / "out" / index.shards[0]["path"])
    assert one.schema_arrow.remove_metadata().equals(shards.file_schema("tokens"))
    assert [(f.name, f.type) for f in table.schema] == [
        (f.name, f.type) for f in schema.TOKEN_SCHEMA
    ]
    meta = one.schema_arrow.metadata
    assert meta[schema.META_PARTITION].decode() in index.shards[0]["path"]
    assert (
        meta[schema.META_ENCODER] == b"mfcc"
        and meta[schema.META_CODEBOOK_SHA256] == Codebook.load(str(mfcc_codebook)).sha256.encode()
    )
    rows = table.to_pylist()
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows)
    for _, tsv_row in expected.iterrows():
        r = by_id[f"{tsv_row['code']}/{tsv_row[1].rsplit('.', 1)[0]}"]
        assert (r["sentence_id"], r["text"], r["split"]) == (
            tsv_row[0],
            tsv_row[2],
            tsv_row["split"],
        )
        assert (
            r["source_lang"] == tsv_row["code"]
            and r["modality"] == "speech"
            and r["corpus"] == "fleurs"
        )
        assert r["duration_s"] == pytest.approx(int(tsv_row[5]) / 16000, abs=1e-3)
        # Invariants: dedup run lengths add up to the frame count; no equal neighbours; ids in range.
        toks, durs = np.array(r["tokens"]), np.array(r["durations"])
        assert durs.sum() == r["n_frames"]
        assert abs(r["n_frames"] - r["duration_s"] * 50) <= 1  # mfcc runs at 50 Hz
        assert (toks[1:] != toks[:-1]).all() and toks.min() >= 0 and toks.max() < 16
    # FLEURS records a sentence twice here: two utterances share each sentence id.
    assert (
        pd.Series([r["sentence_id"] for r in rows if r["lang"] == "fr"]).value_counts().eq(2).all()
    )


def test_rerun_is_identical(mini_corpus, mfcc_codebook, tmp_path):
    a = tokenize(mini_corpus, mfcc_codebook, tmp_path / "a")
    b = tokenize(mini_corpus, mfcc_codebook, tmp_path / "b")
    assert [(s["path"], s["sha256"]) for s in a.shards] == [
        (s["path"], s["sha256"]) for s in b.shards
    ]
    again = tokenize(mini_corpus, mfcc_codebook, tmp_path / "a")  # into the same folder
    assert [s["sha256"] for s in again.shards] == [s["sha256"] for s in a.shards]


def test_skip_existing_appends_only_new_ids(mini_corpus, mfcc_codebook, tmp_path):
    out = tmp_path / "out"
    fr_only = ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs"), langs=("fr",))
    first = tokenize(mini_corpus, mfcc_codebook, out, manifest=fr_only)
    fr_files = {s["path"]: s["sha256"] for s in first.shards}
    second = tokenize(mini_corpus, mfcc_codebook, out, skip_existing=True)
    full = tokenize(mini_corpus, mfcc_codebook, tmp_path / "full")
    # Old shards untouched; the union equals a fresh full run, without duplicates.
    assert all({s["path"]: s["sha256"] for s in second.shards}[p] == h for p, h in fr_files.items())
    appended, fresh = read_tokens(out), read_tokens(tmp_path / "full")
    assert appended.num_rows == fresh.num_rows == len(set(appended.column("id").to_pylist()))

    def key(t):
        return sorted(zip(t.column("id").to_pylist(), t.column("tokens").to_pylist(), strict=True))

    assert key(appended) == key(fresh)
    assert second.counts["accepted"] == full.counts["accepted"]
    assert len(second.extra["runs"]) == 2


def test_codebook_mismatch_is_refused(mini_corpus, mfcc_codebook, tmp_path, capsys):
    cb = Codebook.load(str(mfcc_codebook))
    cb.with_metadata(encoder="whisper-base", layer=3, mode="unpadded").save(str(tmp_path / "wb"))
    args = [
        "tokenize",
        "--format",
        "fleurs",
        "--input",
        str(mini_corpus / "fleurs"),
        "--encoder",
        "mfcc",
    ]
    assert main([*args, "--codebook", str(tmp_path / "wb"), "--out", str(tmp_path / "o")]) == 2
    assert "fitted with encoder='whisper-base'" in capsys.readouterr().err
    # One folder, one codebook: a second codebook into the same folder is refused.
    other = Codebook(cb.centroids[:8]).with_metadata(
        **{k: cb.metadata[k] for k in ("encoder", "layer", "mode", "frame_rate")}
    )
    other.save(str(tmp_path / "k8"))
    assert (
        main(
            [*args, "--codebook", str(mfcc_codebook), "--out", str(tmp_path / "o"), "--langs", "fr"]
        )
        == 0
    )
    assert (
        main(
            [
                *args,
                "--codebook",
                str(tmp_path / "k8"),
                "--out",
                str(tmp_path / "o"),
                "--langs",
                "fr",
            ]
        )
        == 2
    )
    assert "new output folder" in capsys.readouterr().err


def test_covost_tokenize_keeps_translations(mini_corpus, mfcc_codebook, tmp_path):
    manifest = ManifestConfig(
        format="covost",
        input=str(mini_corpus / "covost/covost_v2.fr_en.tsv"),
        audio_root=str(mini_corpus / "cv/fr"),
    )
    index = tokenize(mini_corpus, mfcc_codebook, tmp_path / "out", manifest=manifest)
    rows = read_tokens(tmp_path / "out").to_pylist()
    assert index.counts["rejected"] == 0 and len(rows) == index.counts["accepted"] > 0
    assert all(
        r["translation"] and r["tgt_lang"] == "en" and r["corpus"] == "covost" and r["speaker"]
        for r in rows
    )


@pytest.mark.slow
def test_whisper_base_fit_and_tokenize(mini_corpus, tmp_path):
    """The real pretrained encoder through both jobs: codebook identity, 50 Hz frames."""
    from pipelines import fit_codebook

    fr = ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs"), langs=("fr",))
    encoder = EncoderConfig(name="whisper-base")
    fit_codebook.run(
        fit_codebook.FitCodebookJobConfig(
            manifest=fr, encoder=encoder, k=32, out=str(tmp_path / "cb"), downsample=2
        )
    )
    cb = Codebook.load(str(tmp_path / "cb"))
    assert (cb.metadata["encoder"], cb.metadata["layer"], cb.metadata["mode"]) == (
        "whisper-base",
        3,
        "unpadded",
    )
    assert (
        cb.dim == 512
        and cb.metadata["frame_rate"] == 25.0
        and cb.id.startswith("whisper-base-L3-k32-")
    )
    index = job.run(
        job.TokenizeJobConfig(
            manifest=fr,
            encoder=encoder,
            codebook=str(tmp_path / "cb"),
            out=str(tmp_path / "tok"),
            dedup=True,
        )
    )
    assert index.counts["rejected"] == 0
    for r in read_tokens(tmp_path / "tok").to_pylist():
        assert (
            sum(r["durations"]) == r["n_frames"] == -(-round(r["duration_s"] * 16000) // 640)
        )  # 25 Hz after pairing
        assert max(r["tokens"]) < 32


@pytest.mark.parametrize(
    "beam_args,pool",
    [
        ([], "auto"),
        (["--direct_num_workers=2", "--direct_running_mode=multi_threading"], "auto"),
        ([], "processes"),
    ],
)
def test_job_rows_equal_a_plain_per_clip_loop(
    mini_corpus, mfcc_codebook, tmp_path, beam_args, pool
):
    """The job's hot path (decode ahead on threads or processes, the model
    owning encoder and codebook, batches) changes no row: every shard row
    equals what reading, decoding, encoding one clip alone and assigning its
    frames gives, column by column, with one or two workers."""
    from datastore.records import AudioExample
    from kmeans.postprocess import frames_to_tokens
    from tokenizer.assign import token_row
    from tokenizer.audio import prepare
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders import build_encoder
    from tokenizer.manifests import read_manifest

    manifest = ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs"))
    config = job.TokenizeJobConfig(
        manifest=manifest, encoder=EncoderConfig(name="mfcc"), codebook=str(mfcc_codebook),
        out=str(tmp_path / "out"), dedup=True, decode_pool=pool,
    )  # fmt: skip
    job.run(config, beam_args)
    got = {r["id"]: r for r in read_tokens(tmp_path / "out").to_pylist()}
    codebook, encoder = Codebook.load(str(mfcc_codebook)), build_encoder("mfcc")
    expected = {}
    for example in read_manifest(manifest):
        assert isinstance(example, AudioExample)
        [(example, wave)] = prepare(example, AudioConfig())
        tokens = frames_to_tokens(codebook, encoder.encode([wave])[0], dedup=True)
        expected[example.id] = token_row(example, tokens, codebook.id, n_samples=len(wave))
    assert set(got) == set(expected)
    for key, row in expected.items():
        for column, value in row.items():
            want = value.tolist() if isinstance(value, np.ndarray) else value
            if column == "duration_s":
                assert got[key][column] == pytest.approx(want, rel=1e-6), (key, column)
            else:
                assert got[key][column] == want, (key, column)
