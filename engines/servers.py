"""Start and stop Flink and Spark job servers (and a small Flink cluster) on free ports.

Three kinds, each a set of JVMs started from the Maven-resolved classpath
(:mod:`engines.maven`), each JVM in its own process group with its log in
the engine's work folder:

- ``flink``: Beam's ``FlinkJobServerDriver`` with ``--flink-master=[local]``:
  Flink's MiniCluster inside the job server's JVM;
- ``flink-cluster``: a real Flink session cluster, a JobManager JVM
  (``StandaloneSessionClusterEntrypoint``) and a TaskManager JVM
  (``TaskManagerRunner``) configured by :func:`flink_config` (every memory
  part set, as a standalone TaskManager requires), plus the job server
  pointed at its REST port;
- ``spark``: Beam's ``SparkJobServerDriver`` with ``local[N]``.

A job reaches any of them with :meth:`Engine.beam_args`: ``--runner
PortableRunner --job_endpoint localhost:P --environment_type LOOPBACK
--parallelism N`` (LOOPBACK: the Python SDK workers run in the submitting
process, so no Docker is needed).

Example::

    with start("flink", parallelism=2) as engine:
        speechtok_main(["tokenize", ..., *engine.beam_args()])
    # every JVM it started is gone here
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from engines.maven import EngineUnavailable, classpath, java

KINDS = ("flink", "flink-cluster", "spark")
# Java 17 closes JDK internals that Flink's and Spark's serializers reach into.
JAVA_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in (
        "java.lang",
        "java.lang.invoke",
        "java.lang.reflect",
        "java.io",
        "java.net",
        "java.nio",
        "java.text",
        "java.time",
        "java.util",
        "java.util.concurrent",
        "java.util.concurrent.atomic",
        "sun.nio.ch",
        "sun.nio.cs",
        "sun.security.action",
        "sun.util.calendar",
    )
]
FLINK_JOB_SERVER = "org.apache.beam.runners.flink.FlinkJobServerDriver"
SPARK_JOB_SERVER = "org.apache.beam.runners.spark.SparkJobServerDriver"
FLINK_JOBMANAGER = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
FLINK_TASKMANAGER = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Jvm:
    """One started JVM: its name, process and log file."""

    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace_s``."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Engine:
    """A running engine: where jobs go and the JVMs to stop."""

    kind: str
    job_port: int
    parallelism: int
    workdir: Path
    jvms: list[Jvm] = field(default_factory=list)
    rest_port: int | None = None  # flink-cluster: the JobManager's REST API
    remove_workdir: bool = False  # a folder start() made: logs and all go at stop()

    @property
    def job_endpoint(self) -> str:
        return f"localhost:{self.job_port}"

    def beam_args(self, parallelism: int | None = None) -> list[str]:
        """The flags that send a speechtok job here."""
        return [
            *("--runner", "PortableRunner"),
            *("--job_endpoint", self.job_endpoint),
            *("--environment_type", "LOOPBACK"),
            *("--parallelism", str(parallelism or self.parallelism)),
        ]

    def pids(self) -> list[int]:
        return [j.process.pid for j in self.jvms]

    def stop(self) -> None:
        for jvm in reversed(self.jvms):  # the job server first, the cluster last
            jvm.stop()
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def state(self) -> dict:
        return {
            "kind": self.kind,
            "job_endpoint": self.job_endpoint,
            "rest_port": self.rest_port,
            "pids": self.pids(),
            "workdir": str(self.workdir),
            "beam_args": self.beam_args(),
        }

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    kind: str,
    *,
    parallelism: int = 2,
    workdir: str | Path | None = None,
    timeout_s: float = 180,
    flink_master: str | None = None,
) -> Engine:
    """Start an engine of ``kind`` (:data:`KINDS`) and wait until it takes jobs.

    Raises :class:`~engines.maven.EngineUnavailable` without Java or Maven,
    ``RuntimeError`` (with the JVM's last log lines) when a JVM dies or does
    not listen within ``timeout_s``; whatever was started is stopped then.
    ``workdir``: where the JVMs' logs (``<name>.log``), configuration and
    staged artifacts go (default: a temporary folder, deleted at stop).
    ``flink_master``: for ``flink``, an existing Flink 1.19 cluster's
    ``HOST:REST_PORT`` instead of the MiniCluster (only the job server starts here).
    """
    if flink_master and kind != "flink":
        raise ValueError("flink_master applies to the flink kind only")
    if kind not in KINDS:
        raise ValueError(f"unknown engine {kind!r}; known: {', '.join(KINDS)}")
    jar_path = classpath("spark" if kind == "spark" else "flink")
    folder = Path(workdir or tempfile.mkdtemp(prefix=f"speechtok-{kind}-"))
    folder.mkdir(parents=True, exist_ok=True)
    engine = Engine(kind, free_port(), parallelism, folder, remove_workdir=workdir is None)
    try:
        if kind == "flink-cluster":
            _start_flink_cluster(engine, jar_path, timeout_s)
            master = f"--flink-master=localhost:{engine.rest_port}"
        elif kind == "flink":
            master = f"--flink-master={flink_master or '[local]'}"
        else:
            master = f"--spark-master-url=local[{parallelism}]"
        main_class = SPARK_JOB_SERVER if kind == "spark" else FLINK_JOB_SERVER
        server_args = [
            master,
            f"--job-port={engine.job_port}",
            f"--artifact-port={free_port()}",
            f"--expansion-port={free_port()}",
            f"--artifacts-dir={folder / 'artifacts'}",
        ]
        jvm = _launch(engine, "job-server", jar_path, main_class, server_args)
        _wait_for_port(jvm, engine.job_port, timeout_s)
    except BaseException:
        engine.stop()
        raise
    return engine


def _launch(
    engine: Engine,
    name: str,
    jar_path: str,
    main_class: str,
    args: list[str],
    jvm_options: tuple[str, ...] = (),
) -> Jvm:
    log = engine.workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [java(), *JAVA_OPENS, *jvm_options, "-cp", jar_path, main_class, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=engine.workdir,
            start_new_session=True,  # its own process group: stop() reaches its children
        )
    jvm = Jvm(name, process, log)
    engine.jvms.append(jvm)
    return jvm


def _wait_for_port(jvm: Jvm, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if jvm.process.poll() is not None:
            raise RuntimeError(f"{jvm.name} exited ({jvm.process.returncode}): {jvm.tail()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(f"{jvm.name} did not listen on port {port} in {timeout_s:.0f} s")


# A standalone TaskManager's memory parts (MB). Started directly (not by
# Flink's scripts) it needs every part set; the network buffers need 256 MB
# (64 MB failed a tokenize job: "Insufficient number of network buffers").
TASKMANAGER_MB = {
    "task.heap.size": 512,
    "task.off-heap.size": 64,
    "framework.heap.size": 128,
    "framework.off-heap.size": 128,
    "managed.size": 128,
    "network.min": 256,
    "network.max": 256,
    "jvm-metaspace.size": 256,
    "jvm-overhead.min": 192,
    "jvm-overhead.max": 192,
}


def taskmanager_jvm_options() -> tuple[str, ...]:
    """The JVM limits Flink's scripts would derive from :data:`TASKMANAGER_MB`."""
    mb = TASKMANAGER_MB
    heap = mb["framework.heap.size"] + mb["task.heap.size"]
    direct = mb["framework.off-heap.size"] + mb["task.off-heap.size"] + mb["network.max"]
    return (
        f"-Xmx{heap}m",
        f"-Xms{heap}m",
        f"-XX:MaxDirectMemorySize={direct}m",
        f"-XX:MaxMetaspaceSize={mb['jvm-metaspace.size']}m",
    )


def flink_config(rest_port: int, rpc_port: int, slots: int, tmp: Path) -> dict[str, str]:
    """A session cluster's ``config.yaml``: one TaskManager with ``slots`` slots."""
    return {
        "jobmanager.rpc.address": "localhost",
        "jobmanager.bind-host": "localhost",
        "jobmanager.rpc.port": str(rpc_port),
        "jobmanager.memory.process.size": "1024m",
        "rest.address": "localhost",
        "rest.bind-address": "localhost",
        "rest.port": str(rest_port),
        "taskmanager.host": "localhost",
        "taskmanager.bind-host": "localhost",
        "taskmanager.numberOfTaskSlots": str(slots),
        "taskmanager.cpu.cores": str(slots),
        **{f"taskmanager.memory.{k}": f"{v}m" for k, v in TASKMANAGER_MB.items()},
        "parallelism.default": str(slots),
        "io.tmp.dirs": str(tmp),
    }


def _start_flink_cluster(engine: Engine, jar_path: str, timeout_s: float) -> None:
    conf = engine.workdir / "conf"
    conf.mkdir(exist_ok=True)
    tmp = engine.workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    engine.rest_port = free_port()
    settings = flink_config(engine.rest_port, free_port(), engine.parallelism, tmp)
    (conf / "config.yaml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    args = [f"--configDir={conf}"]
    jobmanager = _launch(engine, "jobmanager", jar_path, FLINK_JOBMANAGER, args, ("-Xmx512m",))
    _wait_for_port(jobmanager, engine.rest_port, timeout_s)
    taskmanager = _launch(
        engine, "taskmanager", jar_path, FLINK_TASKMANAGER, args, taskmanager_jvm_options()
    )
    deadline = time.monotonic() + timeout_s
    while _registered_taskmanagers(engine.rest_port) < 1:
        for jvm in (jobmanager, taskmanager):
            if jvm.process.poll() is not None:
                raise RuntimeError(f"{jvm.name} exited ({jvm.process.returncode}): {jvm.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no TaskManager registered in {timeout_s:.0f} s")
        time.sleep(0.5)


def _registered_taskmanagers(rest_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://localhost:{rest_port}/taskmanagers", timeout=5) as r:
            return len(json.load(r).get("taskmanagers", []))
    except OSError:
        return 0


__all__ = ["KINDS", "Engine", "EngineUnavailable", "flink_config", "start"]
