"""Imports only go downward, and Beam stays where it belongs.

The packages are layers, lowest first: ``engines`` (job servers, apart),
``datastore`` (storage, schemas,
shards, records, errors), ``kmeans``, ``tokenizer`` (speech), ``corpora``
(synthesizer, bitext filter), ``trainer``, ``pipelines`` (Beam jobs and the CLI). A module may import its own package
and any package below it, at module level or lazily inside a function:
a lazy import hides a cycle from Python, not from a reader. Beam is imported
only by ``pipelines`` and the storage module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# engines (Flink/Spark job servers for the jobs) imports none of the others.
LAYERS = ["engines", "datastore", "kmeans", "tokenizer", "corpora", "trainer", "pipelines"]
BEAM_ALLOWED = {"datastore.storage"}


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    return found


def _nodes(tree: ast.AST):
    """Every node, less the bodies of ``if TYPE_CHECKING:`` (annotations only).
    ``if __name__ == "__main__":`` blocks count: a script's imports are edges too."""
    for node in ast.iter_child_nodes(tree):
        test = ast.unparse(node.test) if isinstance(node, ast.If) else ""
        if "TYPE_CHECKING" in test:
            yield from (n for child in node.orelse for n in [child, *_nodes(child)])
            continue
        yield node
        yield from _nodes(node)


# A "package.module:function" string: a command table's name dispatch (pipelines/cli.py).
_DISPATCH = re.compile(r"^((?:engines|datastore|kmeans|tokenizer|corpora|trainer|pipelines|benchmarks)"
                       r"(?:\.\w+)+):\w+$")  # fmt: skip


def _imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, lazy imports and name-string
    dispatch (``"pipelines.tokenize:run_cli"``) included."""
    names = set()
    for node in _nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found = _DISPATCH.match(node.value)
            if found:
                names.add(found[1])
    return names


def upward_imports(modules: dict[str, Path]) -> list[str]:
    rank = {package: i for i, package in enumerate(LAYERS)}
    bad = []
    for module, path in modules.items():
        own = module.split(".")[0]
        for name in _imports(path):
            top = name.split(".")[0]
            if top in rank and rank[top] > rank[own]:
                bad.append(f"{module} imports {name} ({top} is above {own})")
            beam_ok = own == "pipelines" or any(
                module == m or module.startswith(m + ".") for m in BEAM_ALLOWED
            )
            if top == "apache_beam" and not beam_ok:
                bad.append(f"{module} imports {name} (Beam outside pipelines)")
    return bad


def module_cycles(modules: dict[str, Path]) -> list[list[str]]:
    """Cycles among modules (``from pkg import mod`` counts as importing
    ``pkg.mod``); a package's ``__init__`` importing its own submodules is the
    usual re-export, not a cycle."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imports(path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        for node in _nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules and sub != module:
                        targets.add(sub)
        if path.name == "__init__.py":
            targets = {t for t in targets if not t.startswith(module + ".")}
        graph[module] = targets
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_imports_only_go_downward():
    assert upward_imports(_modules()) == []


def test_no_import_cycles():
    """Across the product and the benchmarks, scripts and dispatch tables included."""
    modules = _modules()
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        modules[".".join(path.relative_to(ROOT).with_suffix("").parts)] = path
    assert module_cycles(modules) == []


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """The walker on a made-up tree: an upward import, Beam in a library and a
    two-module cycle are all found."""
    for package, files in {
        "datastore": {"a.py": "from kmeans import b\n"},
        "kmeans": {"b.py": "def f():\n    from kmeans import c\n", "c.py": "import kmeans.b\n"},
        "tokenizer": {"d.py": "import apache_beam as beam\n"},
        "trainer": {},
        "pipelines": {},
    }.items():
        (tmp_path / package).mkdir()
        for name, text in files.items():
            (tmp_path / package / name).write_text(text)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    modules = _modules()
    assert upward_imports(modules) == [
        "datastore.a imports kmeans (kmeans is above datastore)",
        "tokenizer.d imports apache_beam (Beam outside pipelines)",
    ]
    assert module_cycles(modules) == [["kmeans.b", "kmeans.c", "kmeans.b"]]


def test_tests_do_not_import_benchmarks():
    """Benchmarks measure the code; a test that needs one of their values
    means that value belongs in the library."""
    found = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] == "benchmarks"
    ]
    assert found == []


@pytest.mark.parametrize("package", LAYERS)
def test_every_layer_exists(package):
    assert (ROOT / package / "__init__.py").is_file()


def _config_classes(paths) -> dict[str, str]:
    """``*Config`` class name -> the module that defines it."""
    defined = {}
    for path in paths:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                defined[node.name] = module
    return defined


def test_every_config_is_imported_from_where_it_is_defined():
    """One home per config (beside what it configures): no import through a
    module that merely re-exports it, in the product, tests and benchmarks."""
    paths = [p for p in ROOT.rglob("*.py") if not {".venv", "shared"} & set(p.parts)]
    defined = _config_classes(paths)
    assert {"TrainConfig", "EncoderConfig", "ManifestConfig", "AudioConfig"} <= set(defined)
    wrong = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                wrong += [
                    f"{path.relative_to(ROOT)}: {a.name} from {node.module}, "
                    f"defined in {defined[a.name]}"
                    for a in node.names
                    if a.name in defined and defined[a.name] != node.module
                ]
    assert not wrong, "\n".join(wrong)
