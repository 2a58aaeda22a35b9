"""Registries that fill themselves: every module of a package is imported for
its ``@register_...`` decorators, so a new manifest reader or encoder is one
new file in its package, with no list to keep by hand.

Example::

    import_modules("tokenizer.manifests")   # every reader registers itself
"""

from __future__ import annotations

import importlib
import pkgutil


def import_modules(package: str) -> list[str]:
    """Import each module of ``package`` (not ``_private`` ones, not subpackages'
    insides); returns their names, in file-name order."""
    found = importlib.import_module(package)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(found.__path__)
        if not info.name.startswith("_") and not info.ispkg
    )
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
