"""The end-of-run table of ``speechtok corpus synth``, from ``corpus.json`` alone.

Example::

    print(format_summary(json.load(open("D/corpus.json")), wall_s=42.0))
"""

from __future__ import annotations

from corpora.synth.layouts import SPLITS
from tokenizer import languages


def format_summary(corpus: dict, wall_s: float | None = None) -> str:
    """One row per language, then totals, speed (given the wall time) and exclusions."""
    columns = f"{'lang':<5} {'fleurs folder':<13} {'seen':<4} {'sent':>4} "
    columns += f"{'train/dev/test':>14} {'minutes':>8} {'cv clips':>8}"
    rule = "-" * len(columns)
    lines = [columns, rule]
    for short, entry in corpus["languages"].items():
        utterances = "/".join(str(entry["utterances"][s]) for s in SPLITS)
        minutes = sum(entry["seconds"].values()) / 60
        lines.append(
            f"{short:<5} {entry['fleurs']:<13} {'yes' if entry['seen'] else '':<4} "
            f"{sum(entry['sentences'].values()):>4} {utterances:>14} {minutes:>8.1f} "
            f"{entry.get('cv_clips', ''):>8}"
        )
    totals = corpus["totals"]
    lines += [
        rule,
        f"{totals['languages']} languages ({len(corpus['seen'])} seen), "
        f"{totals['utterances']} FLEURS utterances, {totals['hours']:.2f} h; "
        f"Common Voice: {totals['cv_clips']} clips, {totals['cv_seconds'] / 3600:.2f} h; "
        f"text: {corpus['text_source']}",
    ]
    if wall_s:
        audio_s = totals["seconds"] + totals["cv_seconds"]
        lines.append(f"wall time {wall_s:.1f} s: {audio_s / wall_s:.0f} s of audio per wall second")
    if corpus["failures"]:
        lines.append(f"{len(corpus['failures'])} recordings left out (corpus.json: failures)")
    # Languages espeak could have spoken (a voice and text exist) but does not.
    speakable = {lang.short for lang in languages.LANGUAGES if lang.espeak and lang.udhr}
    notable = {k: v for k, v in corpus["excluded"].items() if k in speakable}
    if notable:
        lines.append("excluded: " + "; ".join(f"{k}: {v}" for k, v in notable.items()))
    return "\n".join(lines)
