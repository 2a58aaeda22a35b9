import subprocess
import sys

import pytest

from tokenizer.heap import fix_mmap_threshold


def test_threshold_is_pinned_in_a_fresh_process():
    """mallopt succeeds on glibc (our Linux CI), and the cached call is idempotent."""
    code = (
        "from tokenizer.heap import fix_mmap_threshold as f; print(f(), f(), f.cache_info().hits)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["True", "True", "1"]


@pytest.mark.slow  # loads the real Whisper base
def test_building_a_torch_encoder_pins_it():
    from tokenizer.encoders import build_encoder

    fix_mmap_threshold.cache_clear()
    build_encoder("whisper-base")
    assert fix_mmap_threshold.cache_info().currsize == 1
