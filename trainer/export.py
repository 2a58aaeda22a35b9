"""``speechtok export``: a trained run as a standalone Hugging Face model folder.

Written (all plain files, no pickle):

- ``config.json`` + ``model.safetensors``: the backbone (kept layers only)
  whose embedding table holds the text rows *and* the audio rows, audio token
  ``c`` at id ``audio_token_offset + c`` (``vocab_size`` grown to match);
  ``AutoModel.from_pretrained`` loads it, no GGUF package and no speechtok.
- the tokenizer with the audio tokens added as special tokens ``<a0>``,
  ``<a1>``... at exactly those ids;
- ``projection.safetensors`` (``weight``, ``bias``) and ``dual_encoder.json``:
  prefix template, pooling, normalisation, framing special ids, caps, the
  codebook and how audio became tokens (``tokens``, from the run);
- ``encode.py``: the reference snippet (transformers + torch + safetensors
  only) and ``README.md`` showing it; ``codebook/`` when the run has one.

Example::

    export("runs/a", "models/a")
    # then, without speechtok:  from encode import DualEncoder; DualEncoder("models/a")
"""

from __future__ import annotations

import json
import os
import tempfile

import torch

from datastore import storage
from trainer.provenance import CODEBOOK_DIR, CODEBOOK_FILES

AUDIO_TOKEN = "<a{}>"
EXPORT_FORMAT = "speechtok-dual-encoder-export/1"
SETTINGS_FILE = "dual_encoder.json"
PROJECTION_FILE = "projection.safetensors"

# The reference snippet, written as encode.py and shown in README.md. It must
# reproduce DualEncoder._pack + embed exactly (tests/trainer/test_export.py).
SNIPPET = '''\
"""Embed speech tokens and texts with an exported speechtok dual encoder.

Needs only torch, transformers and safetensors::

    enc = DualEncoder("path/to/export")
    text = enc.embed_text(["Bonjour"], ["fr"])          # [1, dim]
    speech = enc.embed_speech([[3, 17, 250]], ["fr"])    # audio-token ids -> [1, dim]
    (speech @ text.T).item()                            # dot product = the trained score
"""

import json
import os

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer


class DualEncoder:
    def __init__(self, path, device="cpu"):
        with open(os.path.join(path, "dual_encoder.json")) as f:
            self.cfg = json.load(f)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, dtype=torch.float32).to(device).eval()
        proj = load_file(os.path.join(path, "projection.safetensors"))
        self.proj = torch.nn.Linear(proj["weight"].shape[1], proj["weight"].shape[0])
        self.proj.load_state_dict(proj)
        self.proj.to(device)
        self.device = device

    def _row(self, body, lang, modality):
        """[specials] [lang] [modality] body [specials]; pooling starts after the prefix."""
        cfg = self.cfg
        prefix = cfg["prefix_template"].format(lang=lang, modality=modality)
        lead = cfg["head_ids"] + self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        return lead + list(body) + cfg["tail_ids"], len(lead)

    @torch.no_grad()
    def _embed(self, bodies, langs, modality, batch_size=32):
        out = []
        for i in range(0, len(bodies), batch_size):
            chunk = zip(bodies[i : i + batch_size], langs[i : i + batch_size])
            out.append(self.pooled(**self.pack([self._row(b, lang, modality) for b, lang in chunk])))
        return self.project(torch.cat(out))

    def pack(self, rows):
        """Rows of ``_row`` -> padded ``input_ids``, ``attention_mask`` and the
        ``pool_mask`` of the positions pooled (the content, after the prefix)."""
        width = max(len(r) for r, _ in rows)
        ids = torch.full((len(rows), width), self.cfg["pad_id"], dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        pool = torch.zeros((len(rows), width), dtype=torch.long)
        for j, (row, start) in enumerate(rows):
            ids[j, : len(row)] = torch.tensor(row)
            mask[j, : len(row)] = 1
            pool[j, 0 if self.cfg["pool_prefix"] or start == len(row) else start : len(row)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                "pool_mask": pool.to(self.device)}  # fmt: skip

    def pooled(self, input_ids, attention_mask, pool_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._pool(hidden, pool_mask)

    def project(self, pooled):
        emb = self.proj(pooled.float())
        return torch.nn.functional.normalize(emb, dim=-1) if self.cfg["normalize"] else emb

    def _pool(self, hidden, mask):
        pos = torch.arange(mask.shape[1], device=mask.device)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        if self.cfg["pooling"] == "last":
            return hidden[rows, torch.where(mask.bool(), pos, -1).amax(1).clamp_min(0)]
        if self.cfg["pooling"] == "first":
            first = torch.where(mask.bool(), pos, mask.shape[1]).amin(1)
            return hidden[rows, first.clamp_max(mask.shape[1] - 1)]
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def text_body(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.cfg["max_text_tokens"]]

    def speech_body(self, codes):
        """codes: audio-token ids of one utterance (0 <= c < codebook_size), as in the shards."""
        cap, name = self.cfg["max_speech_tokens"], self.cfg["audio_token"]
        return self.tokenizer.convert_tokens_to_ids([name.format(int(c)) for c in codes[:cap]])

    def embed_text(self, texts, langs):
        return self._embed([self.text_body(t) for t in texts], langs, "text")

    def embed_speech(self, codes, langs):
        """codes: audio-token ids per utterance (0 <= c < codebook_size), as in the shards."""
        return self._embed([self.speech_body(seq) for seq in codes], langs, "speech")
'''

# sentence-transformers loads the folder through this module (``modules.json``),
# with the snippet above pasted before it: the same tokens and vectors as
# DualEncoder, so as ``speechtok embed``. Without ``trust_remote_code=True``
# sentence-transformers refuses to load the folder (it never guesses a pooling).
ST_MODULE_FILE = "sentence_transformer_module.py"
ST_SNIPPET = '''

import re


class SpeechtokModule(torch.nn.Module):
    """A speechtok dual encoder as one sentence-transformers module.

        model = SentenceTransformer(path, trust_remote_code=True)
        model.encode(["Bonjour"], prompt_name="text-fr")            # or prompt="[fr] [text]"
        model.encode(["<a3><a17><a250>"], prompt_name="speech-fr")  # audio tokens (or "3 17 250")

    The prompt names the language and the modality (the prefix of every row);
    it is required: the model was trained with it.
    """

    def __init__(self, path):
        super().__init__()
        self.encoder = DualEncoder(path)
        self.backbone, self.projection = self.encoder.model, self.encoder.proj
        template = re.escape(self.encoder.cfg["prefix_template"])
        template = template.replace(re.escape("{lang}"), "(?P<lang>.+?)")
        self.prompt = re.compile(template.replace(re.escape("{modality}"), "(?P<modality>speech|text)"))

    @staticmethod
    def load(path):
        return SpeechtokModule(path)

    def save(self, path, *args, **kwargs):
        raise NotImplementedError("a speechtok export is written by `speechtok export`")

    def get_sentence_embedding_dimension(self):
        return self.encoder.cfg["embedding_dim"]

    def preprocess(self, inputs, prompt=None, **kwargs):
        found = self.prompt.fullmatch((prompt or "").strip())
        if not found:
            raise ValueError(
                f"prompt {prompt!r}: a speechtok model needs the language and the modality of its "
                "inputs: encode(..., prompt_name='text-fr') or prompt='"
                + self.encoder.cfg["prefix_template"].format(lang="fr", modality="text") + "'"
            )
        lang, modality = found["lang"], found["modality"]
        if modality == "speech":
            bodies = [self.encoder.speech_body([int(c) for c in re.findall(r"\\d+", x)]) for x in inputs]
        else:
            bodies = [self.encoder.text_body(x) for x in inputs]
        return self.encoder.pack([self.encoder._row(b, lang, modality) for b in bodies])

    def forward(self, features, **kwargs):
        self.encoder.device = features["input_ids"].device
        pooled = self.encoder.pooled(
            features["input_ids"], features["attention_mask"], features["pool_mask"]
        )
        features["sentence_embedding"] = self.encoder.project(pooled)
        return features
'''


def sentence_transformers_files(meta: dict) -> dict[str, str]:
    """``modules.json``, ``config_sentence_transformers.json`` (a prompt per
    trained language and modality; others by ``prompt=``) and the module file."""
    prompts = {
        f"{modality}-{lang}": meta["prefix_template"].format(lang=lang, modality=modality)
        for lang in meta["languages"]
        for modality in meta["modalities"]
    }
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformer_module.SpeechtokModule"}
    ]
    config = {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "dot"}
    return {
        "modules.json": json.dumps(modules, indent=2),
        "config_sentence_transformers.json": json.dumps(config, indent=2, sort_keys=True),
        ST_MODULE_FILE: SNIPPET + ST_SNIPPET,
    }


def _merged_embedding(model) -> tuple[torch.nn.Module, int, int]:
    """The LLM's embedding module carrying text + audio rows: ``(module, t, a)``."""
    from trainer.model import embedding_scale

    ext = model.embedding
    text = ext.text
    t, a = ext.text_vocab_size, int(ext.audio.shape[0])
    # ExtendedEmbedding scales audio rows by ext.scale; the module scales every row by
    # its own factor: store audio rows so that the module's factor gives ext.scale.
    factor = ext.scale / embedding_scale(text)
    with torch.no_grad():
        table = torch.cat([text.weight, ext.audio.to(text.weight.dtype) * factor], 0)
    text.weight = torch.nn.Parameter(table.detach().clone(), requires_grad=False)
    if hasattr(text, "num_embeddings"):
        text.num_embeddings = t + a
    return text, t, a


def _add_audio_tokens(tokenizer, t: int, a: int):
    from tokenizers import AddedToken

    if len(tokenizer) != t:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} entries but the embedding table {t} text rows: "
            "audio tokens would not land on their rows"
        )
    tokens = [AddedToken(AUDIO_TOKEN.format(c), special=True, normalized=False) for c in range(a)]
    tokenizer.add_tokens(tokens, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids([AUDIO_TOKEN.format(0), AUDIO_TOKEN.format(a - 1)])
    if ids != [t, t + a - 1]:
        raise ValueError(f"audio tokens got ids {ids}, expected [{t}, {t + a - 1}]")
    return tokenizer


def settings(model, run_config: dict, t: int, a: int) -> dict:
    """``dual_encoder.json``: what the snippet needs, and where the model came from."""
    from dataclasses import asdict

    cfg = asdict(model.config)
    return {
        "format": EXPORT_FORMAT,
        "prefix_template": cfg["prefix_template"],
        "modalities": ["speech", "text"],
        "pooling": cfg["pooling"],
        "pool_prefix": cfg["pool_prefix"],
        "normalize": cfg["normalize"],
        "max_speech_tokens": cfg["max_speech_tokens"],
        "max_text_tokens": cfg["max_text_tokens"],
        "head_ids": list(model._head),
        "tail_ids": list(model._tail),
        "pad_id": int(model.pad_id),
        "audio_token": AUDIO_TOKEN,
        "audio_token_offset": int(t),
        "audio_rows": int(a),
        "codebook_size": int(model.codebook_size),
        "embedding_dim": int(model.embed_dim),
        "logit_scale": float(model.scale().detach()),
        "codebook": run_config.get("codebook"),
        "tokens": run_config.get("tokens"),
        "llm": run_config.get("llm"),
        "run_step": run_config.get("step"),
        # The languages trained on (recorded by the run; older runs: --langs as given).
        "languages": sorted(
            (run_config.get("tokens") or {}).get("langs")
            or ((run_config.get("train") or {}).get("data") or {}).get("langs")
            or []
        ),
    }


def readme(meta: dict) -> str:
    langs = ", ".join(meta["languages"]) or "(every language of its training shards)"
    language = "".join(f"\n- {lang}" for lang in meta["languages"])
    return f"""---
library_name: transformers
language:{language or " []"}
tags:
- speechtok
- sentence-similarity
- speech-text-retrieval
---

# speechtok dual encoder

A speech/text dual encoder trained with speechtok (step {meta["run_step"]}): one
backbone (`{meta["llm"]["name"]}`, {meta["llm"]["layers_kept"]} layers) reads both
audio-token sequences and texts; {meta["pooling"]} pooling over the content positions,
a linear projection to {meta["embedding_dim"]} dimensions
{"and L2 normalisation " if meta["normalize"] else ""}give the embeddings, compared by
dot product. Trained languages: {langs}.

- Input layout: `[specials] {meta["prefix_template"]} body [specials]`, with `modality`
  `speech` or `text`; the prefix is tokenized on its own
  (`add_special_tokens=False`), then the body ids follow: text tokens
  (at most {meta["max_text_tokens"]}) or audio tokens (at most {meta["max_speech_tokens"]}).
- Audio tokens: `<a0>` ... `<a{meta["audio_rows"] - 1}>` are special tokens at ids
  {meta["audio_token_offset"]} ... {meta["audio_token_offset"] + meta["audio_rows"] - 1}
  (codebook `{(meta["codebook"] or {}).get("id")}`, k = {meta["codebook_size"]}).
  Audio becomes these ids with that codebook (in `codebook/` when present): see
  `dual_encoder.json` `tokens` for the encoder, layer, downsampling and dedup.
- `projection.safetensors`: the projection; `dual_encoder.json`: every setting above.

## Usage (torch + transformers only)

`encode.py` in this folder:

```python
{SNIPPET}
```

```python
from encode import DualEncoder
enc = DualEncoder(".")
scores = enc.embed_speech([[3, 17, 250]], ["fr"]) @ enc.embed_text(["Bonjour"], ["fr"]).T
```

## Usage (sentence-transformers)

The same vectors, through `{ST_MODULE_FILE}` (this folder's code, hence
`trust_remote_code=True`; without it sentence-transformers refuses the folder).
The prompt names the language and the modality; it is required:

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(".", trust_remote_code=True)
text = model.encode(["Bonjour"], prompt_name="text-fr")   # or prompt="[fr] [text]"
speech = model.encode(["<a3><a17><a250>"], prompt_name="speech-fr")
scores = speech @ text.T
```
"""


def export(run: str, out: str) -> dict:
    """Write the export folder ``out`` from the run folder ``run``; returns ``dual_encoder.json``.

    Everything is written to a temporary folder beside ``out`` and published
    with renames at the end (:func:`datastore.outfolder.publish_folder`): a
    failed export leaves no folder that looks complete, and an earlier export
    in ``out`` stays until the new one replaces it. The codebook is copied
    only after it loads (no pickle) with the sha256 the run recorded.
    """
    from safetensors.torch import save

    from datastore import outfolder
    from trainer.backbones import _quiet_transformers
    from trainer.checkpoint import load_run

    _check_out(out)
    model, tokenizer, run_config = load_run(run, device="cpu")
    codebook_files = _verified_codebook(run, run_config)
    backbone = model.backbone
    embedding, t, a = _merged_embedding(model)
    backbone.set_input_embeddings(embedding)
    backbone.config.vocab_size = t + a
    tokenizer = _add_audio_tokens(tokenizer, t, a)
    meta = settings(model, run_config, t, a)
    with outfolder.staging(out) as work, tempfile.TemporaryDirectory() as tmp:
        with _quiet_transformers():
            backbone.save_pretrained(tmp, safe_serialization=True)  # local folders only
            tokenizer.save_pretrained(tmp)
        for root, _, files in os.walk(tmp):
            for name in sorted(files):
                rel = os.path.relpath(os.path.join(root, name), tmp).split(os.sep)
                storage.write_bytes(
                    storage.join(work, *rel), storage.read_bytes(os.path.join(root, name))
                )
        projection = {
            k: v.detach().cpu().contiguous() for k, v in model.projection.state_dict().items()
        }
        storage.write_bytes(
            storage.join(work, PROJECTION_FILE),
            save(projection, metadata={"format": EXPORT_FORMAT}),
        )
        storage.write_text(storage.join(work, "encode.py"), SNIPPET)
        for name, text in sentence_transformers_files(meta).items():
            storage.write_text(storage.join(work, name), text)
        storage.write_text(storage.join(work, "README.md"), readme(meta))
        for name, data in codebook_files.items():
            storage.write_bytes(storage.join(work, CODEBOOK_DIR, name), data)
        # Last: the file that marks a folder as an export.
        storage.write_text(
            storage.join(work, SETTINGS_FILE), json.dumps(meta, indent=2, sort_keys=True)
        )
    return meta


def _verified_codebook(run: str, run_config: dict) -> dict[str, bytes]:
    """The run's codebook files, once they load (``.npy`` without pickle) and
    carry the sha256 the run was trained with; ``{}`` for a run without one."""
    from kmeans import Codebook

    tokens = run_config.get("tokens") or {}
    if not tokens.get("codebook_dir"):
        return {}
    folder = storage.join(run, tokens["codebook_dir"])
    files = {name: storage.read_bytes(storage.join(folder, name)) for name in CODEBOOK_FILES}
    try:
        codebook = Codebook.load(folder)
    except Exception as exc:  # a pickle, a header that lies, edited metadata
        raise ValueError(f"{folder}: not a usable codebook ({type(exc).__name__}: {exc})") from None
    want = (tokens.get("codebook") or run_config.get("codebook") or {}).get("sha256")
    if want and codebook.sha256 != want:
        raise ValueError(
            f"{folder} holds codebook {codebook.sha256[:12]}..., the run was trained with "
            f"{want[:12]}...: not the run's codebook"
        )
    return files


def _check_out(out: str) -> None:
    """An earlier export in ``out`` is replaced; any other non-empty folder is
    refused (the job's own lock file aside)."""
    from datastore.outlock import LOCK_NAME

    if storage.exists(storage.join(out, SETTINGS_FILE)):
        return
    held = [f for f in storage.list_files(out) if storage.basename(f) != LOCK_NAME]
    if storage.exists(out) and held:
        raise ValueError(f"{out} is not empty and holds no earlier export: choose another --out")
