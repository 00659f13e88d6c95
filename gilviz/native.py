"""The compiled piece (gilviz/_gilloop.c) where `pip install .` could build it, else None: the
sampler then does the same in Python, with the same results. GILVIZ_PURE_PYTHON=1 asks for
Python anyway (a comparison, a suspected bug in the C)."""

from __future__ import annotations

import os

try:
    from . import _gilloop as compiled  # type: ignore[attr-defined]
except ImportError:
    compiled = None
if os.environ.get("GILVIZ_PURE_PYTHON"):
    compiled = None
