"""The GIL itself, read from the target's memory through /proc/PID/mem.

CPython's GIL state (struct _gil_runtime_state) lives inside _PyRuntime on 3.9 to 3.14:
  +0   interval        u64  the switch interval in microseconds (5000 by default)
  +8   last_holder     ptr  the PyThreadState that holds or last held it
  +16  locked          i32
  +24  switch_number   u64  hand-offs so far
  +32  cond            pthread_cond_t (48 bytes): GIL waiters sleep on it
  +80  mutex           pthread_mutex_t (40 bytes)
  +120 switch_cond     pthread_cond_t: the dropping thread waits here for the taker
  +168 switch_mutex
glibc's condition variable keeps a count of the threads inside pthread_cond_wait in its
__wrefs word (+36, count << 3), so one 72-byte read gives holder, locked, hand-off count
and how many threads are waiting right now.

The struct is found without version tables: either from a thread seen asleep in a futex
inside _PyRuntime (the address of one of the cond's signal words), or by scanning
_PyRuntime for the struct's shape. Either way it is validated before use.
"""

from __future__ import annotations

import errno
import os
import struct

from .pyprocess import PythonProcess

GIL_STRUCT_SIZE = 208
_SAMPLE = struct.Struct("<QQI4xQ36xI")  # interval, holder, locked, switch_number, cond.__wrefs
_SAMPLE_SIZE = _SAMPLE.size
_COND_WREFS = 68
_SWITCH_COND_WREFS = 120 + 36
# Futex words of the struct, relative to its start, that a waiter may sleep on.
_FUTEX_WORDS = (72, 76, 80, 160, 164, 168)
# Where PyThreadState keeps the OS thread id (3.11+), as measured on release builds;
# only a first guess, confirmed against the live thread ids before use.
_NATIVE_TID_OFFSET = {(3, 11): 160, (3, 12): 144, (3, 13): 160, (3, 14): 160}
# 3.9/3.10: PyThreadState.thread_id is the pthread_t, and glibc's struct pthread
# holds the tid at 720 on x86-64.
_PTHREAD_ID_OFFSET = {(3, 9): 176, (3, 10): 176}
_PTHREAD_TID_OFFSET = 720
# where to look for the tid in a struct pthread of another libc: the usual place first
_PTHREAD_TID_SEARCH = (_PTHREAD_TID_OFFSET, *(o for o in range(0, 1020, 4) if o != _PTHREAD_TID_OFFSET))


def read_exact(fd: int, size: int, address: int) -> bytes:
    """pread that treats a short read (the process has exited) as an error."""
    if not 0 < address < 1 << 63:  # a torn or stale pointer read from a live process
        raise OSError(errno.EFAULT, f"no such address {address:#x}")
    data = os.pread(fd, size, address)
    if len(data) != size:
        raise ProcessLookupError(f"short read at {address:#x}")
    return data


def _is_pointer(value: int) -> bool:
    return 0x1000 <= value < 1 << 47


def _plausible(buf: bytes, off: int) -> bool:
    interval, holder, locked, _switch, wrefs = _SAMPLE.unpack_from(buf, off)
    if not (1 <= interval <= 100_000_000) or locked not in (0, 1):
        return False
    if struct.unpack_from("<I", buf, off + 20)[0] != 0:  # padding after `locked`
        return False
    if locked and not _is_pointer(holder):
        return False
    if holder and not _is_pointer(holder):
        return False
    # both condition variables were made with CLOCK_MONOTONIC, process-private
    if (wrefs & 3) != 2:
        return False
    return (struct.unpack_from("<I", buf, off + _SWITCH_COND_WREFS)[0] & 3) == 2


def find_gil_by_shape(buf: bytes) -> int | None:
    """Offset of the GIL struct in a copy of _PyRuntime, or None if not one fits."""
    found = [
        off
        for off in range(0, len(buf) - GIL_STRUCT_SIZE, 8)
        if buf[off + _COND_WREFS] & 3 == 2 and _plausible(buf, off)
    ]
    if not found:
        return None
    defaults = [off for off in found if struct.unpack_from("<Q", buf, off)[0] == 5000]
    return (defaults or found)[0]


class GilProbe:
    """Samples one process's GIL; also tells which futex addresses are GIL waits."""

    def __init__(self, proc: PythonProcess, gil_reenabled: bool = False):
        """gil_reenabled: a free-threaded build run with PYTHON_GIL=1 has a GIL again,
        laid out differently; it is then reported as not located, never guessed at."""
        self.proc = proc
        if proc.free_threaded:
            self.status = "not located" if gil_reenabled else "no GIL"
        else:
            self.status = "not located"
        self.address: int | None = None
        self.interpreter_gils: list[int] = []  # own GILs of subinterpreters (3.12+)
        self._interpreters = InterpreterWalk()
        self.fd = os.open(f"/proc/{proc.pid}/mem", os.O_RDONLY)
        self.holders = HolderMap(self.fd, proc.version)
        self.locate()

    @property
    def runtime_range(self) -> tuple[int, int]:
        r = self.proc.runtime
        return r.address, r.address + r.size

    @property
    def gil_ranges(self) -> tuple[tuple[int, int], ...]:
        """Futex addresses that mean 'waiting for a GIL'."""
        if self.address is not None:
            return tuple((a, a + GIL_STRUCT_SIZE) for a in (self.address, *self.interpreter_gils))
        if self.proc.free_threaded:
            return ()
        return (self.runtime_range,)  # until located: every GIL wait seen lies in here

    def find_interpreter_gils(self) -> bool:
        """Looks for subinterpreters with a GIL of their own; True when the list changed."""
        if self.address is None or tuple(self.proc.version[:2]) < (3, 12):
            return False
        try:
            found = self._interpreters.own_gils(self.fd, self.proc.runtime, self.address)
        except OSError:
            return False
        if found != self.interpreter_gils:
            self.interpreter_gils = found
            return True
        return False

    def sample_interpreter_gils(self) -> list[int]:
        """Holder pointers of the subinterpreters' GILs that are locked right now."""
        holders = []
        for address in self.interpreter_gils:
            _interval, holder, locked, _switch, _wrefs = _SAMPLE.unpack(read_exact(self.fd, _SAMPLE_SIZE, address))
            if locked:
                holders.append(holder)
        return holders

    def locate(self) -> None:
        """Looks for the GIL by its shape (again: a process caught early has none yet)."""
        if self.address is not None or self.proc.free_threaded:
            return
        start, end = self.runtime_range
        try:
            buf = os.pread(self.fd, end - start, start)
        except OSError:
            return
        off = find_gil_by_shape(buf)
        if off is not None:
            self.address = start + off
            self.status = "located"

    def consider_futex(self, addr: int) -> None:
        """A thread sleeps on addr inside _PyRuntime: is it one of the GIL's words?"""
        if self.address is not None or self.proc.free_threaded:
            return
        start, end = self.runtime_range
        for word in _FUTEX_WORDS:
            base = addr - word
            if base < start or base + GIL_STRUCT_SIZE > end:
                continue
            try:
                buf = read_exact(self.fd, GIL_STRUCT_SIZE, base)
            except OSError:
                return
            if len(buf) == GIL_STRUCT_SIZE and _plausible(buf, 0):
                self.address, self.status = base, "located"
                return

    def sample(self) -> tuple[int, int, int, int]:
        """(locked, holder pointer, waiters, switch_number); OSError once the process is gone."""
        _interval, holder, locked, switch, wrefs = _SAMPLE.unpack(read_exact(self.fd, _SAMPLE_SIZE, self.address))
        return locked, holder, wrefs >> 3, switch

    def switch_interval_us(self) -> int | None:
        if self.address is None:
            return None
        try:
            return struct.unpack("<Q", read_exact(self.fd, 8, self.address))[0]
        except OSError:
            return None

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class InterpreterWalk:
    """Finds the interpreters of a process and the GIL each owns (3.12+: PEP 684).

    _PyRuntime.interpreters holds {mutex, head, main, next_id}; `main` points at the main
    interpreter inside _PyRuntime, which also holds the main GIL. Each PyInterpreterState
    keeps its own GIL at the same offset as the main one does, and links to the next
    interpreter. Both offsets are learned from the live process and checked against the
    GIL's shape; an interpreter that shares the main GIL has no valid one of its own.
    """

    MAX_INTERPRETERS = 64

    def __init__(self) -> None:
        self._main_field: int | None = None  # offset of interpreters.main in _PyRuntime
        self._next_field: int | None = None  # offset of `next` in PyInterpreterState

    def own_gils(self, fd: int, runtime, main_gil: int) -> list[int]:
        head_buf = read_exact(fd, 1024, runtime.address)
        if self._main_field is None:
            self._main_field = self._find_main_field(head_buf, runtime.address, main_gil)
            if self._main_field is None:
                return []
        main = struct.unpack_from("<Q", head_buf, self._main_field)[0]
        head = struct.unpack_from("<Q", head_buf, self._main_field - 8)[0]
        gil_offset = main_gil - main
        found: list[int] = []
        interp, seen = head, set()
        while (_is_pointer(interp) and interp != main and interp not in seen
               and len(seen) < self.MAX_INTERPRETERS):
            seen.add(interp)
            if _plausible(read_exact(fd, GIL_STRUCT_SIZE, interp + gil_offset), 0):
                found.append(interp + gil_offset)
            interp = self._next(fd, interp, main, gil_offset)
        return sorted(found)

    @staticmethod
    def _find_main_field(buf: bytes, runtime: int, main_gil: int) -> int | None:
        for off in range(8, len(buf) - 8, 8):
            value = struct.unpack_from("<Q", buf, off)[0]
            if runtime <= value < main_gil and main_gil - value < 1 << 20:
                head = struct.unpack_from("<Q", buf, off - 8)[0]
                if _is_pointer(head):
                    return off
        return None

    def _next(self, fd: int, interp: int, main: int, gil_offset: int) -> int:
        buf = read_exact(fd, 16384, interp)  # 3.13 keeps `next` after the pending-calls table
        if self._next_field is None:
            for off in range(0, len(buf), 8):
                value = struct.unpack_from("<Q", buf, off)[0]
                if value == main:
                    self._next_field = off
                    break
                if _is_pointer(value) and value != interp:
                    try:
                        if _plausible(read_exact(fd, GIL_STRUCT_SIZE, value + gil_offset), 0):
                            self._next_field = off
                            break
                    except OSError:
                        continue
            if self._next_field is None:
                return 0
        return struct.unpack_from("<Q", buf, self._next_field)[0]


class HolderMap:
    """PyThreadState pointer -> OS thread id, learned from the target's memory."""

    def __init__(self, fd: int, version: tuple[int, ...]):
        self.fd = fd
        self.version = tuple(version[:2])
        self.direct = self.version >= (3, 11) or not self.version
        self.offset: int | None = None  # of the tid (direct) or of the pthread_t (3.9/3.10)
        self._tid_offset = _PTHREAD_TID_OFFSET  # of the tid in glibc's struct pthread
        self._cache: dict[int, int] = {}

    def resolve(self, pointer: int, tids: set[int]) -> int | None:
        tid = self._cache.get(pointer)
        if tid is not None and tid in tids:
            return tid
        try:
            tid = self._resolve_direct(pointer, tids) if self.direct else self._resolve_pthread(pointer, tids)
        except OSError:
            return None
        if tid is not None:
            self._cache[pointer] = tid
        return tid

    def forget(self, gone_tids: list[int]) -> None:
        if gone_tids:
            gone = set(gone_tids)
            self._cache = {p: t for p, t in self._cache.items() if t not in gone}

    def _resolve_direct(self, pointer: int, tids: set[int]) -> int | None:
        buf = read_exact(self.fd, 1024, pointer)
        if self.offset is not None:
            value = struct.unpack_from("<Q", buf, self.offset)[0]
            return value if value in tids else None
        hits = [off for off in range(0, len(buf) - 7, 8) if struct.unpack_from("<Q", buf, off)[0] in tids]
        if not hits:
            return None
        guess = _NATIVE_TID_OFFSET.get(self.version)
        self.offset = guess if guess in hits else hits[0]
        return struct.unpack_from("<Q", buf, self.offset)[0]

    def _pthread_tid(self, pthread: int, tids: set[int], offsets) -> tuple[int, int] | None:
        if not _is_pointer(pthread):
            return None
        try:
            pbuf = read_exact(self.fd, 1024, pthread)
        except OSError:
            return None
        for off in offsets:
            if off + 4 <= len(pbuf):
                value = struct.unpack_from("<i", pbuf, off)[0]
                if value in tids:
                    return off, value
        return None

    def tid_of_pthread(self, pthread: int, tids: set[int]) -> int | None:
        """OS thread id of a pthread_t (what py-spy reports on 3.9 and 3.10)."""
        offsets = (self._tid_offset,) if self.offset is not None and not self.direct else _PTHREAD_TID_SEARCH
        hit = self._pthread_tid(pthread, tids, offsets)
        return hit[1] if hit else None

    def _resolve_pthread(self, pointer: int, tids: set[int]) -> int | None:
        buf = read_exact(self.fd, 1024, pointer)
        if self.offset is not None:
            pthread = struct.unpack_from("<Q", buf, self.offset)[0]
            hit = self._pthread_tid(pthread, tids, (self._tid_offset,))
            return hit[1] if hit else None
        guess = _PTHREAD_ID_OFFSET.get(self.version)
        order = ([guess] if guess is not None else []) + [o for o in range(0, 1024, 8) if o != guess]
        for off in order:
            pthread = struct.unpack_from("<Q", buf, off)[0]
            hit = self._pthread_tid(pthread, tids, _PTHREAD_TID_SEARCH)
            if hit:
                self.offset, self._tid_offset = off, hit[0]
                return hit[1]
        return None
