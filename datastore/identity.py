"""The two facts that tie audio tokens to audio, as typed records.

- :class:`FeatureIdentity`: which features a codebook was fitted on (encoder,
  layer, mode, frame rate, dimension). An encoder states it, a codebook and a
  tokenize folder record it, and a codebook fits an encoder only when the
  identities agree on :data:`MATCH_KEYS`.
- :class:`CodebookRef`: which codebook made a folder's tokens (id, size,
  sha256, where it lives, its token rate), as ``codebook.json``, a tokenize
  ``_index.json`` and the shards' ids record it.

Both are written as plain JSON (``as_dict``) and read back in one place
(``from_dict``, ``from_index``, ``from_codebook_json``), so no other module
spells their keys.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

# What a codebook and the features it assigns must share; the frame rate
# follows from them, the dimension is checked on its own (a clearer message).
MATCH_KEYS = ("encoder", "layer", "mode")
# {encoder}-L{layer}-k{k}-{sha8}: kmeans.Codebook.id
CODEBOOK_ID = re.compile(r"^(?P<encoder>.+)-L(?P<layer>-?\d+)-k(?P<k>\d+)-(?P<sha8>[0-9a-f]{8})$")


@dataclass(frozen=True, kw_only=True)
class FeatureIdentity:
    """The features an encoder gives: a codebook fitted on them depends on all of it."""

    encoder: str
    layer: int
    mode: str | None
    frame_rate: float  # encoder frames per second
    dim: int | None = None  # None where a record predates it

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer", int(self.layer))
        object.__setattr__(self, "frame_rate", float(self.frame_rate))
        if self.dim is not None:
            object.__setattr__(self, "dim", int(self.dim))

    def as_dict(self, *, with_dim: bool = True) -> dict:
        """The JSON form ``_index.json`` and run configs hold (a tokenize folder's
        row settings leave the dimension out: the codebook id pins it)."""
        out = {
            "encoder": self.encoder,
            "layer": self.layer,
            "mode": self.mode,
            "frame_rate": self.frame_rate,
        }
        return {**out, "dim": self.dim} if with_dim else out

    @classmethod
    def from_dict(cls, record: Mapping | None) -> FeatureIdentity | None:
        """The identity a JSON record holds (extra keys ignored), None when it holds none."""
        if not record or record.get("encoder") is None or record.get("frame_rate") is None:
            return None
        return cls(
            encoder=record["encoder"],
            layer=record.get("layer", -1),
            mode=record.get("mode"),
            frame_rate=record["frame_rate"],
            dim=record.get("dim"),
        )

    def mismatch(self, recorded: Mapping, made: str) -> str | None:
        """Why features of this identity cannot use what ``recorded`` (a codebook's
        metadata, a run's identity) describes, or None when they can. A key the
        record lacks is not compared (a codebook's metadata always holds all three,
        defaults included). ``made`` opens the message: "codebook was fitted"."""
        for key in MATCH_KEYS:
            if key in recorded and recorded[key] != getattr(self, key):
                return (
                    f"{made} with {key}={recorded[key]!r} but the encoder gives "
                    f"{key}={getattr(self, key)!r}"
                )
        return None

    def token_rate(self, downsample: int) -> float:
        """Tokens per second once ``downsample`` frames are averaged into one."""
        return self.frame_rate / downsample

    def describe(self) -> str:
        return f"`{self.encoder}`, layer {self.layer}, mode {self.mode}, {self.frame_rate} frames/s"


@dataclass(frozen=True, kw_only=True)
class CodebookRef:
    """A codebook as the folders it made refer to it."""

    id: str
    k: int
    sha256: str | None = None
    uri: str | None = None  # absolute location of the codebook folder, where known

    @classmethod
    def from_id(cls, codebook_id: str, sha256: str | None = None) -> CodebookRef:
        """Size from the id (the only place token shards state it); ValueError when the
        id is not a codebook id or the sha256 is not the one it names."""
        m = CODEBOOK_ID.match(codebook_id or "")
        if not m:
            raise ValueError(
                f"codebook id {codebook_id!r} is not {{encoder}}-L{{layer}}-k{{k}}-{{sha8}}"
            )
        if sha256 and not sha256.startswith(m["sha8"]):
            raise ValueError(f"codebook sha256 {sha256[:8]}... does not match id {codebook_id!r}")
        return cls(id=codebook_id, k=int(m["k"]), sha256=sha256)

    def index_fields(self) -> dict:
        """The keys a tokenize ``_index.json`` keeps in ``extra``."""
        return {"codebook": self.id, "codebook_sha256": self.sha256, "codebook_uri": self.uri}

    @classmethod
    def from_index(cls, extra: Mapping, config: Mapping | None = None) -> CodebookRef | None:
        """What a tokenize index says of its codebook (None: it names none). Older
        indexes hold no ``codebook_uri``: their ``--codebook`` as typed stands in."""
        if not extra.get("codebook"):
            return None
        uri = extra.get("codebook_uri") or (config or {}).get("codebook")
        ref = cls.from_id(extra["codebook"], extra.get("codebook_sha256"))
        return dataclasses.replace(ref, uri=uri if isinstance(uri, str) else None)

    def describe(self) -> str:
        return f"`{self.id}` (sha256 `{self.sha256}`)"
