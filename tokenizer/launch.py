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
from datastore.identity import FeatureIdentity
from datastore.outfolder import FolderMismatch, check_folder_job, readable_index
from tokenizer.assign import check_codebook_fits_int16
from tokenizer.encoders.base import EncoderConfig
from tokenizer.manifests import ManifestConfig, SourcePart, plan_parts


class CodebookMismatch(ValueError):
    """The codebook was fitted on other features, or the folder holds another codebook."""


def row_settings(*, codebook, identity: FeatureIdentity, dedup: bool, audio) -> dict:
    """The settings that define a tokenize folder's rows (recorded in its index):
    rows made with other ones cannot sit in the same folder."""
    return {
        "codebook": codebook.id,
        "encoder": identity.as_dict(with_dim=False),
        "dedup": bool(dedup),
        "downsample": codebook.downsample,
        "sample_rate": audio.sample_rate,
        "min_seconds": audio.min_seconds,
        "max_seconds": audio.max_seconds,
        "split_long": audio.split_long,
    }


def recorded_settings(index: shards.Index) -> dict:
    """What an index says its rows were made with (older indexes: read from
    the job's config and codebook id)."""
    if index.settings:
        return index.settings
    config, audio = index.config or {}, (index.config or {}).get("audio") or {}
    old = {"codebook": index.extra.get("codebook"), "dedup": config.get("dedup")}
    old.update(
        {
            k: audio[k]
            for k in ("sample_rate", "min_seconds", "max_seconds", "split_long")
            if k in audio
        }
    )
    return {k: v for k, v in old.items() if v is not None}


def check_append(out: str, previous: shards.Index, settings: dict) -> None:
    """Refuse an append whose row-defining settings differ from the folder's."""
    before = recorded_settings(previous)
    changed = [k for k in settings if k in before and before[k] != settings[k]]
    if changed:
        said = ", ".join(f"{k}={before[k]!r} (now {settings[k]!r})" for k in changed)
        raise FolderMismatch(
            f"{out} holds rows made with {said}: --skip-existing appends only rows made the "
            "same way; use those settings or a new --out"
        )


@dataclass(frozen=True)
class TokenPlan:
    """What the launcher works out before the pipeline is built."""

    codebook: object  # kmeans.Codebook
    identity: FeatureIdentity  # the encoder's, from its config
    parts: list[SourcePart]  # the manifest's independently readable parts
    skip_ids: frozenset[str]  # appending: ids already in the folder
    first_index: dict[str, int]  # appending: first free shard number per partition folder
    previous: shards.Index | None  # appending: the index being extended
    settings: dict  # what defines the rows (recorded in the index; appends must match)


def check_identity(codebook_meta: dict, identity: FeatureIdentity) -> None:
    """Refuse a codebook fitted on different features (encoder, layer, mode)."""
    why = identity.mismatch(codebook_meta, "codebook was fitted")
    if why:
        raise CodebookMismatch(f"{why}; fit a codebook for these features")


def plan_tokens(
    *,
    codebook_dir: str,
    encoder: EncoderConfig,
    manifest: ManifestConfig,
    out: str,
    append: bool,
    dedup: bool = False,
    audio=None,
) -> TokenPlan:
    """Check the codebook against the encoder and the folder, then ready ``out``:
    appending after the run its index describes when ``append`` and there is
    one (its row-defining settings must match this run's), else fresh. A
    folder another command wrote is refused either way."""
    from kmeans import Codebook
    from tokenizer.audio_config import AudioConfig
    from tokenizer.encoders import describe_config
    from tokenizer.speech_model import check_codebook_dim

    codebook = Codebook.load(codebook_dir)
    check_codebook_fits_int16(codebook.k)
    identity = describe_config(encoder)
    check_identity(codebook.metadata, identity)
    check_codebook_dim(codebook.dim, identity.dim, codebook_dir)
    previous = readable_index(out)
    check_folder_job(out, previous, "tokenize")
    settings = row_settings(
        codebook=codebook, identity=identity, dedup=dedup, audio=audio or AudioConfig()
    )
    if previous is not None and previous.extra.get("codebook") not in (None, codebook.id):
        raise CodebookMismatch(
            f"{out} holds tokens of codebook {previous.extra['codebook']}, not {codebook.id}: "
            "a codebook change needs a new output folder"
        )
    kinds = (schema.TOKENS_DIR, schema.REJECTS_DIR)
    if append and previous is not None:
        check_append(out, previous, settings)
        point = outfolder.start_append(out, previous, kinds, id_kind=schema.TOKENS_DIR)
        skip_ids, first_index = point.skip_ids, point.first_index
    else:
        previous, skip_ids, first_index = None, frozenset(), {}
        outfolder.start_fresh(out, kinds)
    parts = plan_parts(manifest)
    return TokenPlan(codebook, identity, parts, skip_ids, first_index, previous, settings)


def plan_frames(
    *, encoder: EncoderConfig, manifest: ManifestConfig, out: str
) -> tuple[dict, list[SourcePart]]:
    """fit-codebook's launcher: ``(encoder identity, manifest parts)``, with
    ``out`` cleared of an earlier run's codebook, rejects and index."""
    from kmeans.codebook import CENTROIDS_FILE, METADATA_FILE
    from tokenizer.encoders import describe_config

    identity = describe_config(encoder)  # from configs: no weights loaded here
    parts = plan_parts(manifest)
    check_folder_job(out, readable_index(out), "fit-codebook")
    outfolder.start_fresh(out, (schema.REJECTS_DIR, METADATA_FILE, CENTROIDS_FILE))
    return identity, parts
