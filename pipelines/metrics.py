"""The jobs' Beam counters: one namespace, incremented in transforms and read
back from a running or finished pipeline (progress lines, the summary)."""

from __future__ import annotations

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

NAMESPACE = "speechtok"


def counter(name: str):
    return Metrics.counter(NAMESPACE, name)


def counters(result) -> dict[str, int]:
    """Our counters from a pipeline (committed where the runner has them)."""
    out = {}
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except Exception:  # some runners do not report metrics
        return out
    for c in query["counters"]:
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(c.result or 0)
    return out
