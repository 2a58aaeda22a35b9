"""A finished Beam job's exit status, from its ``_index.json``.

A job that ran to the end is a success only if it produced output: exit 0
even with some rejects; exit 1 with one line when it found no input, when
every input record was rejected, or when more than ``--max-reject-fraction``
of them were. The job writes its rejects and index first either way, so the
reasons are on disk (``OUT/rejects/``) and in the summary printed above the
line. Kept apart from the jobs (no Beam, no pyarrow) so the CLI imports it
for free.

Example::

    reason = verdict(index.counts, index.rejects_by_reason, max_reject_fraction=0.1)
    if reason:
        from datastore.outlock import held_token

        index.mark_failed(out, reason, fence=held_token(out))  # readers refuse the folder
        raise JobFailed(reason)
"""

from __future__ import annotations

from collections.abc import Mapping

from datastore.errors import JobFailed

# What --input must name, per manifest format: the hint when nothing was found.
MAX_REASONS = 5


def _reasons(by_reason: Mapping[str, int]) -> str:
    ranked = sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{reason} {n}" for reason, n in ranked[:MAX_REASONS])
    if len(ranked) > MAX_REASONS:
        text += f", +{len(ranked) - MAX_REASONS} more"
    return text or "no reason recorded"


def verdict(
    counts: Mapping[str, int],
    rejects_by_reason: Mapping[str, int],
    *,
    max_reject_fraction: float | None = None,
    where: str = "",
    hint: str = "",
) -> str | None:
    """None when the run produced output, else the one-line reason it did not.

    ``counts``: this run's ``{"input", "accepted", "rejected"}``; ``where``: the
    output folder (named in the line); ``hint``: what the input should be.
    """
    n_in, accepted, rejected = counts["input"], counts["accepted"], counts["rejected"]
    rejects_at = f"; reject rows in {where}/rejects/" if where else ""
    if n_in == 0:
        return "no input records found" + (f" ({hint})" if hint else "")
    if accepted == 0:
        return (
            f"every input record was rejected ({rejected} of {n_in}): "
            f"{_reasons(rejects_by_reason)}{rejects_at}"
        )
    if max_reject_fraction is not None and rejected / n_in > max_reject_fraction:
        return (
            f"{rejected} of {n_in} input records rejected ({rejected / n_in:.1%}), more than "
            f"--max-reject-fraction {max_reject_fraction:g}: {_reasons(rejects_by_reason)}"
            f"{rejects_at}"
        )
    return None


def check(index, args) -> None:
    """Raise :class:`JobFailed` unless the run behind ``index`` produced output;
    the index then records the failure (``status: failed``), so that no reader
    takes the folder for a good one.

    ``index``: the job's :class:`datastore.shards.Index` (None: none written);
    ``args``: the command's parsed flags (``--out``, ``--input``, ``--format``,
    ``--max-reject-fraction``). An append run (``tokenize --skip-existing``)
    is judged on its own counts; one with nothing new to read is a success.
    """
    out = str(args.out).rstrip("/")
    if index is None:
        raise JobFailed(f"no _index.json was written to {out}")
    runs = index.extra.get("runs") or [index.counts]
    counts = runs[-1]
    if counts["input"] == 0 and len(runs) > 1:
        return  # --skip-existing found every id already tokenized
    fmt = getattr(args, "format", None)
    said = _input_hint(fmt)
    hint = f"--input {args.input}" + (f": {said}" if said else "")
    reason = verdict(
        counts,
        index.rejects_by_reason,
        max_reject_fraction=getattr(args, "max_reject_fraction", None),
        where=out,
        hint=hint,
    )
    if reason:
        from datastore.outlock import held_token

        index.mark_failed(out, reason, fence=held_token(out))  # readers refuse the folder
        raise JobFailed(reason)


def _input_hint(fmt: str | None) -> str:
    """What ``--format``'s reader says its input should be ("" for jobs without one)."""
    from tokenizer.manifests import available_formats, reader

    return reader(fmt).hint if fmt in available_formats() else ""
