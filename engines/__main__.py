"""``python -m engines``: Flink and Spark job servers for speechtok's jobs.

Commands::

    python -m engines resolve                 # Maven: the jars into ~/.m2 (once; make test runs it)
    python -m engines start flink             # prints the Beam flags; JVMs keep running
    python -m engines start flink-cluster --parallelism 4 --state-dir /tmp/fc
    python -m engines start flink --flink-master HOST:8081        # your Flink 1.19 cluster
    python -m engines stop --state-dir /tmp/fc
    python -m engines run spark -- speechtok tokenize --format fleurs ...   # start, run, stop

``start`` writes ``STATE_DIR/engine.json`` (default state folder:
``$TMPDIR/speechtok-engine``): the job endpoint, the flags and the JVMs' pids;
``stop`` ends those JVMs. ``run`` appends the flags to the command it runs and
stops the engine whatever the command's outcome; its exit status is the
command's. Without ``java``, ``resolve`` says so and exits 0 (the engine tests
then skip); ``start`` and ``run`` exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from engines.maven import EngineUnavailable, classpath, java
from engines.servers import KINDS, start

DEFAULT_STATE = Path(tempfile.gettempdir()) / "speechtok-engine"


def _resolve(args) -> int:
    try:
        java()
    except EngineUnavailable as exc:
        print(f"engines: {exc}: Flink and Spark are not available here", file=sys.stderr)
        return 0
    for engine in ("flink", "spark"):
        jars = classpath(engine, quiet=not args.verbose).split(os.pathsep)
        print(f"engines: {engine}: {len(jars)} jars resolved")
    return 0


def _start(args) -> int:
    state = Path(args.state_dir)
    if (state / "engine.json").exists():
        print(f"engines: {state} already holds a running engine (stop it first)", file=sys.stderr)
        return 1
    state.mkdir(parents=True, exist_ok=True)
    engine = start(
        args.kind, parallelism=args.parallelism, workdir=state, flink_master=args.flink_master
    )
    (state / "engine.json").write_text(json.dumps(engine.state(), indent=2))
    print(f"engines: {args.kind} takes jobs at {engine.job_endpoint} (logs in {state})")
    print(" ".join(engine.beam_args()))
    return 0


def _stop(args) -> int:
    path = Path(args.state_dir) / "engine.json"
    if not path.exists():
        print(f"engines: no engine recorded in {args.state_dir}", file=sys.stderr)
        return 1
    for pid in reversed(json.loads(path.read_text())["pids"]):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # each JVM leads its own process group
    path.unlink()
    print("engines: stopped")
    return 0


def _run(args) -> int:
    command = [c for c in args.command if c != "--"]
    if not command:
        print("engines run: give the command after --", file=sys.stderr)
        return 2
    with start(args.kind, parallelism=args.parallelism, flink_master=args.flink_master) as engine:
        return subprocess.run([*command, *engine.beam_args()]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    resolve = sub.add_parser("resolve", help="resolve the engines' jars with Maven")
    resolve.add_argument("-v", "--verbose", action="store_true", help="show Maven's output")
    for name in ("start", "run"):
        p = sub.add_parser(name, help=f"{name} an engine" + (" around a command" * (name == "run")))
        p.add_argument("kind", choices=KINDS)
        p.add_argument("--parallelism", type=int, default=2, help="task slots / local[N]")
        p.add_argument(
            "--flink-master",
            metavar="HOST:PORT",
            help="flink: submit to this cluster's REST endpoint (default: a MiniCluster)",
        )
        if name == "start":
            p.add_argument("--state-dir", default=str(DEFAULT_STATE))
        else:
            p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    stop = sub.add_parser("stop", help="stop the engine a start recorded")
    stop.add_argument("--state-dir", default=str(DEFAULT_STATE))
    args = parser.parse_args(argv)
    try:
        return {"resolve": _resolve, "start": _start, "stop": _stop, "run": _run}[args.action](args)
    except (EngineUnavailable, RuntimeError) as exc:
        print(f"engines: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
