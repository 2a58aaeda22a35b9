"""The premise, tested without speech: does the LLM's text side already align translations?

The paper's claim rests on the LLM mapping sentences of different languages
near each other. If the backbone does not, training speech rows into it
cannot inherit that for unseen languages. So, before any training: text ->
English retrieval on the mini-FLEURS sentences (the UDHR paragraphs of
:mod:`benchmarks.retrieval_full`'s corpus, the same languages, splits and
pools: each language's dev + test sentences, 20, chance 5 %), every sentence
embedded exactly as the dual encoder's text side embeds it (the
``[lang] [text]`` prefix, the backbone cut to ``L`` layers with its final
norm, masked mean pooling over the sentence) but with **no projection and no
training**, cosine similarity. Arms: Gemma 3 270M's weights
(``gemma-3-270m``) and the same architecture with the random weights the
experiment's ``random`` arm uses (``gemma-3-270m-random``), at each depth
``--depths``. Intervals: bootstrap over queries (strata: languages).

Usage::

    python -m benchmarks.premise                   # depths 2,4,9,18, both arms (~5 min)
    python -m benchmarks.premise --depths 4 --markdown
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks._harness import ROOT, write_json
from benchmarks._machine import machine
from benchmarks.retrieval_full import PIVOT, UNSEEN, default_seen

ARMS = {"llm": "gemma-3-270m", "random": "gemma-3-270m-random"}
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "premise.json"


def sentences(langs: tuple[str, ...]) -> dict[str, dict[int, str]]:
    """``{lang: {sentence id: text}}`` of the dev and test sentences the
    experiment's corpus speaks (the synthesizer's own selection, no audio)."""
    from corpora.synth.plan import assign_splits, select_ids
    from corpora.synth.synth import SynthConfig, choose_languages, load_texts

    config = SynthConfig(out="unused", langs=langs, voices=1)
    wanted = choose_languages(config)
    _, texts = load_texts(config, wanted)
    split_of = assign_splits(sorted(texts["en"]), config)
    out = {}
    for lang in wanted:
        chosen = select_ids(list(texts[lang.short]), split_of, config)
        out[lang.short] = {i: texts[lang.short][i] for i in chosen if split_of[i] != "train"}
    return out


def embed_depths(llm: str, texts: list[str], langs: list[str], depths: list[int]) -> dict:
    """``{depth: float32 [n, hidden]}``: the dual encoder's pooled text states, unprojected."""
    import torch

    from trainer.configs import DualEncoderConfig
    from trainer.model import build_model

    model = build_model(DualEncoderConfig(llm=llm, layers=max(depths)), codebook_size=64).eval()
    norm = model.backbone.norm  # what a backbone cut to L layers applies to layer L's output
    out: dict[int, list] = {d: [] for d in depths}
    with torch.inference_mode():
        for start in range(0, len(texts), 16):
            enc = model.encode_text(texts[start : start + 16], langs[start : start + 16])
            states = model.backbone(
                inputs_embeds=model.embedding(enc.input_ids),
                attention_mask=enc.attention_mask,
                output_hidden_states=True,
            ).hidden_states
            for d in depths:
                hidden = states[d] if d == max(depths) else norm(states[d])
                out[d].append(model._pool(hidden, enc.pool_mask).float())
    return {d: torch.cat(v).numpy() for d, v in out.items()}


def r_at_1(queries: np.ndarray, pool: np.ndarray) -> list[int]:
    """1 where query i's nearest pool row (cosine) is row i."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    p = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    return [int(i == j) for i, j in enumerate((q @ p.T).argmax(axis=1))]


def main(argv: list[str] | None = None) -> int:
    from trainer.intervals import bootstrap_stratified_mean

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depths", default="2,4,9,18", help="backbone layers kept (comma-separated)")
    p.add_argument("--json", default=str(DEFAULT_JSON))
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    depths = sorted(int(d) for d in args.depths.split(","))
    seen, unseen = default_seen(), UNSEEN
    texts = sentences((*seen, *unseen, PIVOT))
    english = texts[PIVOT]
    langs = [x for x in (*seen, *unseen) if x in texts]
    order = [(x, i) for x in langs for i in sorted(texts[x]) if i in english]
    flat = [texts[x][i] for x, i in order] + [english[i] for i in sorted(english)]
    flat_langs = [x for x, _ in order] + [PIVOT] * len(english)
    pool_index = {i: k for k, i in enumerate(sorted(english))}
    results = {}
    for arm, llm in ARMS.items():
        start = time.perf_counter()
        embedded = embed_depths(llm, flat, flat_langs, depths)
        for d in depths:
            vectors = embedded[d]
            queries, pool = vectors[: len(order)], vectors[len(order) :]
            per_lang: dict[str, list[int]] = {}
            for x in langs:
                rows = [k for k, (y, _) in enumerate(order) if y == x]
                ids = [order[k][1] for k in rows]
                sub_pool = pool[[pool_index[i] for i in ids]]  # the language's own 20 sentences
                per_lang[x] = r_at_1(queries[rows], sub_pool)
            cell = {}
            for name, group in (("seen", seen), ("unseen", unseen)):
                strata = {x: per_lang[x] for x in group if x in per_lang}
                mean = float(np.mean([np.mean(v) for v in strata.values()]))
                cell[name] = {
                    "r_at_1": mean,
                    "ci": bootstrap_stratified_mean(strata),
                    "queries": sum(len(v) for v in strata.values()),
                    "langs": len(strata),
                }
            cell["per_lang"] = {x: float(np.mean(v)) for x, v in per_lang.items()}
            results.setdefault(arm, {})[d] = cell
        print(f"{arm}: embedded {len(flat)} sentences in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)  # fmt: skip
    pool_size = len(english)
    print(f"\ntext -> English R@1 %, pool {pool_size} (chance {100 / pool_size:.0f} %), "
          "no projection, no training; [95 % bootstrap over queries]")  # fmt: skip
    header = "| layers | arm | seen R@1 % | unseen R@1 % |\n|---:|---|---:|---:|"
    lines = []
    for d in depths:
        for arm in ARMS:
            c = results[arm][d]
            cells = [
                f"{100 * c[g]['r_at_1']:.1f} [{100 * c[g]['ci'][0]:.1f}, {100 * c[g]['ci'][1]:.1f}]"
                f" ({c[g]['queries']} q)"
                for g in ("seen", "unseen")
            ]
            lines.append(f"| {d} | `{arm}` | {cells[0]} | {cells[1]} |")
    print(header + "\n" + "\n".join(lines))
    write_json(args.json, {"machine": machine(), "depths": depths, "pool": pool_size,
                           "results": results, "command": " ".join(["python -m benchmarks.premise", *(argv or sys.argv[1:])])})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
