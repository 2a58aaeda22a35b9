"""``speechtok corpus synth``: a thin layer over :func:`synthesize_corpus`.

Example::

    speechtok corpus synth --out /tmp/mini --langs fr,de,sw,hi --per-lang 10
    speechtok corpus synth --out /tmp/mini-all --all --workers 2
"""

from __future__ import annotations

import argparse
import time

from corpora.synth.summary import format_summary
from corpora.synth.synth import SynthConfig, choose_languages, synthesize_corpus


def run_cli(args: argparse.Namespace, extra: list[str]) -> int:
    from datastore.errors import UsageError
    from datastore.settings import values

    try:
        config = SynthConfig(**values(SynthConfig, args))
        choose_languages(config)  # unknown or unusable languages are usage errors
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    start = time.perf_counter()
    corpus = synthesize_corpus(config)
    print(format_summary(corpus, time.perf_counter() - start))
    print(f"wrote {args.out} (corpus.json, fleurs/, cv/, covost/, wikimatrix/)")
    return 0
