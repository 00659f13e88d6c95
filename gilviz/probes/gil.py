"""The GIL itself, read from the target's memory.

CPython's GIL state (struct _gil_runtime_state, unchanged from 3.9 to 3.15):
  +0   interval        u64  the switch interval in microseconds (5000 by default)
  +8   last_holder     ptr  the PyThreadState that holds or last held it
  +16  locked          i32
  +24  switch_number   u64  hand-offs so far
  +32  cond            pthread_cond_t (48 bytes): GIL waiters sleep on it
  +80  mutex           pthread_mutex_t (40 bytes)
  +120 switch_cond     pthread_cond_t: the dropping thread waits here for the taker
  +168 switch_mutex
Free-threaded builds put an `int enabled` first, so everything moves 8 bytes on.
glibc's condition variable counts the threads inside pthread_cond_wait in its __wrefs
word (count << 3), so one read gives holder, locked, hand-off count and how many threads
wait right now. glibc 2.41 dropped a field from pthread_cond_t, which moved __wrefs and
the words waiters sleep on 8 bytes down: both layouts are known, and the one in use is
read off the condition variables themselves (see `condvar_layout`).

Two ways to find the struct:
- From 3.13, CPython's debug offsets (debug_offsets.py) lead from _PyRuntime to every
  interpreter and the GIL each uses: the main one and every subinterpreter's own.
- Before 3.13 (or if the table cannot be read), by the struct's shape inside _PyRuntime.
  A shape can be matched by something else, so a candidate is used only once the live
  process confirms it: its holder is one of the process's threads, or a thread waiting
  for the GIL sleeps on its condition variable.
Whichever way it was found, a GIL that contradicts the threads while running (threads
wait for it while it is never held; it is held by no thread of the process) is dropped
and looked for again (`GilCheck`).
"""

from __future__ import annotations

import functools
import os
import struct
import time
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from . import debug_offsets
from .debug_offsets import DebugOffsets, DebugOffsetsError
from .memory import Memory, ProcessMemory, is_pointer, read_u64
from .pyprocess import PythonProcess

FOUND_BY_OFFSETS = "debug offsets"
FOUND_BY_SHAPE = "shape"
CANDIDATE_PATIENCE_S = 1.0  # a shape candidate not confirmed in this time yields to the next


@dataclass(frozen=True)
class CondvarLayout:
    """Where glibc keeps a pthread_cond_t's waiter count and the words its waiters sleep on."""

    name: str
    wrefs: int
    signals: tuple[int, int]


GLIBC_BEFORE_2_41 = CondvarLayout("glibc before 2.41", 36, (40, 44))
GLIBC_2_41 = CondvarLayout("glibc 2.41 and later", 28, (32, 36))
CONDVAR_LAYOUTS = (GLIBC_BEFORE_2_41, GLIBC_2_41)
_COND_SIZE = 48
_MUTEX_SIZE = 40


@dataclass(frozen=True)
class GilLayout:
    condvar: CondvarLayout = GLIBC_BEFORE_2_41
    shift: int = 0  # 8 on free-threaded builds (an `int enabled` comes first)

    # (cached: every tick asks each GIL for its range, and so its size)
    @functools.cached_property
    def cond(self) -> int:
        return self.shift + 32

    @functools.cached_property
    def switch_cond(self) -> int:
        return self.cond + _COND_SIZE + _MUTEX_SIZE

    @functools.cached_property
    def size(self) -> int:
        return self.switch_cond + _COND_SIZE + _MUTEX_SIZE

    @functools.cached_property
    def sample_struct(self) -> struct.Struct:
        """interval, holder, locked, switch_number, cond.__wrefs: one read per sample."""
        return struct.Struct(f"<{self.shift}xQQI4xQ{self.condvar.wrefs}xI")

    def take_words(self) -> tuple[int, ...]:
        """Offsets of the words a thread sleeps on inside take_gil, and nowhere else: its condition
        variable's (drop_gil may wait on the mutex, or for the taker, and then go elsewhere)."""
        return tuple(self.cond + s for s in self.condvar.signals)

    def futex_words(self) -> tuple[int, ...]:
        """Offsets of the words a thread waiting on this GIL may sleep on."""
        mutex = self.cond + _COND_SIZE
        switch_mutex = self.switch_cond + _COND_SIZE
        return (*(self.cond + s for s in self.condvar.signals), mutex,
                *(self.switch_cond + s for s in self.condvar.signals), switch_mutex)

    def plausible(self, buf: bytes, off: int = 0) -> bool:
        """Does buf[off:] look like this GIL struct: interval, locked and its padding, holder,
        and both condition variables made with CLOCK_MONOTONIC (glibc's clock bit, not shared)?"""
        if off + self.size > len(buf):
            return False
        interval, holder, locked, _switch, wrefs = self.sample_struct.unpack_from(buf, off)
        if not (1 <= interval <= 100_000_000) or locked not in (0, 1):
            return False
        if struct.unpack_from("<I", buf, off + self.shift + 20)[0] != 0:  # padding after `locked`
            return False
        if (locked or holder) and not is_pointer(holder):
            return False
        if (wrefs & 3) != 2:
            return False
        return (struct.unpack_from("<I", buf, off + self.switch_cond + self.condvar.wrefs)[0] & 3) == 2


def condvar_layout(buf: bytes, off: int = 0, shift: int = 0) -> CondvarLayout | None:
    """The glibc layout under which the GIL struct at buf[off:] looks right; None if none or both do."""
    fits = [c for c in CONDVAR_LAYOUTS if GilLayout(c, shift).plausible(buf, off)]
    return fits[0] if len(fits) == 1 else None


@functools.lru_cache(maxsize=16)
def _glibc_version(path: str) -> tuple[int, int] | None:
    """The newest GLIBC_2.N version a libc.so defines (each release defines its own)."""
    try:
        with open(path, "rb") as f:
            section = ELFFile(f).get_section_by_name(".gnu.version_d")
            if section is None:
                return None
            best = None
            for verdef, aux in section.iter_versions():
                for entry in aux:
                    name = entry.name
                    if name.startswith("GLIBC_2."):
                        try:
                            v = (2, int(name.split(".")[1]))
                        except ValueError:
                            continue
                        best = v if best is None or v > best else best
            return best
    except (OSError, ELFError):
        return None


def process_condvar_layout(pid: int) -> CondvarLayout | None:
    """The condvar layout of the glibc the process has mapped, if it has one mapped."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if line.count(" ") >= 5 and "/libc" in line}
    except (OSError, IndexError):
        return None
    for path in sorted(paths):
        name = os.path.basename(path)
        if name.startswith("libc.so") or name.startswith("libc-2."):
            version = _glibc_version(path)
            if version is not None:
                return GLIBC_2_41 if version >= (2, 41) else GLIBC_BEFORE_2_41
    return None


def find_gil_by_shape(buf: bytes, layouts=None) -> list[tuple[int, GilLayout]]:
    """Offsets in a copy of _PyRuntime where a GIL struct would fit, likeliest first."""
    layouts = layouts or [GilLayout(c) for c in CONDVAR_LAYOUTS]
    found = []
    for off in range(0, len(buf) - GilLayout().size, 8):
        for layout in layouts:
            if layout.plausible(buf, off):
                found.append((off, layout))
    # the default switch interval first: a changed interval is rarer than a lookalike
    found.sort(key=lambda hit: struct.unpack_from("<Q", buf, hit[0] + hit[1].shift)[0] != 5000)
    return found


class GilSite(NamedTuple):
    address: int
    interp: int  # interpreter id: 0 for the main interpreter
    layout: GilLayout

    @property
    def range(self) -> tuple[int, int]:
        return self.address, self.address + self.layout.size


# Where PyThreadState keeps the OS thread id before 3.13 (3.13+ say so in their debug offsets),
# as measured on release builds; a learned offset must be one of these.
_NATIVE_TID_OFFSET = {(3, 11): 160, (3, 12): 144}
# 3.9/3.10: PyThreadState.thread_id is the pthread_t, and glibc's struct pthread
# holds the tid at 720 on x86-64.
_PTHREAD_ID_OFFSET = {(3, 9): 176, (3, 10): 176}
_PTHREAD_TID_OFFSET = 720
# where to look for the tid in a struct pthread of another libc: the usual place first
_PTHREAD_TID_SEARCH = (_PTHREAD_TID_OFFSET, *(o for o in range(0, 1020, 4) if o != _PTHREAD_TID_OFFSET))


class GilProbe:
    """Finds one process's GILs, samples them, and says which futex addresses are GIL waits."""

    def __init__(self, proc: PythonProcess, gil_reenabled: bool = False, memory: Memory | None = None,
                 condvar: CondvarLayout | None = None):
        """gil_reenabled: a free-threaded build before 3.13 run with PYTHON_GIL=1 has a GIL again,
        with no table to find it by; it is then reported as not located, never guessed at."""
        self.proc = proc
        self.memory: Memory = memory if memory is not None else ProcessMemory(proc.pid)
        self.gil_reenabled = gil_reenabled
        self.free_threaded = proc.free_threaded
        self.status = "not located"
        self.found_by: str | None = None
        self.why = ""  # why it is not located, when it is not
        self.sites: list[GilSite] = []  # the main interpreter's GIL first
        self.candidate: GilSite | None = None  # found by shape, not yet confirmed
        self.offsets: DebugOffsets | None = None
        self.rejected: set[int] = set()
        self._tried: set[int] = set()  # candidates that had their turn without being confirmed
        self._candidate_since = 0.0
        self.unreadable = False  # a read came back short from a live process: see Sampler._refresh_gils
        self.failed = ""  # the error of gilviz's own that stopped it reading this GIL (see fail)
        self._condvar = condvar if condvar is not None else (
            process_condvar_layout(proc.pid) if memory is None else None)
        self._walk = InterpreterWalk()
        self._thread_states: dict[int, int] = {}  # tid -> PyThreadState address (debug offsets)
        self.holders = HolderMap(self.memory, proc.version)
        try:
            self.locate()
        except OSError:
            raise  # (the caller's to handle, as before)
        except Exception as e:  # one no check foresaw: see fail
            self.fail(e)

    # ----------------------------------------------------------------- where
    @property
    def located(self) -> bool:
        return self.status == "located"

    @property
    def address(self) -> int | None:
        """The main interpreter's GIL, once located."""
        return self.sites[0].address if self.sites else None

    @property
    def interpreters(self) -> list[int]:
        """Ids of the subinterpreters that have a GIL of their own."""
        return [s.interp for s in self.sites[1:]]

    @property
    def runtime_range(self) -> tuple[int, int]:
        r = self.proc.runtime
        return r.address, r.address + r.size

    @property
    def gil_ranges(self) -> tuple[tuple[int, int], ...]:
        """Futex addresses that mean 'waiting for a GIL'."""
        if self.sites:
            return tuple(s.range for s in self.sites)
        if self.status == "no GIL":
            return ()
        return (self.runtime_range,)  # until located: every GIL wait seen lies in here

    def locate(self) -> bool:
        """Looks for the GIL (again: a process caught early has none yet); True when found."""
        if self.sites:
            return True
        if self.failed:
            return False
        if tuple(self.proc.version[:2]) >= (3, 13) or not self.proc.version:
            try:
                return self._locate_by_offsets()
            except DebugOffsetsError as e:
                self.why = str(e)
            except OSError as e:
                self.why = f"cannot follow the debug offsets: {e}"
                self.unreadable = isinstance(e, ProcessLookupError)
        if self.free_threaded:
            self.status = "not located" if self.gil_reenabled else "no GIL"
            return False
        self._locate_by_shape()
        return bool(self.sites)

    def _locate_by_offsets(self) -> bool:
        off = self.offsets
        if off is None:
            off = self.offsets = debug_offsets.read(self.memory, self.proc.runtime.address, self.proc.runtime.size)
        self.free_threaded = off.free_threaded
        self.holders.use_offset(off.thread["native_thread_id"])
        interps = debug_offsets.interpreters(self.memory, off, self.proc.runtime.address)
        if not interps:
            self.why = "the interpreter has not started yet"
            return False
        main = min(interps, key=lambda i: i.id)
        if main.gil in self.rejected:
            self.why = "the GIL the debug offsets lead to contradicted the threads"
            return False
        if off.free_threaded:
            enabled = struct.unpack("<i", self.memory.read(main.own_gil, 4))[0]
            if not enabled:
                self.status, self.why, self.sites = "no GIL", "", []
                return False
        layout = self._layout_at(main.gil, off.gil_shift)
        if layout is None:
            self.why = "the GIL the debug offsets lead to does not look like one"
            return False
        sites = [GilSite(main.gil, main.id, layout)]
        for interp in sorted(interps, key=lambda i: i.id):
            if interp is not main and interp.has_own_gil and interp.gil != main.gil:
                sub = self._layout_at(interp.gil, off.gil_shift)
                if sub is not None:
                    sites.append(GilSite(interp.gil, interp.id, sub))
        self.sites = sites
        self.status, self.found_by, self.why = "located", FOUND_BY_OFFSETS, ""
        return True

    def _layout_at(self, address: int, shift: int) -> GilLayout | None:
        if not is_pointer(address):
            return None
        buf = self.memory.read(address, GilLayout(shift=shift).size)
        if self._condvar is not None:
            layout = GilLayout(self._condvar, shift)
            return layout if layout.plausible(buf) else None
        found = condvar_layout(buf, 0, shift)
        return GilLayout(found, shift) if found is not None else None

    def _locate_by_shape(self) -> None:
        """Takes the likeliest GIL-shaped struct as a candidate; one that the process has not
        confirmed after a while yields to the next (a lookalike may come first)."""
        if self.candidate is not None and time.monotonic() - self._candidate_since < CANDIDATE_PATIENCE_S:
            return
        if self.candidate is not None:
            self._tried.add(self.candidate.address)
            self.candidate = None
        start, end = self.runtime_range
        try:
            buf = self.memory.read(start, end - start)
        except OSError as e:
            self.unreadable = isinstance(e, ProcessLookupError)
            return
        layouts = [GilLayout(self._condvar)] if self._condvar is not None else None
        found = [(start + off, layout) for off, layout in find_gil_by_shape(buf, layouts) if start + off not in self.rejected]
        fresh = [hit for hit in found if hit[0] not in self._tried]
        if found and not fresh:  # every one has had its turn: start the round again
            self._tried.clear()
            fresh = found
        if fresh:
            self.candidate = GilSite(fresh[0][0], 0, fresh[0][1])
            self._candidate_since = time.monotonic()
            self.why = "a GIL-shaped struct was found, not yet confirmed by the process"
        else:
            self.why = "nothing in _PyRuntime has the GIL's shape"

    def refresh(self) -> bool:
        """Subinterpreters come and go, a free-threaded build may turn its GIL on: True when the
        GILs in use changed."""
        if self.failed:
            return False
        before = (self.status, tuple(self.sites))
        if self.found_by == FOUND_BY_OFFSETS or (self.status == "no GIL" and self.offsets is not None):
            kept = (self.status, self.found_by, self.why, self.sites)
            self.sites = []
            try:
                if not self._locate_by_offsets() and self.status != "no GIL":
                    self.status, self.found_by, self.why, self.sites = kept  # finalizing: no interpreters left
            except OSError as e:  # exiting, or exec'ing: not a reason to doubt what was found
                self.status, self.found_by, self.why, self.sites = kept
                self.unreadable = isinstance(e, ProcessLookupError)
        elif self.found_by == FOUND_BY_SHAPE and tuple(self.proc.version[:2]) >= (3, 12):
            try:
                own = self._walk.own_gils(self.memory, self.proc.runtime, self.sites[0])
            except OSError:
                own = None
            if own is not None:
                self.sites = [self.sites[0], *own]
        elif not self.sites and self.status != "no GIL":
            self.locate()
        return (self.status, tuple(self.sites)) != before

    # ----------------------------------------------------------------- confirming a shape
    def confirm_by_holder(self, tids: set[int], seen: Iterable[int] = ()) -> bool:
        """A candidate whose holder is one of the process's threads is taken as the GIL: a holder
        `seen` in its samples since the last tick, or in one taken now."""
        site = self.candidate
        if site is None:
            return False
        for holder in seen:
            if holder and self.holders.resolve(holder, tids, learn=True) is not None:
                self._accept(site)
                return True
        try:
            holder = self.sample_site(site)[1]
        except OSError:
            return False
        if holder and self.holders.resolve(holder, tids, learn=True) is not None:
            self._accept(site)
            return True
        return False

    def consider_futex(self, addr: int) -> None:
        """A thread sleeps on addr inside _PyRuntime: a GIL waiter, if the GIL is not yet known."""
        if self.sites or self.status == "no GIL" or self.failed:
            return
        site = self.candidate
        if site is not None:
            if addr - site.address in site.layout.futex_words():
                self._accept(site)
                return
        start, end = self.runtime_range
        layouts = [GilLayout(self._condvar)] if self._condvar is not None else [GilLayout(c) for c in CONDVAR_LAYOUTS]
        for layout in layouts:
            for word in layout.futex_words():
                base = addr - word
                if base < start or base + layout.size > end or base in self.rejected:
                    continue
                try:
                    buf = self.memory.read(base, layout.size)
                except OSError:
                    return
                if layout.plausible(buf):
                    if site is not None:  # a GIL waiter sleeps elsewhere: the candidate was a lookalike
                        self.rejected.add(site.address)
                    self._accept(GilSite(base, 0, layout))  # a waiter sleeps on its words: confirmed
                    return

    def _accept(self, site: GilSite) -> None:
        self.candidate = None
        self.sites = [site]
        self.status, self.found_by, self.why = "located", FOUND_BY_SHAPE, ""
        self._condvar = site.layout.condvar
        if tuple(self.proc.version[:2]) >= (3, 12):
            try:
                self.sites += self._walk.own_gils(self.memory, self.proc.runtime, site)
            except OSError:
                pass

    def reject(self, why: str) -> None:
        """The GIL in use contradicts the threads: drop it and look again."""
        for site in self.sites or ([self.candidate] if self.candidate is not None else []):
            self.rejected.add(site.address)
        self.sites, self.candidate = [], None
        self.status, self.found_by, self.why = "not located", None, why
        self.holders.forget_all()

    def fail(self, error: Exception) -> None:
        """An error of gilviz's own in reading this GIL (one no check of a misread foresaw): it is
        not read again in this process, where it would fail alike, and never guessed at."""
        self.failed = f"{type(error).__name__}: {error}"
        self.sites, self.candidate = [], None
        self.status, self.found_by = "not located", None
        self.why = f"gilviz stopped reading it after an error of its own ({self.failed}), worth reporting"
        self.holders.forget_all()
        self._thread_states.clear()

    # ----------------------------------------------------------------- sampling
    def sample_site(self, site: GilSite) -> tuple[int, int, int, int]:
        """(locked, holder pointer, waiters, switch_number); OSError once the process is gone."""
        layout = site.layout
        _interval, holder, locked, switch, wrefs = layout.sample_struct.unpack(
            self.memory.read(site.address, layout.sample_struct.size))
        return locked, holder, wrefs >> 3, switch

    def sample(self) -> tuple[int, int, int, int]:
        return self.sample_site(self.sites[0])

    def switch_interval_us(self) -> int | None:
        if not self.sites:
            return None
        site = self.sites[0]
        try:
            return read_u64(self.memory, site.address + site.layout.shift)
        except OSError:
            return None

    # ----------------------------------------------------------------- per-thread flags (3.15+)
    @property
    def has_thread_flags(self) -> bool:
        return self.offsets is not None and self.offsets.has_thread_gil_flags and bool(self.sites)

    def refresh_thread_states(self) -> None:
        """tid -> PyThreadState, for reading each thread's own GIL flags."""
        if self.offsets is None:
            return
        found: dict[int, int] = {}
        try:
            for interp in debug_offsets.interpreters(self.memory, self.offsets, self.proc.runtime.address):
                for ts in debug_offsets.thread_states(self.memory, self.offsets, interp):
                    found[ts.native_thread_id] = ts.address
        except OSError:
            return
        self._thread_states = found

    def thread_state(self, tid: int) -> int | None:
        return self._thread_states.get(tid)

    def thread_flags(self, tstate: int) -> tuple[int, int]:
        """(holds_gil, gil_requested) of one thread state, as CPython 3.15+ keeps them."""
        assert self.offsets is not None
        return struct.unpack("<ii", self.memory.read(tstate + self.offsets.thread["holds_gil"], 8))

    def close(self) -> None:
        close = getattr(self.memory, "close", None)
        if close is not None:
            close()


class GilCheck:
    """Watches a located GIL against what the threads do, over windows of about a second.

    A GIL that threads wait for but that is never held, or that is held by no thread of the
    process, is not the GIL: the verdict says why, and the sampler drops it.
    """

    WINDOW_US = 1_000_000

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.span = self.samples = self.locked = self.resolved = 0
        self.waited = 0  # us threads spent asleep on the GIL's words
        self.elsewhere = 0  # us threads spent asleep on other futexes inside _PyRuntime
        self.queued = 0  # us threads spent waiting for a core

    def add(self, dt: int, samples: int, locked: int, resolved: int, waited: int, elsewhere: int,
            queued: int = 0) -> str | None:
        self.span += dt
        self.samples += samples
        self.locked += locked
        self.resolved += resolved
        self.waited += waited
        self.elsewhere += elsewhere
        self.queued += queued
        if self.span < self.WINDOW_US:
            return None
        verdict = self.verdict()
        self.reset()
        return verdict

    def verdict(self) -> str | None:
        if not self.samples:
            return None
        held = self.locked / self.samples
        # (a GIL handed to a thread that waits for a core is free until that thread runs: beside
        # CPU hogs, for most of a second while the others sleep on it; no verdict then)
        if held < 0.02 and self.waited > 0.3 * self.span and self.queued < 0.3 * self.span:
            return "threads waited for it while it was never held"
        if held > 0.5 and self.resolved < 0.1 * self.locked:
            return "it was held, but by none of the process's threads"
        if self.elsewhere > 0.3 * self.span and self.waited == 0 and held < 0.5:
            return "threads waited on another lock inside _PyRuntime, never on it"
        return None


class InterpreterWalk:
    """Subinterpreters' own GILs on 3.12, which publishes no debug offsets (PEP 684).

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

    def own_gils(self, memory: Memory, runtime, main_site: GilSite) -> list[GilSite]:
        main_gil, layout = main_site.address, main_site.layout
        head_buf = memory.read(runtime.address, 1024)
        if self._main_field is None:
            self._main_field = self._find_main_field(head_buf, runtime.address, main_gil)
            if self._main_field is None:
                return []
        main = struct.unpack_from("<Q", head_buf, self._main_field)[0]
        head = struct.unpack_from("<Q", head_buf, self._main_field - 8)[0]
        gil_offset = main_gil - main
        found: list[int] = []
        interp, seen = head, set()
        while is_pointer(interp) and interp != main and interp not in seen and len(seen) < self.MAX_INTERPRETERS:
            seen.add(interp)
            if layout.plausible(memory.read(interp + gil_offset, layout.size)):
                found.append(interp + gil_offset)
            interp = self._next(memory, interp, main, gil_offset, layout)
        if not found and head != main:  # learned from a runtime still being set up, perhaps: learn again next time
            self._main_field = self._next_field = None
        # 3.12 publishes no interpreter ids: number them in the order they were made
        return [GilSite(address, n, layout) for n, address in enumerate(reversed(found), start=1)]

    @staticmethod
    def _find_main_field(buf: bytes, runtime: int, main_gil: int) -> int | None:
        for off in range(8, len(buf) - 8, 8):
            value = struct.unpack_from("<Q", buf, off)[0]
            if runtime <= value < main_gil and main_gil - value < 1 << 20:
                if struct.unpack_from("<Q", buf, off + 8)[0] == value:
                    off += 8  # head and main both point at the main interpreter (the only one): main is second
                head = struct.unpack_from("<Q", buf, off - 8)[0]
                if is_pointer(head):
                    return off
        return None

    def _next(self, memory: Memory, interp: int, main: int, gil_offset: int, layout: GilLayout) -> int:
        buf = memory.read(interp, 16384)  # 3.13 keeps `next` after the pending-calls table
        if self._next_field is None:
            for off in range(0, len(buf), 8):
                value = struct.unpack_from("<Q", buf, off)[0]
                if value == main:
                    self._next_field = off
                    break
                if is_pointer(value) and value != interp:
                    try:
                        if layout.plausible(memory.read(value + gil_offset, layout.size)):
                            self._next_field = off
                            break
                    except OSError:
                        continue
            if self._next_field is None:
                return 0
        return struct.unpack_from("<Q", buf, self._next_field)[0]


class HolderMap:
    """PyThreadState pointer -> OS thread id, learned from the target's memory."""

    def __init__(self, memory: Memory, version: tuple[int, ...]):
        self.memory = memory
        self.version = tuple(version[:2])
        self.direct = self.version >= (3, 11) or not self.version
        self.offset: int | None = None  # of the tid (direct) or of the pthread_t (3.9/3.10)
        self.known = False  # the offset comes from CPython's debug offsets
        self._tid_offset = _PTHREAD_TID_OFFSET  # of the tid in glibc's struct pthread
        self._cache: dict[int, int] = {}

    def use_offset(self, native_thread_id: int) -> None:
        self.direct, self.offset, self.known = True, native_thread_id, True

    def resolve(self, pointer: int, tids: set[int], learn: bool = True) -> int | None:
        tid = self._cache.get(pointer)
        if tid is not None and tid in tids:
            return tid
        if self.offset is None and not learn:
            return None
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

    def forget_all(self) -> None:
        self._cache.clear()
        if not self.known:
            self.offset = None

    def _resolve_direct(self, pointer: int, tids: set[int]) -> int | None:
        if self.offset is not None:
            value = read_u64(self.memory, pointer + self.offset)
            return value if value in tids else None
        buf = self.memory.read(pointer, 1024)
        hits = [off for off in range(0, len(buf) - 7, 8) if struct.unpack_from("<Q", buf, off)[0] in tids]
        expected = _NATIVE_TID_OFFSET.get(self.version)
        if expected is not None:
            hits = [off for off in hits if off == expected]  # a thread id anywhere else is a coincidence
        if not hits:
            return None
        self.offset = hits[0]
        return struct.unpack_from("<Q", buf, self.offset)[0]

    def _pthread_tid(self, pthread: int, tids: set[int], offsets) -> tuple[int, int] | None:
        if not is_pointer(pthread):
            return None
        try:
            pbuf = self.memory.read(pthread, 1024)
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
        buf = self.memory.read(pointer, 1024)
        if self.offset is not None:
            pthread = struct.unpack_from("<Q", buf, self.offset)[0]
            hit = self._pthread_tid(pthread, tids, (self._tid_offset,))
            return hit[1] if hit else None
        guess = _PTHREAD_ID_OFFSET.get(self.version)
        order = [guess] if guess is not None else list(range(0, 1024, 8))
        for off in order:
            pthread = struct.unpack_from("<Q", buf, off)[0]
            hit = self._pthread_tid(pthread, tids, _PTHREAD_TID_SEARCH)
            if hit:
                self.offset, self._tid_offset = off, hit[0]
                return hit[1]
        return None


_PROBE_MODULES = frozenset({__name__, debug_offsets.__name__})


def raised_in_probe(error: BaseException) -> bool:
    """Whether the GIL probe's own code raised it, or code it called: its traceback passes through
    this module or the debug offsets' (an error elsewhere says nothing of the GIL's reading)."""
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") in _PROBE_MODULES:
            return True
        tb = tb.tb_next
    return False
