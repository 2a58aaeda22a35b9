"""The foundation every other package stands on: where data lives and what it
looks like there.

- ``storage``: every path is a URI (local, ``gs://``, ...), read and written
  atomically through one module;
- ``schema``: the Parquet schemas of token, bitext, reject and embedding shards,
  defined once;
- ``shards``: the one shard writer and reader, and the output folder's
  ``_index.json``;
- ``outlock``: one job per output folder;
- ``card``: the dataset card (``README.md``) that lets Hugging Face ``datasets``
  load a folder;
- ``records``: what travels between stages (an utterance, a reject and its
  closed set of reason codes);
- ``errors``: errors every layer may raise (``UsageError``).

Nothing here imports ``tokenizer``, ``kmeans``, ``trainer`` or ``pipelines``
(``tests/test_imports.py`` checks it); Beam only inside ``storage``, whose
``FileSystems`` gives every runner's file systems one interface.
"""
