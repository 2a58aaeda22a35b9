"""Beam jobs (one module per job), the ``speechtok`` CLI and shared options.

Job modules only wire transforms; the logic they run lives in the Beam-free
packages ``tokenizer``, ``kmeans`` and ``trainer``.
"""
