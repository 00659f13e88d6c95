"""A recording is the Tick stream saved: gzip'd JSON lines, flushed as it goes.

Every half second the compressor is sync-flushed, so a crash or Ctrl-C loses at most
that much, and a truncated file still reads up to its last whole line. The same
encoding crosses the pipe from a sampler process to a live view.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

from .errors import UserError
from .model import GilTick, ThreadTick, Tick

FORMAT_VERSION = 1
FLUSH_EVERY_S = 0.5
_GZIP_MAGIC = b"\x1f\x8b"


def encode_tick(tick: Tick) -> dict[str, Any]:
    return {
        "k": "tick",
        "t": tick.t,
        "dt": tick.dt,
        "th": [list(th) for th in tick.threads],
        "g": [list(g) for g in tick.gils],
        "c": tick.core_busy,
    }


def decode_tick(rec: dict[str, Any]) -> Tick:
    return Tick(
        t=rec["t"],
        dt=rec["dt"],
        threads=[ThreadTick(*th) for th in rec["th"]],
        gils=[GilTick(*g) for g in rec["g"]],
        core_busy=rec["c"],
    )


class RecordingWriter:
    """Writes records to a file or pipe; usable from one thread at a time."""

    def __init__(self, out: str | os.PathLike | IO[bytes], compress: bool = True,
                 flush_every_s: float = FLUSH_EVERY_S):
        if isinstance(out, (str, os.PathLike)):
            try:
                self._file: IO[bytes] = open(out, "wb")
            except OSError as e:
                raise UserError(f"cannot write the recording {out}: {e.strerror}") from None
            self._owns = True
        else:
            self._file, self._owns = out, False
        self._zip = zlib.compressobj(1, zlib.DEFLATED, 31) if compress else None
        self._last_flush = time.monotonic()
        self.flush_every_s = flush_every_s
        self.closed = False

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        if self._zip is not None:
            data = self._zip.compress(data)
        if data:
            self._file.write(data)
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def write_tick(self, tick: Tick) -> None:
        self.write(encode_tick(tick))

    def flush(self) -> None:
        if self._zip is not None:
            self._file.write(self._zip.flush(zlib.Z_SYNC_FLUSH))
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._zip is not None:
                self._file.write(self._zip.flush(zlib.Z_FINISH))
            self._file.flush()
        finally:
            if self._owns:
                self._file.close()


def iter_records(source: str | os.PathLike | IO[bytes]) -> Iterator[dict[str, Any]]:
    """Yields every whole record; a truncated tail is ignored, a corrupt file refused."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "the stream"
    if isinstance(source, (str, os.PathLike)):
        try:
            f: IO[bytes] = open(source, "rb")
        except FileNotFoundError:
            raise UserError(f"no recording at {source}: check the path, or make one with `gilviz record`") from None
        except OSError as e:
            raise UserError(f"cannot read {source}: {e.strerror}") from None
    else:
        f = source
    try:
        yield from _iter_lines(f, name)
    finally:
        if f is not source:
            f.close()


def _iter_lines(f: IO[bytes], name: str) -> Iterator[dict[str, Any]]:
    # read1 returns what a pipe has now instead of waiting for a full buffer
    read = getattr(f, "read1", f.read)
    first = f.read(2)
    unzip = zlib.decompressobj(31) if first == _GZIP_MAGIC else None
    pending = b""
    chunk = first
    seen_header = False
    while True:
        if unzip is not None and chunk:
            try:
                chunk = unzip.decompress(chunk)
            except zlib.error:
                if not seen_header:
                    raise UserError(f"{name} is not a gilviz recording (corrupt data); record one with `gilviz record`") from None
                return  # damaged tail: keep what was read
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                if not seen_header:
                    raise UserError(f"{name} is not a gilviz recording; record one with `gilviz record`") from None
                return
            if not seen_header:
                if not isinstance(rec, dict) or rec.get("k") != "header":
                    raise UserError(f"{name} is not a gilviz recording (no header); record one with `gilviz record`")
                if rec.get("format", 0) > FORMAT_VERSION:
                    raise UserError(f"{name} was written by a newer gilviz (format {rec.get('format')}); upgrade gilviz to read it")
                seen_header = True
            yield rec
        chunk = read(1 << 16)
        if not chunk:
            break
    if not seen_header:
        raise UserError(f"{name} is not a gilviz recording (empty or no header); record one with `gilviz record`")


@dataclass
class Recording:
    """A whole recording in memory, for reports and replay."""

    header: dict[str, Any]
    ticks: list[Tick] = field(default_factory=list)
    threads: dict[int, dict[str, Any]] = field(default_factory=dict)
    processes: dict[int, dict[str, Any]] = field(default_factory=dict)  # latest word on each
    proc_history: list[dict[str, Any]] = field(default_factory=list)  # every word, in order
    stacks: list[dict[str, Any]] = field(default_factory=list)
    output: list[dict[str, Any]] = field(default_factory=list)
    stats: list[dict[str, Any]] = field(default_factory=list)
    progress: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    def add(self, rec: dict[str, Any]) -> None:
        kind = rec.get("k")
        if kind == "tick":
            self.ticks.append(decode_tick(rec))
        elif kind == "thread":
            known = self.threads.get(rec["tid"])
            if known is None or known.get("pid") != rec.get("pid"):
                self.threads[rec["tid"]] = rec
            else:
                known.update(rec)
        elif kind == "proc":
            self.processes[rec["pid"]] = rec
            self.proc_history.append(rec)
        elif kind == "stack":
            self.stacks.append(rec)
        elif kind == "out":
            self.output.append(rec)
        elif kind == "stats":
            self.stats.append(rec)
        elif kind == "progress":
            self.progress.append(rec)
        elif kind == "end":
            self.end = rec

    @property
    def truncated(self) -> bool:
        return self.end is None


def load(source: str | os.PathLike | IO[bytes]) -> Recording:
    records = iter_records(source)
    rec = Recording(header=next(records))
    for r in records:
        rec.add(r)
    return rec
