"""Flink and Spark for speechtok's Beam jobs on one machine: resolve, start, stop.

``python -m engines`` (see :mod:`engines.__main__`) or, from Python::

    from engines import start
    with start("flink", parallelism=2) as engine:      # or "flink-cluster", "spark"
        main(["tokenize", ..., *engine.beam_args()])

:mod:`engines.maven` resolves the runners' jars with Maven (poms in this
folder, jars in ``~/.m2``); :mod:`engines.servers` starts the JVMs on free
ports and stops them (process groups). Nothing here is imported by the jobs:
they only receive Beam's standard portable-runner flags.
"""

from engines.maven import EngineUnavailable, classpath
from engines.servers import KINDS, Engine, start

__all__ = ["KINDS", "Engine", "EngineUnavailable", "classpath", "start"]
