"""The Python line each thread is on, read from the target's memory (CPython 3.9 to 3.15).

py-spy takes milliseconds of CPU a dump, a new process each time, so it can give lines a few
times a second at most. Here the innermost frame of each thread is read with three or four
small reads of the target's memory, cheap enough for every tick. The structs' layouts are
those of CPython's release builds on 64-bit Linux: for 3.9 to 3.12 copied from each version's
headers; from 3.13 the interpreters and thread states come from the target's debug offsets,
and the frame and code layouts below are used only where its debug offsets say the same.
Nothing is guessed: every code object read must have `PyCode_Type` as its type and every name
`PyUnicode_Type`, and a process whose thread states do not point back at their interpreter is
refused; then CPython's own reader (3.14+, probes/unwinder_helper.py) or py-spy reads its lines.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass
from typing import Callable, Iterator

from ..native import compiled as _gilloop
from . import debug_offsets
from .memory import Memory, is_pointer
from .pyprocess import SYMBOLS, PythonProcess, _elf_symbols

MAX_THREADS = 100_000
MAX_INTERPRETERS = 256
MAX_SKIPPED = 8  # C-stack shim frames or frames not started, before the innermost Python one
MAX_STACK_SKIPPED = 64  # more of them further out (one shim for each call from C into Python)
MAX_TEXT = 4096  # a file name or function name longer than this is taken as a misread
MAX_TABLE = 1 << 20
CODE_CACHE = 4096  # code objects remembered with their decoded line tables
WHERE_CACHE = 16384  # (code, instruction) -> (file, line, function), for the lines read in C
UNREADABLE = object()  # `FrameReader.lines`: that thread's frames could not be read (it ended, or a misread)

_Q = struct.Struct("<Q")
_I = struct.Struct("<i")


@dataclass(frozen=True)
class FrameLayout:
    """Offsets in bytes of what is read, for one CPython minor version."""

    interp_head: int  # _PyRuntimeState.interpreters.head
    interp_next: int
    interp_threads: int  # PyInterpreterState's first thread state
    ts_next: int
    ts_interp: int
    ts_thread: int  # its OS thread id (3.11+), or its pthread_t (3.9, 3.10)
    ts_frame: int  # PyThreadState.frame (3.9, 3.10), .cframe (3.11, 3.12), .current_frame (3.13)
    cframe_frame: int | None  # _PyCFrame.current_frame (3.11, 3.12)
    frame_code: int
    frame_back: int
    frame_instr: int  # f_lasti, an int (3.9, 3.10), or the instruction pointer (3.11+)
    frame_owner: int | None  # (3.12+: frames the C stack owns are shims, no Python code)
    code_filename: int
    code_name: int  # co_qualname from 3.11 on
    code_firstlineno: int
    code_linetable: int
    code_start: int | None  # where the instructions begin (3.11+)
    ascii_header: int  # sizeof(PyASCIIObject): where a compact ASCII string's text begins
    compact_header: int  # sizeof(PyCompactUnicodeObject)
    table: str  # the line table's format: "lnotab" (3.9), "linetable" (3.10), "locations" (3.11+)
    lasti_unit: int = 1  # bytes per unit of f_lasti (3.10 counts instructions)
    tagged: bool = False  # 3.14+: the frame's code is a _PyStackRef, whose low bits may be tags


LAYOUTS = {
    (3, 9): FrameLayout(32, 0, 8, 8, 16, 176, 24, None, 32, 24, 104, None, 104, 112, 40, 120, None, 48, 72, "lnotab"),
    (3, 10): FrameLayout(32, 0, 8, 8, 16, 176, 24, None, 32, 24, 96, None, 104, 112, 40, 120, None, 48, 72, "linetable",
                         lasti_unit=2),
    (3, 11): FrameLayout(40, 0, 16, 8, 16, 160, 56, 8, 32, 48, 56, None, 112, 128, 72, 136, 184, 48, 72, "locations"),
    (3, 12): FrameLayout(40, 0, 72, 8, 16, 144, 56, 0, 0, 8, 56, 70, 112, 128, 68, 136, 192, 40, 56, "locations"),
    # interpreters and thread states from the debug offsets; the frame and code from the headers
    (3, 13): FrameLayout(0, 0, 0, 8, 16, 160, 72, None, 0, 8, 56, 70, 112, 128, 68, 136, 200, 40, 56, "locations"),
    # (3.14+: a frame the C stack owns has None for code, which the type check skips: no owner read)
    (3, 14): FrameLayout(0, 0, 0, 8, 16, 0, 0, None, 0, 8, 56, None, 112, 128, 68, 136, 208, 40, 56, "locations",
                         tagged=True),
    (3, 15): FrameLayout(0, 0, 0, 8, 16, 0, 0, None, 0, 8, 56, None, 112, 128, 68, 136, 208, 40, 56, "locations",
                         tagged=True),
}
# What follows the thread state's fields in the debug offsets of 3.13+: the frame's table, then the
# code object's (each size first), as the layouts above read them; a build whose table says
# otherwise is refused. (3.15's thread table has one more field than debug_offsets reads: its 0.)
TABLES_AFTER_THREAD = {
    (3, 13): (80, 8, 0, 56, 72, 70, 208, 112, 120, 128, 136, 68, 52, 96, 104, 200),
    (3, 14): (88, 8, 0, 56, 80, 74, 64, 0, 216, 112, 120, 128, 136, 68, 52, 96, 104, 208, 0),
    (3, 15): (0, 88, 8, 0, 56, 80, 74, 64, 0, 216, 112, 120, 128, 136, 68, 52, 96, 104, 208, 0),
}
TAG_BITS = 7  # (an object is at least 8-byte aligned)
FRAME_OWNED_BY_CSTACK = 3
PTHREAD_TID = 720  # of the thread id in glibc's struct pthread on x86-64 (3.9, 3.10)


class FramesError(Exception):
    """This process's frames cannot be read here (its version, its build, or what was read)."""


# ----------------------------------------------------------------------- line tables
def lnotab_lines(table: bytes, firstlineno: int) -> tuple[list[int], list[int]]:
    """3.9's co_lnotab: (starts, lines): the line of byte offset x is lines[bisect(starts, x) - 1]."""
    starts, lines = [0], [firstlineno]
    addr, line = 0, firstlineno
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        line += table[i + 1] - 256 if table[i + 1] > 127 else table[i + 1]
        starts.append(addr)  # (an offset that comes twice: bisect_right finds its last line)
        lines.append(line)
    return starts, lines


def linetable_lines(table: bytes, firstlineno: int) -> tuple[list[int], list[int]]:
    """3.10's co_linetable (byte offsets; -1: no line)."""
    starts: list[int] = []
    lines: list[int] = []
    end, line = 0, firstlineno
    for i in range(0, len(table) - 1, 2):
        start, end = end, end + table[i]
        delta = table[i + 1] - 256 if table[i + 1] > 127 else table[i + 1]
        if delta == -128:
            here = -1
        else:
            line += delta
            here = line
        if end > start:
            starts.append(start)
            lines.append(here)
    starts.append(end)
    lines.append(-1)  # past the end
    return starts, lines


def _varint(table: bytes, i: int) -> tuple[int, int]:
    try:
        b = table[i]
        value, shift = b & 63, 0
        while b & 64:
            i += 1
            b = table[i]
            shift += 6
            value |= (b & 63) << shift
    except IndexError:  # (read from a live process: a code object freed and its memory reused)
        raise FramesError("a line table that ends inside an entry") from None
    return value, i + 1


def locations_lines(table: bytes, firstlineno: int) -> tuple[list[int], list[int]]:
    """3.11+'s location table (byte offsets; -1: no line), as Objects/locations.md describes it."""
    starts: list[int] = []
    lines: list[int] = []
    addr, line, i, n = 0, firstlineno, 0, len(table)
    while i < n:
        first = table[i]
        code = (first >> 3) & 15
        if code in (13, 14):
            uval, _ = _varint(table, i + 1)
            line += -(uval >> 1) if uval & 1 else uval >> 1
        elif code in (11, 12):
            line += code - 10
        starts.append(addr)
        lines.append(-1 if code == 15 else line)
        addr += ((first & 7) + 1) * 2
        i += 1
        while i < n and not table[i] & 128:
            i += 1
    starts.append(addr)
    lines.append(-1)
    return starts, lines


DECODERS: dict[str, Callable[[bytes, int], tuple[list[int], list[int]]]] = {
    "lnotab": lnotab_lines, "linetable": linetable_lines, "locations": locations_lines}


@dataclass(frozen=True)
class CodeInfo:
    filename: str
    function: str
    firstlineno: int
    starts: list[int]
    lines: list[int]

    def line(self, offset: int) -> int:
        """The line of the instruction at this byte offset; the def line before the first."""
        if offset < 0:
            return self.firstlineno
        line = self.lines[bisect.bisect_right(self.starts, offset) - 1] if offset >= self.starts[0] else -1
        return line if line >= 0 else self.firstlineno


# ----------------------------------------------------------------------- the reader
class FrameReader:
    """Each thread's innermost Python frame, as (file, line, function)."""

    def __init__(self, memory: Memory, python: PythonProcess, offsets: debug_offsets.DebugOffsets | None = None):
        version = tuple(python.version[:2])
        layout = LAYOUTS.get(version)  # type: ignore[call-overload]
        if layout is None:
            raise FramesError(f"the frames of CPython {python.version_string} are not known to this gilviz")
        if python.free_threaded:
            raise FramesError("a free-threaded build: its objects have another header")
        if version >= (3, 13) and offsets is None:
            raise FramesError("no debug offsets")
        expected = TABLES_AFTER_THREAD[version] if offsets is not None else ()
        if offsets is not None and offsets.rest[:len(expected)] != expected:
            raise FramesError("its debug offsets lay frames or code objects out otherwise than this gilviz reads them")
        self.memory = memory
        self.python = python
        self.layout = layout
        self.offsets = offsets
        self.decode = DECODERS[layout.table]
        _, syms = _elf_symbols(python.binary, SYMBOLS)
        if "PyCode_Type" not in syms or "PyUnicode_Type" not in syms:
            raise FramesError("PyCode_Type or PyUnicode_Type is not in the binary's symbols")
        bias = python.runtime.address - syms["_PyRuntime"][0]
        self.code_type = syms["PyCode_Type"][0] + bias
        self.str_type = syms["PyUnicode_Type"][0] + bias
        self._codes: dict[bytes, CodeInfo] = {}
        self._code_size = max(layout.code_filename, layout.code_name, layout.code_firstlineno,
                              layout.code_linetable) + 8
        self._frame_size = max(layout.frame_code, layout.frame_back, layout.frame_instr,
                               layout.frame_owner or 0) + 8
        self._wheres: dict[tuple[bytes, int], tuple[str, int, str]] = {}
        fd = getattr(memory, "fd", None)
        self._fd = fd if _gilloop is not None else None
        self.c_layout = (  # (_gilloop.frame_tops: the walk of _frames, to the innermost frame)
            self.frame_offset, -1 if layout.cframe_frame is None else layout.cframe_frame,
            (~TAG_BITS if layout.tagged else -1) & (1 << 64) - 1, self._frame_size, layout.frame_code,
            layout.frame_back, layout.frame_instr, -1 if layout.frame_owner is None else layout.frame_owner,
            self.code_type, self._code_size, layout.code_filename, layout.code_name, layout.code_linetable,
            layout.code_firstlineno, layout.lasti_unit, -1 if layout.code_start is None else layout.code_start,
            MAX_SKIPPED)

    # ------------------------------------------------------------ thread states
    def thread_states(self) -> list[tuple[int, int, int]]:
        """(PyThreadState address, its interpreter, its OS thread id or 0) of every thread state
        of every interpreter. A thread state that does not point back at its interpreter means
        the layout is not this process's: FramesError."""
        lay = self.layout
        if self.offsets is not None:
            at, ts_next, ts_interp = (self.offsets.thread[k] for k in ("native_thread_id", "next", "interp"))
        else:
            at, ts_next, ts_interp = lay.ts_thread, lay.ts_next, lay.ts_interp
        size = max(ts_next, ts_interp, at) + 8
        out: list[tuple[int, int, int]] = []
        for interp, head in self._interpreters():
            address, seen = head, set()
            while address and address not in seen and len(out) < MAX_THREADS:
                if not is_pointer(address):
                    raise FramesError(f"thread state {address:#x} is not a pointer")
                seen.add(address)
                buf = self.memory.read(address, size)
                if _Q.unpack_from(buf, ts_interp)[0] != interp:
                    raise FramesError("a thread state does not point back at its interpreter")
                tid = _Q.unpack_from(buf, at)[0]
                if lay.code_start is None:  # a pthread_t: the thread id is in glibc's struct
                    tid = self._pthread_tid(tid)
                out.append((address, interp, tid))
                address = _Q.unpack_from(buf, ts_next)[0]
        return out

    def _pthread_tid(self, pthread: int) -> int:
        """0 where it cannot be read (not yet started, or another libc: then no line is read)."""
        if not is_pointer(pthread):
            return 0
        try:
            return _I.unpack(self.memory.read(pthread + PTHREAD_TID, 4))[0]
        except OSError:
            return 0

    def _interpreters(self) -> list[tuple[int, int]]:
        """(interpreter, its first thread state) of each interpreter."""
        runtime = self.python.runtime.address
        if self.offsets is not None:
            return [(i.address, i.threads_head) for i in debug_offsets.interpreters(self.memory, self.offsets, runtime)]
        lay = self.layout
        out = []
        address = _Q.unpack(self.memory.read(runtime + lay.interp_head, 8))[0]
        seen: set[int] = set()
        while address and address not in seen and len(out) < MAX_INTERPRETERS:
            if not is_pointer(address):
                raise FramesError(f"interpreter {address:#x} is not a pointer")
            seen.add(address)
            buf = self.memory.read(address, max(lay.interp_next, lay.interp_threads) + 8)
            out.append((address, _Q.unpack_from(buf, lay.interp_threads)[0]))
            address = _Q.unpack_from(buf, lay.interp_next)[0]
        return out

    @property
    def frame_offset(self) -> int:
        return self.offsets.thread["current_frame"] if self.offsets is not None else self.layout.ts_frame

    # ------------------------------------------------------------ one thread
    def line(self, tstate: int) -> tuple[str, int, str] | None:
        """(file, line, function) of the thread's innermost Python frame; None when it runs
        none (a thread state with no frame: a C thread, or one between calls); OSError when
        the memory cannot be read; FramesError when what was read is not what it should be."""
        for where in self._frames(tstate, MAX_SKIPPED):
            return where
        return None

    def lines(self, tstates: list[int]) -> list:
        """`line` of each thread state, or UNREADABLE where it raised OSError or FramesError: in C
        where it was built (the frames read in one call, a line known for an instruction seen
        before not worked out again), the same answers."""
        if self._fd is None:
            return [self._line_or_unreadable(tstate) for tstate in tstates]
        wheres = self._wheres
        out = []
        for tstate, top in zip(tstates, _gilloop.frame_tops(self._fd, tstates, self.c_layout)):
            if not top:  # None: no Python frame; False: left to Python, to say what it is
                out.append(None if top is None else self._line_or_unreadable(tstate))
                continue
            where = wheres.get(top)
            if where is None:
                where = self._where(top)
                if where is None:  # (in Python: what went wrong, or the code changed between reads)
                    out.append(self._line_or_unreadable(tstate))
                    continue
                if len(wheres) >= WHERE_CACHE:
                    wheres.clear()
                wheres[top] = where
            out.append(where)
        return out

    def _where(self, top: tuple[bytes, int]) -> tuple[str, int, str] | None:
        key, offset = top
        info = self._codes.get(key)
        if info is None:
            try:
                self._code(int.from_bytes(key[:8], "little"))
            except (OSError, FramesError):
                return None
            info = self._codes.get(key)  # (None: read otherwise this time)
        return (info.filename, info.line(offset), info.function) if info is not None else None

    def _line_or_unreadable(self, tstate: int):
        try:
            return self.line(tstate)
        except (OSError, FramesError):
            return UNREADABLE

    def stack(self, tstate: int, limit: int) -> list[tuple[str, int, str]]:
        """(file, line, function) of the thread's Python frames, innermost first, at most `limit`;
        errors as `line`'s."""
        out = []
        for where in self._frames(tstate, MAX_SKIPPED + MAX_STACK_SKIPPED):
            out.append(where)
            if len(out) >= limit:
                break
        return out

    def _frames(self, tstate: int, skips: int) -> Iterator[tuple[str, int, str]]:
        """The thread's Python frames from the innermost out; after `skips` frames that are not
        (C-stack shims, executables that are not code), the walk ends."""
        lay = self.layout
        read = self.memory.read
        frame = _Q.unpack(read(tstate + self.frame_offset, 8))[0]
        untag = ~TAG_BITS if lay.tagged else -1
        if lay.cframe_frame is not None and frame:
            frame = _Q.unpack(read(frame + lay.cframe_frame, 8))[0]
        seen: set[int] = set()
        while frame and frame not in seen:
            if not is_pointer(frame):
                raise FramesError(f"frame {frame:#x} is not a pointer")
            seen.add(frame)
            buf = read(frame, self._frame_size)
            code = _Q.unpack_from(buf, lay.frame_code)[0] & untag
            back = _Q.unpack_from(buf, lay.frame_back)[0]
            info = None
            if lay.frame_owner is None or buf[lay.frame_owner] != FRAME_OWNED_BY_CSTACK:
                info = self._code(code)  # (None, 3.13: an executable that is not a code object)
            if info is None:
                skips -= 1
                if skips <= 0:
                    return
                frame = back
                continue
            if lay.code_start is None:
                offset = _I.unpack_from(buf, lay.frame_instr)[0] * lay.lasti_unit
            else:
                offset = _Q.unpack_from(buf, lay.frame_instr)[0] - (code + lay.code_start)
            yield info.filename, info.line(offset), info.function
            frame = back

    def _code(self, address: int) -> CodeInfo | None:
        if not is_pointer(address):
            raise FramesError(f"code object {address:#x} is not a pointer")
        lay = self.layout
        buf = self.memory.read(address, self._code_size)
        if _Q.unpack_from(buf, 8)[0] != self.code_type:
            return None
        key = b"".join((address.to_bytes(8, "little"), buf[lay.code_filename:lay.code_filename + 8],
                        buf[lay.code_name:lay.code_name + 8], buf[lay.code_linetable:lay.code_linetable + 8],
                        buf[lay.code_firstlineno:lay.code_firstlineno + 4]))  # (as frame_tops gives it)
        info = self._codes.get(key)
        if info is None:
            firstlineno = _I.unpack_from(buf, lay.code_firstlineno)[0]
            table = self._bytes(_Q.unpack_from(buf, lay.code_linetable)[0])
            starts, lines = self.decode(table, firstlineno)
            info = CodeInfo(self._text(_Q.unpack_from(buf, lay.code_filename)[0]),
                            self._text(_Q.unpack_from(buf, lay.code_name)[0]), firstlineno, starts, lines)
            if len(self._codes) >= CODE_CACHE:
                self._codes.clear()
            self._codes[key] = info
        return info

    def _bytes(self, address: int) -> bytes:
        if not is_pointer(address):
            raise FramesError(f"line table {address:#x} is not a pointer")
        size = _Q.unpack(self.memory.read(address + 16, 8))[0]  # ob_size
        if size > MAX_TABLE:
            raise FramesError(f"a line table of {size} bytes")
        return self.memory.read(address + 32, size) if size else b""

    def _text(self, address: int) -> str:
        """A str object's text: compact strings only (every name CPython makes for code is one)."""
        if not is_pointer(address):
            raise FramesError(f"string {address:#x} is not a pointer")
        lay = self.layout
        head = self.memory.read(address, 40)
        if _Q.unpack_from(head, 8)[0] != self.str_type:
            raise FramesError("a code object's name is not a str")
        length = _Q.unpack_from(head, 16)[0]
        state = head[32]
        kind, compact, ascii = (state >> 2) & 7, state & 32, state & 64
        if not compact or kind not in (1, 2, 4) or length > MAX_TEXT:
            raise FramesError("a code object's name is not a compact str")
        if ascii:
            return self.memory.read(address + lay.ascii_header, length).decode("ascii", "replace")
        data = self.memory.read(address + lay.compact_header, length * kind)
        return data.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind], "replace")
