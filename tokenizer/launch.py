"""What a speech job's launcher settles before any worker starts.

``speechtok fit-codebook`` (:func:`plan_frames`) reads the encoder's identity
from its config, plans the manifest's parts and clears what an earlier run
left in its folder, so an old codebook cannot pass for this run's.

``speechtok tokenize`` must refuse, in seconds and before reading any audio,
a codebook fitted on other features (encoder, layer, mode, dimension), a
codebook too large for the int16 token column, and an output folder that
holds another codebook's tokens; then it readies the folder (fresh or
appending, :mod:`datastore.outfolder`) and plans the manifest's parts. The
encoder's identity is read from its config (no weights loaded).
"""

from __future__ import annotations

from dataclasses import dataclass

from datastore import outfolder, schema, shards
from tokenizer.assign import check_codebook_fits_int16
from tokenizer.encoders import EncoderConfig
from tokenizer.manifests import ManifestConfig, SourcePart, plan_parts


class CodebookMismatch(ValueError):
    """The codebook was fitted on other features, or the folder holds another codebook."""


@dataclass(frozen=True)
class TokenPlan:
    """What the launcher works out before the pipeline is built."""

    codebook: object  # kmeans.Codebook
    identity: dict  # the encoder's, from its config
    parts: list[SourcePart]  # the manifest's independently readable parts
    skip_ids: frozenset[str]  # appending: ids already in the folder
    first_index: dict[str, int]  # appending: first free shard number per partition folder
    previous: shards.Index | None  # appending: the index being extended


def check_identity(codebook_meta: dict, identity: dict) -> None:
    """Refuse a codebook fitted on different features (encoder, layer, mode)."""
    for key in ("encoder", "layer", "mode"):
        if codebook_meta.get(key) != identity.get(key):
            raise CodebookMismatch(
                f"codebook was fitted with {key}={codebook_meta.get(key)!r} but the encoder gives "
                f"{key}={identity.get(key)!r}; fit a codebook for these features"
            )


def plan_tokens(
    *, codebook_dir: str, encoder: EncoderConfig, manifest: ManifestConfig, out: str, append: bool
) -> TokenPlan:
    """Check the codebook against the encoder and the folder, then ready ``out``:
    appending after the run its index describes when ``append`` and there is
    one, else fresh."""
    from kmeans import Codebook
    from tokenizer.encoders import describe_config
    from tokenizer.speech_model import check_codebook_dim

    codebook = Codebook.load(codebook_dir)
    check_codebook_fits_int16(codebook.k)
    identity = describe_config(encoder)
    check_identity(codebook.metadata, identity)
    check_codebook_dim(codebook.dim, identity["dim"], codebook_dir)
    previous = shards.Index.read(out)
    if previous is not None and previous.extra.get("codebook") not in (None, codebook.id):
        raise CodebookMismatch(
            f"{out} holds tokens of codebook {previous.extra['codebook']}, not {codebook.id}: "
            "a codebook change needs a new output folder"
        )
    kinds = (schema.TOKENS_DIR, schema.REJECTS_DIR)
    if append and previous is not None:
        point = outfolder.start_append(out, previous, kinds, id_kind=schema.TOKENS_DIR)
        skip_ids, first_index = point.skip_ids, point.first_index
    else:
        previous, skip_ids, first_index = None, frozenset(), {}
        outfolder.start_fresh(out, kinds)
    return TokenPlan(codebook, identity, plan_parts(manifest), skip_ids, first_index, previous)


def plan_frames(
    *, encoder: EncoderConfig, manifest: ManifestConfig, out: str
) -> tuple[dict, list[SourcePart]]:
    """fit-codebook's launcher: ``(encoder identity, manifest parts)``, with
    ``out`` cleared of an earlier run's codebook, rejects and index."""
    from kmeans.codebook import CENTROIDS_FILE, METADATA_FILE
    from tokenizer.encoders import describe_config

    identity = describe_config(encoder)  # from configs: no weights loaded here
    parts = plan_parts(manifest)
    outfolder.start_fresh(out, (schema.REJECTS_DIR, METADATA_FILE, CENTROIDS_FILE))
    return identity, parts
