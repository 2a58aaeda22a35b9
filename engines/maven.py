"""The engines' Java libraries: resolved by Maven into its own cache, never kept in git.

Why not Beam's job-server jars: Python Beam's ``--runner FlinkRunner`` /
``SparkRunner`` download a shaded ``beam-runners-*-job-server`` jar, which
some networks (ours among them) do not serve; the runner libraries they are
built from are on Maven Central. Each engine has a small pom beside this file
(``flink.pom.xml``: ``beam-runners-flink-1.19`` 2.62.0, the newest runner
version whose job service resolves here; ``spark.pom.xml``:
``beam-runners-spark-3`` 2.62.0 plus Spark 3.5.1, which the runner only
``provides``). :func:`classpath` runs ``mvn dependency:build-classpath`` once
per pom (~20 s and ~0.4 GB in ``~/.m2`` the first time) and caches the
result under the user's cache folder, keyed by the pom's sha256.

Example::

    cp = classpath("flink")   # "/root/.m2/repository/org/apache/beam/...jar:..."
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
POMS = {"flink": HERE / "flink.pom.xml", "spark": HERE / "spark.pom.xml"}
CACHE_ENV = "SPEECHTOK_ENGINES_CACHE"


class EngineUnavailable(RuntimeError):
    """Java or Maven is missing, or Maven could not resolve the libraries."""


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "speechtok"
    return Path(os.environ.get(CACHE_ENV, default / "engines"))


def java() -> str:
    """The ``java`` executable (``JAVA_HOME`` first, then ``PATH``)."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        raise EngineUnavailable("no java on this machine (install a JDK 11 or 17)")
    return found


def classpath(engine: str, *, quiet: bool = True) -> str:
    """The engine's classpath (resolving it with Maven the first time)."""
    pom = POMS[engine]
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    cached = cache_dir() / f"{engine}-{digest}.classpath"
    if cached.exists():
        return cached.read_text().strip()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EngineUnavailable("no mvn on this machine (Maven resolves the engines' jars)")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    command = [mvn, *(["-q"] if quiet else []), "-f", str(pom), "dependency:build-classpath"]
    proc = subprocess.run(
        [*command, f"-Dmdep.outputFile={tmp}"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0 or not tmp.exists():
        said = (proc.stdout + proc.stderr).strip().splitlines()
        raise EngineUnavailable(
            f"mvn could not resolve {pom.name}: {said[-1] if said else proc.returncode}"
        )
    tmp.replace(cached)
    return cached.read_text().strip()
