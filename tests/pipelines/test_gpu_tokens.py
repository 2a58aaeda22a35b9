"""GPU tokens against CPU tokens (``-m gpu``; skipped cleanly without CUDA).

Exact equality is not promised: GPU and CPU GEMMs round differently, so a
frame whose two nearest centroids are within rounding may flip. The bars:
assignment of the same features >= 99.9 % equal; the whole job's tokens on
CUDA vs CPU for one codebook >= 99.5 % equal in fp32; the default dtype on
CUDA may be bf16 only where bf16 tokens agree with fp32 on >= 95 % of frames.
"""

from __future__ import annotations

import numpy as np
import pytest

import kmeans
from pipelines import tokenize as job
from tests.reliability.helpers import read_rows
from tests.tokenizer.encoders.helpers import save_tiny_whisper
from tokenizer.encoders import build_encoder
from tokenizer.encoders.base import EncoderConfig
from tokenizer.manifests import ManifestConfig
from tokenizer.speech_model import SpeechModel, TokenTask

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return save_tiny_whisper(str(tmp_path_factory.mktemp("tiny-whisper")))


def _waves(corpus, n=24):
    from tokenizer.audio import prepare
    from tokenizer.audio_config import AudioConfig
    from tokenizer.manifests import read_manifest

    out = []
    for e in read_manifest(ManifestConfig(format="fleurs", input=str(corpus / "fleurs"))):
        result = prepare(e, AudioConfig())
        if isinstance(result, list):
            out += [w for _, w in result]
    return out[:n]


@pytest.fixture(scope="module")
def whisper_codebook(mini_corpus, whisper_dir, tmp_path_factory):
    spec = f"hf:{whisper_dir}"
    frames = np.concatenate(build_encoder(spec, layer=1).encode(_waves(mini_corpus)))
    folder = str(tmp_path_factory.mktemp("cb") / "whisper-k64")
    kmeans.fit(frames, 64, seed=0).with_metadata(encoder=spec, layer=1, mode="unpadded").save(
        folder
    )
    return folder


def test_gpu_assignment_equals_cpu_for_the_same_features(
    mini_corpus, whisper_dir, whisper_codebook
):
    codebook = kmeans.Codebook.load(whisper_codebook)
    feats = build_encoder(f"hf:{whisper_dir}", layer=1).encode(_waves(mini_corpus))
    x = np.concatenate(feats)
    on_gpu = codebook.assign_tensor(torch.from_numpy(x).cuda()).cpu().numpy()
    assert on_gpu.shape == (len(x),)
    assert (on_gpu == codebook.assign(x)).mean() >= 0.999


def test_job_tokens_on_cuda_agree_with_cpu(mini_corpus, whisper_dir, whisper_codebook, tmp_path):
    rows = {}
    for device in ("cpu", "cuda"):
        job.run(
            job.TokenizeJobConfig(
                manifest=ManifestConfig(format="fleurs", input=str(mini_corpus / "fleurs")),
                encoder=EncoderConfig(name=f"hf:{whisper_dir}", layer=1, device=device),
                codebook=whisper_codebook,
                out=str(tmp_path / device),
            )
        )
        rows[device] = {
            r["id"]: np.asarray(r["tokens"]) for r in read_rows(tmp_path / device, "tokens")
        }
    assert rows["cpu"].keys() == rows["cuda"].keys() and rows["cpu"]
    same = sum(int((rows["cpu"][k] == rows["cuda"][k]).sum()) for k in rows["cpu"])
    total = sum(len(v) for v in rows["cpu"].values())
    assert same / total >= 0.995


def test_default_cuda_dtype_is_bf16_only_where_it_agrees(
    mini_corpus, whisper_dir, whisper_codebook
):
    waves = _waves(mini_corpus)

    def tokens(dtype):
        config = EncoderConfig(name=f"hf:{whisper_dir}", layer=1, device="cuda", dtype=dtype)
        model = SpeechModel.load(config, TokenTask(codebook=whisper_codebook))
        return np.concatenate([t.tokens for t in model.run(waves)])

    agreement = float((tokens("bfloat16") == tokens("float32")).mean())
    default = EncoderConfig(name="x", device="cuda").dtype
    assert default == "float32" or agreement >= 0.95, (default, agreement)
