"""The compiled piece (gilviz/_gilloop.c) where `pip install .` could build it, else None: the
sampler then does the same in Python, with the same results. GILVIZ_PURE_PYTHON=1 asks for
Python anyway (a comparison, a suspected bug in the C). A build of another version of it (an
editable install not built again) is not used either."""

from __future__ import annotations

import os

COMPILED_VERSION = 4  # _gilloop.c's VERSION: 4, read_threads reads a parked thread carried over once it is still

try:
    from . import _gilloop as compiled  # type: ignore[attr-defined]
except ImportError:
    compiled = None
if os.environ.get("GILVIZ_PURE_PYTHON") or getattr(compiled, "VERSION", None) != COMPILED_VERSION:
    compiled = None
