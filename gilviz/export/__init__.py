"""Pictures of a recording for other tools: a Perfetto trace (perfetto.py, no Textual), and the
screen as SVG or an asciicast (gilviz.tui.export, drawn by the app itself).

Every exporter is a collector (collect.py) fed by `replay`, so it sees what the report and the
live view see.
"""

from __future__ import annotations

import gzip
import os
import secrets
from contextlib import contextmanager
from typing import IO, Iterator

from ..errors import UserError
from ..recording import check_new_file, exists


@contextmanager
def new_file(path: str, force: bool = False, text: bool = True) -> Iterator[IO]:
    """A file to write an export to: never one that exists unless `force`; gzip'd for a .gz name.
    It is written beside `path` under a passing name and put in place only when whole, so an
    export that fails or is killed half-way leaves no half-written file, nor harms the one
    `force` would have replaced."""
    check_new_file(path, force)
    folder, name = os.path.split(os.path.abspath(path))
    partial = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial")
    try:
        raw = open(partial, "xb")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    stream: IO = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if path.endswith(".gz") else raw
    if text:
        import io

        stream = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
    placed = False
    try:
        yield stream
        stream.close()
        raw.close()
        _put_in_place(partial, path, force)
        placed = True
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None
    finally:
        if not placed:
            for close in (stream.close, raw.close):
                try:
                    close()
                except OSError:
                    pass
            try:
                os.unlink(partial)
            except OSError:
                pass


def _put_in_place(partial: str, path: str, force: bool) -> None:
    if force:
        os.replace(partial, path)
        return
    try:
        os.link(partial, path)  # fails if a file came at `path` meanwhile: still nothing written over
    except FileExistsError:
        raise UserError(exists(path)) from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise UserError(exists(path)) from None
        os.replace(partial, path)
        return
    os.unlink(partial)
