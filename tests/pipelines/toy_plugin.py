"""A manifest format and an encoder written as a user would add them: this one
new file and nothing else (``tests/pipelines/test_where_to_add.py``).

``toy-tsv``: a file of ``id<TAB>audio<TAB>text`` lines, all French test
speech; ``toy-energy``: two features per 10 ms frame (log energy, zero-crossing
rate), at 100 frames per second."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from datastore import storage
from datastore.identity import FeatureIdentity
from datastore.records import AudioExample, Reason
from tokenizer.encoders import register_encoder
from tokenizer.encoders.base import SAMPLE_RATE, Encoder, EncoderConfig
from tokenizer.manifests import ManifestConfig, register_reader
from tokenizer.manifests.lines import example_reject, iter_lines, line_reject

FORMAT, ENCODER = "toy-tsv", "toy-energy"
HOP = SAMPLE_RATE // 100


@register_reader(FORMAT)
class ToyTsvReader:
    HINT = "toy-tsv expects lines of id<TAB>audio<TAB>text"

    @staticmethod
    def sources(config: ManifestConfig) -> list[str]:
        return [config.input]

    @staticmethod
    def read(config: ManifestConfig, source: str) -> Iterator:
        root = config.audio_root or storage.dirname(source)
        for lineno, raw in iter_lines(source, config.max_line_bytes):
            fields = (raw or b"").decode("utf-8").rstrip("\n").split("\t")
            if len(fields) != 3:
                yield line_reject(source, lineno, Reason.MALFORMED_LINE, "want 3 tab fields")
                continue
            utt, audio, text = fields
            example = AudioExample(
                id=utt,
                uri=config.resolve_audio(root, audio),
                text=text,
                lang="fr",
                split="test",
                corpus="toy",
            )
            yield example_reject(example, source, lineno) or example


def describe_energy(config: EncoderConfig) -> FeatureIdentity:
    return FeatureIdentity(encoder=config.name, layer=0, mode=None, frame_rate=100.0, dim=2)


@register_encoder(ENCODER, describe=describe_energy)
class ToyEnergyEncoder(Encoder):
    uses_torch = False

    def __init__(self, config: EncoderConfig):
        self.config = config
        self.frame_rate, self.dim = 100.0, 2

    def n_frames(self, n_samples: int) -> int:
        return -(-self._check_n_samples(n_samples) // HOP)

    def _encode_batch(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for clip in clips:
            n = self.n_frames(len(clip))
            frames = np.zeros((n, HOP), np.float32)
            frames.flat[: len(clip)] = clip
            energy = np.log(np.mean(frames**2, axis=1) + 1e-8)
            crossings = np.mean(np.abs(np.diff(np.sign(frames), axis=1)) > 0, axis=1)
            out.append(np.stack([energy, crossings], axis=1).astype(np.float32))
        return out
