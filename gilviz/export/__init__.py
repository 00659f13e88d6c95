"""Pictures of a recording for other tools: a Perfetto trace (perfetto.py, no Textual), and the
screen as SVG or an asciicast (gilviz.tui.export, drawn by the app itself).

Every exporter is a collector (collect.py) fed by `replay`, so it sees what the report and the
live view see.
"""

from __future__ import annotations

import gzip
import os
from contextlib import contextmanager
from typing import IO, Iterator

from ..errors import UserError


@contextmanager
def new_file(path: str, force: bool = False, text: bool = True) -> Iterator[IO]:
    """A file to write an export to: never one that exists unless `force`; gzip'd for a .gz name;
    removed again if the export fails half-way, so no half-written file is left behind."""
    try:
        raw = open(path, "wb" if force else "xb")
    except FileExistsError:
        raise UserError(f"{path} exists; give another -o, or --force to write over it") from None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    stream: IO = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if path.endswith(".gz") else raw
    if text:
        import io

        stream = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
    ok = False
    try:
        yield stream
        stream.close()
        raw.close()
        ok = True
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    finally:
        if not ok:
            try:
                stream.close()
            except OSError:
                pass
            raw.close()
            try:
                os.unlink(path)
            except OSError:
                pass
