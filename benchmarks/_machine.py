"""What every benchmark's JSON says about the machine it ran on.

One description, so figures from different benchmarks can be compared: the
load average matters as much as the CPU on a shared machine, and the torch
fields say which threads and which GPU (if any) the figures used.
"""

from __future__ import annotations

import os
import platform
from typing import Any


def machine(*, with_torch: bool = True) -> dict[str, Any]:
    """Platform, Python, cores and load average; torch version, threads and GPU
    unless ``with_torch`` is False (benchmarks that do not import torch)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
    if with_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info
