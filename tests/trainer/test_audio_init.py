import json

import numpy as np
import pytest
import torch

from pipelines.cli import main
from trainer.audio_init import (
    AlignedInitConfig,
    alignment_counts,
    rows_from_counts,
    single_char_ids,
)
from trainer.train import Trainer, debug_config, train

ALPHABET = "abcde "


def _spoken_pairs(n: int, seed: int = 0, noise: float = 0.05, k: int = 16):
    """Texts over ALPHABET whose "speech" says char i as codes 2i, 2i+1 (+ noise codes 12..15)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        words = ["".join(rng.choice(list("abcde"), size=rng.integers(2, 6))) for _ in range(6)]
        text = " ".join(words)
        codes = np.concatenate(
            [[2 * ALPHABET.index(ch), 2 * ALPHABET.index(ch) + 1] for ch in text]
        )
        flip = rng.random(codes.size) < noise
        codes[flip] = rng.integers(12, k, size=int(flip.sum()))
        pairs.append((codes, text))
    return pairs


def test_alignment_recovers_which_character_each_code_says():
    counts = alignment_counts(_spoken_pairs(60), 16, list(ALPHABET))
    assert counts.shape == (16, len(ALPHABET))
    said = counts[:12].argmax(1)
    assert said.tolist() == [i // 2 for i in range(12)]  # codes 2i and 2i+1 say char i
    # Every code occurrence is spread over characters once: counts sum to the codes seen.
    assert counts.sum() == pytest.approx(sum(c.size for c, _ in _spoken_pairs(60)))


def test_alignment_only_reads_the_kept_prefix():
    codes, text = np.array([0, 1] * 10 + [2, 3] * 10), "a" * 10 + "b" * 10
    counts = alignment_counts([(codes, text)], 4, ["a", "b"], AlignedInitConfig(max_tokens=20))
    assert counts.sum() == pytest.approx(20)  # the 20 kept codes, all aligned to the "a" half
    assert counts[:, 1].sum() < 0.05 * counts[:, 0].sum()


def test_rows_from_counts_blend_and_rescale_character_rows():
    char_rows = np.array([[3.0, 0.0], [0.0, 1.0]])
    counts = np.array([[0.0, 5.0], [0.0, 0.0], [4.0, 4.0]])
    rows, seen = rows_from_counts(counts, char_rows, alpha=0.0)
    assert seen.tolist() == [True, False, True]
    target = 2.0  # the characters' mean norm
    np.testing.assert_allclose(rows[0], [0.0, target], rtol=1e-6)  # one character: its row
    np.testing.assert_allclose(rows[1], [0.0, 0.0])  # never seen: left to the caller
    blend = np.array([1.5, 0.5])  # equal weights at alpha 0
    np.testing.assert_allclose(rows[2], blend / np.linalg.norm(blend) * target, rtol=1e-6)
    # alpha 1 divides by p(char): the rarer character ("a": 4 of 13) gains weight over "b".
    damped, _ = rows_from_counts(counts, char_rows, alpha=1.0)
    assert damped[2, 0] / damped[2, 1] > rows[2, 0] / rows[2, 1]


def test_single_char_ids_keeps_characters_with_one_token():
    class Tok:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(text)] if text != "é" else [1, 2]}

    assert single_char_ids(Tok(), ["bab", "é a"]) == ([" ", "a", "b"], [32, 97, 98])


def test_trainer_starts_from_aligned_rows(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    random_rows = Trainer(debug_config(shards, str(tmp_path / "r"))).model.embedding.audio
    trainer = Trainer(debug_config(shards, str(tmp_path / "a"), audio_init="aligned"))
    model, rows = trainer.model, trainer.rows
    audio = model.embedding.audio.detach()
    used = np.unique(rows.values)
    unused = np.setdiff1d(np.arange(audio.shape[0]), used)
    assert unused.size > 0  # padded rows (k=100 -> 128) at least
    assert torch.equal(audio[unused], random_rows.detach()[unused])
    assert not torch.allclose(audio[used], random_rows.detach()[used])
    _, ids = single_char_ids(model.tokenizer, [t.lower() for t in rows.texts])
    char_norm = model.embedding.text.weight.detach()[ids].float().norm(dim=1).mean()
    torch.testing.assert_close(
        audio[used].norm(dim=1), char_norm.expand(used.size), rtol=1e-4, atol=1e-5
    )


def test_aligned_run_trains_and_resumes_like_any_other(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    run = tmp_path / "run"
    train(debug_config(shards, str(run), steps=2, audio_init="aligned"), stop_after=1)
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["audio_init"] == "aligned"
    summary = train(debug_config(shards, str(run), steps=2, audio_init="aligned"), resume=True)
    assert summary["step"] == 2 and np.isfinite(summary["last_loss"])


def test_runs_saved_before_audio_init_existed_still_resume(synthetic_shards, tmp_path):
    shards, _ = synthetic_shards
    run = tmp_path / "run"
    train(debug_config(shards, str(run), steps=2), stop_after=1)
    config = json.loads((run / "config.json").read_text())
    del config["train"]["audio_init"]
    (run / "config.json").write_text(json.dumps(config))
    assert train(debug_config(shards, str(run), steps=2), resume=True)["step"] == 2


def test_unknown_audio_init_is_refused(synthetic_shards, tmp_path):
    with pytest.raises(ValueError, match="audio_init"):
        debug_config(synthetic_shards[0], str(tmp_path), audio_init="zeros")


def test_cli_flags_reach_the_run_config(synthetic_shards, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--shards", synthetic_shards[0], "--llm", "debug", "--out", str(run)]
    argv += ["--steps", "1", "--batch-size", "4", "--audio-init", "aligned"]
    assert main([*argv, "--spread-out-weight", "0.1"]) == 0
    trained = json.loads((run / "config.json").read_text())["train"]
    assert trained["audio_init"] == "aligned" and trained["loss"]["spread_out_weight"] == 0.1
