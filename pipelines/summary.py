"""The end of a job: where the time went, the summary a user reads, and the
same figures in ``_index.json``.

Why per-stage times: on a GPU worker a user must see at once whether decoding
or the model limits a run. The stages are Beam counters in milliseconds that
the transforms add up (``time.read_ms``: manifest reading; ``time.decode_ms``:
decoding, summed over decode threads; ``time.decode_wait_ms``: the model's
thread waiting for decoded audio; ``time.model_ms``: encoder + codebook;
``time.write_ms``: shard writing) plus ``audio.accepted_ms``, the audio that
became rows. Busy times of parallel work can exceed the wall time.

Example::

    index = finish_run("tokenize", out, result, started=t0)   # prints, updates the index
"""

from __future__ import annotations

import time

from datastore import shards

STAGES = ("read", "decode", "decode_wait", "model", "write")


def run_timings(wall_s: float, counters: dict[str, int]) -> dict:
    """Wall time, audio, rate and per-stage seconds from a finished job's counters."""
    audio_s = counters.get("audio.accepted_ms", 0) / 1000
    rows = counters.get("encoded", 0)
    return {
        "wall_s": round(wall_s, 3),
        "audio_s": round(audio_s, 3),
        "audio_hours": round(audio_s / 3600, 4),
        "x_real_time": round(audio_s / wall_s, 1) if wall_s > 0 else None,
        "rows_per_s": round(rows / wall_s, 2) if wall_s > 0 else None,
        "stages_s": {
            stage: round(counters[f"time.{stage}_ms"] / 1000, 3)
            for stage in STAGES
            if f"time.{stage}_ms" in counters
        },
    }


def summary_lines(title: str, index: shards.Index | None, counters: dict, timings: dict) -> list:
    """The end-of-run table (counts, rejects by reason, shards, time)."""
    lines = [f"== {title} =="]
    if index is None:
        lines.append("no _index.json written")
    else:
        c = index.counts
        runs = index.extra.get("runs") or []
        if len(runs) > 1:  # an append: this run's records, then the folder's
            lines.append(f"{'':<12}{'this run':>10}{'folder':>10}   ({len(runs)} runs)")
            lines += [
                f"{name:<12}{runs[-1][name]:>10}{c[name]:>10}"
                for name in ("input", "accepted", "rejected")
            ]
        else:
            lines += [f"{name:<12}{c[name]:>10}" for name in ("input", "accepted", "rejected")]
        for reason, n in sorted(index.rejects_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {reason:<22}{n:>8}")
        kinds: dict[str, list[dict]] = {}
        for s in index.shards:
            kinds.setdefault(s["path"].split("/", 1)[0], []).append(s)
        for kind, group in sorted(kinds.items()):
            n_rows = sum(s["rows"] for s in group)
            n_bytes = sum(s["bytes"] for s in group)
            lines.append(
                f"{kind + ' shards':<16}{len(group):>6}   ({n_rows} rows, {n_bytes / 1e6:.2f} MB)"
            )
    time_line = f"{'time':<12}{timings['wall_s']:>9.1f} s wall"
    if timings["audio_s"]:
        time_line += (
            f"; {timings['audio_hours']:.2f} h audio, {timings['x_real_time']:,.0f}x real time, "
            f"{timings['rows_per_s']:,.1f} utt/s"
        )
    lines.append(time_line)
    stages = timings["stages_s"]
    if stages:
        lines.append(f"{'stages':<12}" + " | ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    return lines


def finish_run(
    job: str, out_dir: str, beam_counters: dict, *, started: float, title: str | None = None
) -> shards.Index | None:
    """Add the timings to the folder's ``_index.json`` (when the job wrote one),
    print the summary, return the index."""
    from datastore.outlock import held_token

    timings = run_timings(time.monotonic() - started, beam_counters)
    index = shards.Index.read(out_dir)
    if index is not None:
        index.extra["timings"] = timings
        index.write(out_dir, fence=held_token(out_dir))
    print("\n".join(summary_lines(title or f"{job} -> {out_dir}", index, beam_counters, timings)))
    return index
