"""Paths inside the installed package and the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def package_path(relative: str | os.PathLike) -> Path:
    """A path relative to the ``lavis`` package (``configs/...``, ``assets/...``); absolute paths pass through."""
    p = Path(relative)
    return p if p.is_absolute() else PACKAGE_ROOT / p


def cache_root() -> Path:
    """Where downloads and generated data sets live: ``$LAVIS_CACHE_HOME`` or ``~/.cache/lavis``."""
    env = os.environ.get("LAVIS_CACHE_HOME")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "lavis"
