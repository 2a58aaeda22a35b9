import importlib


def test_top_level_packages_import():
    for name in ("datastore", "pipelines", "tokenizer", "corpora", "kmeans", "trainer", "engines"):
        assert importlib.import_module(name).__doc__
