"""A recording: the record stream (stream.py) saved as gzip'd JSON lines, flushed as it goes.

The header is a gzip member of its own, then every half second the compressed stream ends a
member (with its own checksum) and starts another, so a crash or Ctrl-C loses at most that
much, a truncated file reads up to its last whole member, and a damaged byte is caught in
its member: gzip's one checksum at the end of a single member would let a flip that decodes
to other valid text (a digit for a digit) through unseen. The same
encoding, uncompressed, crosses the pipe from a sampler process to a live view.
This module is file I/O only: what the records mean is stream.py's, what is made of
them is a collector's (collect.py).
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import zlib
from typing import IO, Any, Iterator

from .errors import UserError
from .stream import FORMAT_VERSION, Compare, Decoder, End, Header, Record, Tick, decode_header, well_formed

FLUSH_EVERY_S = 0.5
MEMBER_MAX = 1 << 20  # text in a member: it ends at a flush, or once it holds this much
_GZIP_MAGIC = b"\x1f\x8b"

try:  # a tick of 1000 threads encodes in a quarter of the time, and decodes in a fifth
    import orjson
except ImportError:  # pragma: no cover - a dependency; the standard library's json does the same, slower
    orjson = None  # type: ignore[assignment]


def _plain(obj: Any) -> Any:
    """orjson hands over what it does not know: a tick's rows are NamedTuples."""
    if isinstance(obj, tuple):
        return tuple(obj)
    raise TypeError(f"{type(obj).__name__} is not a record field")


def encode_line(wire: dict[str, Any]) -> bytes:
    """One record as a line of JSON."""
    if orjson is not None:
        try:
            return orjson.dumps(wire, default=_plain, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        except TypeError:  # an integer past 64 bits, say: json writes what orjson will not
            pass
    return (json.dumps(wire, separators=(",", ":")) + "\n").encode()


def decode_line(line: bytes) -> Any:
    """A line of JSON; raises ValueError if it is none."""
    if orjson is not None:
        try:
            return orjson.loads(line)
        except ValueError:  # NaN, say, which json reads (and earlier gilviz wrote)
            pass
    return json.loads(line)


def exists(path: str) -> str:
    return f"{path} exists; give another file, or --force to write over it"


def check_new_file(path: str, force: bool) -> None:
    """What makes a file to be written (a recording, an export) refused before anything is made:
    a folder at its name, a file there without `force`, no folder to write it in."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder; give a file's name")
    if os.path.lexists(path) and not force:
        raise UserError(exists(path))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"cannot write {path}: no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"cannot write {path}: {folder} is not writable")


class RecordingWriter:
    """Writes records to a file or pipe; usable from one thread at a time.

    A write that fails (disk full, a closed pipe) never raises into the thread that wrote:
    the writer keeps the error, drops what comes after, and sets `failed`, so the session
    can end its target and say why. What was flushed before stays readable.
    """

    def __init__(self, out: str | os.PathLike | IO[bytes], compress: bool = True,
                 flush_every_s: float = FLUSH_EVERY_S, force: bool = False):
        if isinstance(out, (str, os.PathLike)):
            self.name = str(out)
            check_new_file(self.name, force)
            try:
                self._file: IO[bytes] = open(out, "wb" if force else "xb")
            except FileExistsError:  # (came since the check)
                raise UserError(exists(self.name)) from None
            except OSError as e:
                raise UserError(f"cannot write the recording {out}: {e.strerror}") from None
            self._owns = True
        else:
            self._file, self._owns, self.name = out, False, "the stream"
        self.compress = compress
        # A member's text waits here till the member ends, and is compressed in one call: the
        # compressor's tables, cold again at every tick after the sampler slept, cost three
        # times as much compressed a tick at a time.
        self._text: list[bytes] = []
        self._member_bytes = 0  # bytes of text since the member began
        self._last_flush = time.monotonic()
        self.flush_every_s = flush_every_s
        self.closed = False
        self.error: OSError | None = None
        self.failed = threading.Event()
        self.flushed = False  # something reached the file

    def write(self, record: Record | Compare, run: int | None = None) -> None:
        """One record; `run` tags it with the run it belongs to in a comparison."""
        if self.error is not None:
            return
        wire = record.to_wire()
        if run is not None:
            wire["run"] = run
        data = encode_line(wire)
        try:
            if self.compress:
                self._member_bytes += len(data)
                self._text.append(data)
            else:
                self._file.write(data)
            if (time.monotonic() - self._last_flush >= self.flush_every_s or not self.flushed
                    or self._member_bytes >= MEMBER_MAX or isinstance(record, (Header, End))):
                # (the header alone first: a reader knows the file's members from it; a run's start
                # and end at once: a comparison killed as run B starts keeps run A whole, and B begun)
                self._flush()
        except OSError as e:
            self._fail(e)

    def _end_member(self) -> None:
        if self._text:
            text, self._text, self._member_bytes = b"".join(self._text), [], 0
            member = _member()
            self._file.write(member.compress(text) + member.flush(zlib.Z_FINISH))

    def _flush(self) -> None:
        self._end_member()
        self._file.flush()
        self._last_flush = time.monotonic()
        self.flushed = True

    def flush(self) -> None:
        if self.error is None:
            try:
                self._flush()
            except OSError as e:
                self._fail(e)

    def _fail(self, error: OSError) -> None:
        self.error = error
        self.failed.set()

    @property
    def why(self) -> str:
        """The failure in words, for the user."""
        e = self.error
        if e is None:
            return ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if e.errno == errno.EFBIG:
            return "the file grew past the size allowed (ulimit -f)"
        return e.strerror or str(e)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.error is None:
                self._end_member()
                self._file.flush()
        except OSError as e:
            self._fail(e)
        finally:
            if self._owns:
                try:
                    self._file.close()
                except OSError as e:  # the last buffered bytes did not fit
                    if self.error is None:
                        self._fail(e)


class Damage:
    """Counts records skipped as damaged while reading (a recording cut short is not damage)."""

    def __init__(self) -> None:
        self.records = 0
        self.tail = False  # the data ends in damage: what follows it was lost


def iter_records(source: str | os.PathLike | IO[bytes], damage: Damage | None = None) -> Iterator[dict[str, Any]]:
    """Yields every whole, well-formed record; a truncated or damaged tail is read up to the
    damage, records of the wrong shape are skipped (and counted in `damage`), a file that is
    no recording is refused."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "the stream"
    if isinstance(source, (str, os.PathLike)):
        try:
            f: IO[bytes] = open(source, "rb")
        except FileNotFoundError:
            raise UserError(f"no recording at {source}: check the path, or make one with `gilviz record`") from None
        except IsADirectoryError:
            raise UserError(f"{source} is a folder, not a recording") from None
        except OSError as e:
            raise UserError(f"cannot read {source}: {e.strerror}") from None
    else:
        f = source
    try:
        yield from _iter_lines(f, name, damage if damage is not None else Damage())
    finally:
        if f is not source:
            f.close()


OUT_MAX = 1 << 18  # bytes of text uncompressed at a time
HELD_MAX = 1 << 22  # text of a member held until its checksum is read (longer: given unchecked)
RAW_MAX = 1 << 22  # compressed bytes of one member, more than any member gilviz writes (MEMBER_MAX of text)


def _member():
    return zlib.compressobj(1, zlib.DEFLATED, 31)


def _salvage(unzip, data: bytes) -> bytes:
    """What a damaged compressed chunk holds before the damage, fed a little at a time."""
    out = []
    for i in range(0, len(data), 256):
        try:
            out.append(unzip.decompress(data[i : i + 256]))
        except zlib.error:
            break
    return b"".join(out)


def _holds_a_member(data: bytes) -> bool:
    """Does a whole gzip member, its checksum right, begin somewhere after the start of `data`?"""
    at = data.find(_GZIP_MAGIC + b"\x08", 1)
    while at >= 0:
        unzip = zlib.decompressobj(31)
        try:
            unzip.decompress(data[at:])
            if unzip.eof:
                return True
        except zlib.error:
            pass
        at = data.find(_GZIP_MAGIC + b"\x08", at + 1)
    return False


def _iter_lines(f: IO[bytes], name: str, damage: Damage) -> Iterator[dict[str, Any]]:
    # read1 returns what a pipe has now instead of waiting for a full buffer
    read = getattr(f, "read1", f.read)
    first = f.read(2)
    unzip = zlib.decompressobj(31) if first == _GZIP_MAGIC else None
    pending = b""
    seen_header = False

    members = 0  # gzip members read whole and checked
    held: list[bytes] = []  # text of the member being read, not yet checked
    held_size = 0
    raw: list[bytes] = []  # what was read of the member being read, compressed (up to RAW_MAX)
    raw_size = 0

    def texts(chunk: bytes) -> Iterator[bytes]:
        """What a chunk holds, uncompressed at most OUT_MAX at a time (a recording compresses a
        hundredfold: one read would otherwise be many megabytes at once). Once a file shows it
        is made of members, a member's text is given only once its checksum holds."""
        nonlocal unzip, members, held, held_size, raw, raw_size
        if unzip is None:
            yield chunk
            return
        if raw_size < RAW_MAX:
            raw.append(chunk)
        raw_size += len(chunk)
        while chunk:
            before = unzip.copy() if not members else None  # (what _salvage starts from)
            try:
                out = unzip.decompress(chunk, OUT_MAX)
                chunk = unzip.unconsumed_tail
            except zlib.error:
                if not seen_header and not pending and not members:
                    raise UserError(f"{name} is not a gilviz recording (corrupt data); record one with `gilviz record`") from None
                damage.tail = True
                if before is not None:  # one member so far (as gilviz wrote before members): up to the damage
                    yield _salvage(before, chunk)
                return  # (else the damaged member, held, is dropped whole)
            if members and held_size < HELD_MAX:
                held.append(out)
                held_size += len(out)
            else:  # (one member past HELD_MAX is given unchecked, in order)
                if held:
                    yield b"".join(held)
                    held = []
                yield out
            if unzip.eof:
                members += 1
                yield b"".join(held)
                held, held_size = [], 0
                chunk, unzip = unzip.unused_data, zlib.decompressobj(31)
                raw, raw_size = [chunk], len(chunk)

    def all_texts() -> Iterator[bytes]:
        # (a last member without its end is left out, unchecked: cut short by a kill after the last
        # flush, or damaged so that it reads to the end of the file, which is then told as damage)
        chunk = first
        while chunk:
            yield from texts(chunk)
            if damage.tail:
                return
            chunk = read(1 << 16)
        if unzip is not None and members and raw_size and not unzip.eof:
            # A member cut short by a kill ends the file; one damaged where it ends (its end-of-block
            # code, say) can read on through the members after it to the end of the file: then a
            # whole member lies inside what it read, and the file is damaged.
            if raw_size > RAW_MAX or _holds_a_member(b"".join(raw)):
                damage.tail = True

    for text in all_texts():
        pending += text
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if not line:
                continue
            try:
                rec = decode_line(line)
            except ValueError:
                if not seen_header:
                    raise UserError(f"{name} is not a gilviz recording; record one with `gilviz record`") from None
                damage.tail = True
                return
            if not seen_header:
                _check_header(rec, name)
                seen_header = True
            elif not well_formed(rec):
                damage.records += 1
                continue
            yield rec
    if not seen_header:
        raise UserError(f"{name} is not a gilviz recording (empty or no header); record one with `gilviz record`")


def _check_header(rec: Any, name: str) -> None:
    if not isinstance(rec, dict) or rec.get("k") not in ("header", "compare"):
        raise UserError(f"{name} is not a gilviz recording (no header); record one with `gilviz record`")
    fmt = rec.get("format", 0)
    if type(fmt) is not int:
        raise UserError(f"{name} is not a gilviz recording (its header's format is {fmt!r}, not a number)")
    if fmt > FORMAT_VERSION:
        raise UserError(f"{name} was written by a newer gilviz (format {fmt}); upgrade gilviz to read it")
    if rec.get("k") == "header" and type(rec.get("pid")) is not int:  # (every header gilviz writes names it)
        raise UserError(f"{name} is not a gilviz recording (its header names no process)")
    if not isinstance(rec.get("cpus", 0), (int, type(None))):
        raise UserError(f"{name} is not a gilviz recording (its header is damaged)")


class RunNotBegun(UserError):
    """A run of a comparison the file holds nothing of: the recording ended (a kill, Ctrl-C, a
    full disk) before that run began. Readers of the whole file say so and go on with the other."""


def read(source: str | os.PathLike | IO[bytes], damage: Damage | None = None, run: int = 0) -> Iterator[Record]:
    """The typed records of a recording or stream (of one of its runs, in a comparison), its Header
    first; damaged ones skipped and counted."""
    damage = damage if damage is not None else Damage()
    name = str(source) if isinstance(source, (str, os.PathLike)) else "the stream"
    wire = iter_records(source, damage)
    try:
        first = next(wire)
        stream: Iterator[dict[str, Any]] = wire
        if first.get("k") == "compare":
            stream = (rec for rec in wire if rec.get("run", 0) == run)
            first = next(stream, None)
            if first is None or first.get("k") != "header":
                raise RunNotBegun(f"{name} holds no run {'AB'[run]} (it was cut short before it began)")
            _check_header(first, name)
        elif run != 0:
            raise UserError(f"{name} holds one run, not a comparison")
        header = decode_header(first)
        yield header
        decoder = Decoder(header)
        for rec in stream:
            try:
                typed = decoder.decode(rec)
            except (KeyError, TypeError, ValueError):
                damage.records += 1
                continue
            if typed is not None:
                yield typed
    finally:
        wire.close()


def comparison(source: str | os.PathLike) -> Compare | None:
    """What a file holding two runs says of them; None for a file of one run."""
    wire = iter_records(source)
    try:
        first = next(wire)
        return Compare.from_wire(first) if first.get("k") == "compare" else None
    finally:
        wire.close()


def last_time(source: str | os.PathLike, run: int = 0) -> int:
    """Where a recording (one run of a comparison) ends, in stream time: its last tick or its End."""
    last = 0
    for rec in read(source, run=run):
        if isinstance(rec, (Tick, End)):
            last = max(last, rec.t)
    return last
