"""Per-thread kernel state from /proc/PID/task/TID/{stat,schedstat,syscall}.

The files stay open and are re-read with os.pread: opening them on every read costs
four times as much. A thread whose schedstat did not move since the last read has not
run, so its stat and syscall cannot have changed either and are not read again: that
is what keeps hundreds of sleeping threads cheap. A thread that runs but is known to be in
the wait it was last read in (a GIL waiter waking at every switch interval, which the
sampler follows through the GIL's hand-offs) has its syscall file read only now and then.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from typing import Callable, NamedTuple

from ..native import compiled as _gilloop

# What a thread asleep in a syscall is waiting for, by syscall number.
# "sleep?" means: a sleep when it waits on no file descriptor, else I/O.
# A wait for a child process (wait4, waitid: subprocess.run, Process.join) is a join; a file lock
# (flock), a System V semaphore (semop) or message queue (msgrcv, mq_timedreceive) a lock or a
# queue; a wait for a signal (pause, sigsuspend, sigtimedwait: signal.pause) a sleep.
_X86_64 = {
    0: "io", 1: "io", 7: "sleep?", 17: "io", 18: "io", 19: "io", 20: "io", 23: "sleep?",
    34: "sleep", 35: "sleep", 40: "io", 42: "io", 43: "io", 44: "io", 45: "io", 46: "io", 47: "io",
    61: "lock", 65: "lock", 70: "lock", 73: "lock", 74: "io", 75: "io", 128: "sleep", 130: "sleep",
    202: "futex", 220: "lock", 230: "sleep", 232: "io", 243: "lock", 247: "lock", 257: "io",
    270: "sleep?", 271: "sleep?", 275: "io", 281: "io", 288: "io", 299: "io", 307: "io", 426: "io",
    441: "io", 449: "lock",
}
_AARCH64 = {
    22: "io", 32: "lock", 56: "io", 63: "io", 64: "io", 65: "io", 66: "io", 67: "io", 68: "io",
    72: "sleep?", 73: "sleep?", 76: "io", 82: "io", 83: "io", 95: "lock", 98: "futex", 101: "sleep",
    115: "sleep", 133: "sleep", 137: "sleep", 183: "lock", 188: "lock", 192: "lock", 193: "lock",
    202: "io", 203: "io", 206: "io", 207: "io", 211: "io", 212: "io", 242: "io", 243: "io",
    260: "lock", 269: "io", 426: "io", 441: "io", 449: "lock",
}
SYSCALL_KINDS = {"x86_64": _X86_64, "aarch64": _AARCH64}.get(platform.machine(), _X86_64)
# A timed wait (a futex with a timeout, poll) that a stop interrupted goes on, once continued, in
# restart_syscall, whose text keeps the wait's arguments: read as the wait it was last read in.
RESTART_SYSCALL = {"x86_64": "219 ", "aarch64": "128 "}.get(platform.machine(), "219 ")
# For "sleep?" syscalls, the argument that counts the file descriptors waited on.
NFDS_ARG = {7: 1, 23: 0, 270: 0, 271: 1, 72: 0, 73: 1}


CLOCK_MONOTONIC_COARSE = 6  # Linux's clock read at scheduler ticks: its resolution is one (a jiffy)


@functools.cache
def scheduler_tick_us() -> int:
    """The longest a running thread's CPU time goes unreported in schedstat: the kernel's scheduler
    tick (1/CONFIG_HZ: the coarse clock's resolution, or the kernel's build configuration where it
    is published), else 10 ms (HZ=100, the longest); a second where CPUs may stop their tick while
    one thread runs (nohz_full)."""
    try:
        with open("/sys/devices/system/cpu/nohz_full", "rb") as f:
            if f.read().strip() not in (b"", b"(null)"):
                return 1_000_000
    except OSError:
        pass
    return coarse_tick_us() or configured_tick_us() or 10_000


def coarse_tick_us() -> int | None:
    """The resolution of the coarse clock, which the kernel moves at its scheduler ticks."""
    try:
        tick_us = round(time.clock_getres(CLOCK_MONOTONIC_COARSE) * 1e6)
    except OSError:
        return None
    return tick_us if 1000 <= tick_us <= 10_000 else None  # (HZ=1000 to HZ=100)


def configured_tick_us() -> int | None:
    """1/CONFIG_HZ from the kernel's build configuration, where it is published."""
    import gzip
    import zlib
    release = os.uname().release
    for path, opener in ((f"/boot/config-{release}", open), ("/proc/config.gz", gzip.open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return 1_000_000 // int(line[10:])
        except (OSError, ValueError, EOFError, ZeroDivisionError, zlib.error):
            continue
    return None


@functools.lru_cache(maxsize=8192)  # a thread asleep in one place shows the same text read after read
def classify_syscall(text: str, gil_ranges: tuple[tuple[int, int], ...] = ()) -> str:
    """Turns the text of /proc/.../syscall into running, gil, sleep, io, lock or other."""
    if not text or text.startswith("running"):
        return "running"
    parts = text.split()
    try:
        nr = int(parts[0])
    except ValueError:
        return "other"
    kind = SYSCALL_KINDS.get(nr)
    if kind is None:
        return "other"
    if kind == "futex":
        if gil_ranges and len(parts) > 1:
            addr = int(parts[1], 16)
            for low, high in gil_ranges:
                if low <= addr < high:
                    return "gil"
        return "lock"
    if kind == "sleep?":
        arg = NFDS_ARG[nr]
        nfds = int(parts[1 + arg], 16) if len(parts) > 1 + arg else 1
        return "sleep" if nfds == 0 else "io"
    return kind


def _restarted(text: str, before: str) -> str:
    """restart_syscall's text as the wait it restarts (gilviz/_gilloop.c's `restarted`)."""
    nr, _, rest = before.partition(" ")
    if not nr.isdigit() or not rest or before.startswith(RESTART_SYSCALL):
        return text
    return nr + text[len(RESTART_SYSCALL) - 1:]


def parse_stat(text: str) -> tuple[str, int]:
    """State letter and the CPU last run on; the name may hold spaces and parentheses."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field 39 (processor) is rest[36]
    return rest[0], int(rest[36])


def parse_schedstat(text: str) -> tuple[int, int, int]:
    on, wait, slices = text.split()
    return int(on), int(wait), int(slices)


class ThreadReading(NamedTuple):  # (a tuple: _gilloop.c's read_threads makes them too)
    tid: int
    state: str  # kernel state letter
    cpu: int
    on_ns: int  # cumulative time on a CPU
    runq_ns: int  # cumulative time runnable, waiting for a CPU
    slices: int
    syscall: str  # raw text of the syscall file
    moved: bool  # schedstat changed since the previous reading


# A thread unchanged for a while is read less often, at a phase of its own: (unchanged reads,
# read one read in this many). What it did meanwhile shows, in full, at its next read.
IDLE_STEPS = ((32, 8), (16, 4), (6, 2))
# Over its CPU budget, the sampler reads idle threads more sparsely before it lengthens the
# ticks (capture/budget.py): at sparseness k, the steps come k times sooner and read k times
# less often. (At 1000 threads, 2 cut a tick's cost by a fifth; 4 saved nothing more.)
SPARSENESS = (1, 2)


def read_every_table(sparseness: int = 1) -> tuple[int, ...]:
    """Reads between two reads of a thread, by how many reads it has been unchanged (the last
    entry for that many and more)."""
    steps = tuple((max(1, after // sparseness), n * sparseness) for after, n in IDLE_STEPS)
    return tuple(next((n for after, n in steps if u >= after), 1) for u in range(steps[0][0] + 1))


# ...by sparseness: (the table, the unchanged reads from which a thread is skipped at all)
_READ_EVERY = {k: (table, next(u for u, n in enumerate(table) if n > 1))
               for k, table in ((k, read_every_table(k)) for k in SPARSENESS)}
STAT_AFTER_NS = 1_000_000  # on a CPU less than this since the last read: its stat is not re-read
WAITS_READ_EVERY = 8  # a thread known to be in the wait it was read in has its syscall file read one read in this many
# What a stopped thread (SIGSTOP, Ctrl-Z, a debugger) is read as being in: what the kernel's syscall
# file says of a thread blocked outside any syscall, which the state rules count as blocked, "other"
STOPPED_SYSCALL = "-1 stopped"
STOPPED_STATES = ("T", "t")  # stat's state letters: stopped by a signal, by a tracer
LIST_EVERY = 16  # reads between listings of the task folder when the thread count has not changed
READ_CHUNK = 64  # threads read between two calls of a read's `between` (about 0.2 ms of reads)


class _OpenThread:
    __slots__ = ("tid", "stat", "sched", "sys", "last", "unchanged")

    def __init__(self, task_dir: str, tid: int):
        self.tid = tid
        self.sched = os.open(f"{task_dir}/{tid}/schedstat", os.O_RDONLY)
        self.stat = os.open(f"{task_dir}/{tid}/stat", os.O_RDONLY)
        try:
            self.sys = os.open(f"{task_dir}/{tid}/syscall", os.O_RDONLY)
        except PermissionError:
            self.sys = -1
        self.last: ThreadReading | None = None
        self.unchanged = 0  # reads in a row that found its schedstat where it was

    def close(self) -> None:
        for fd in (self.sched, self.stat, self.sys):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass


class ThreadProbe:
    """Reads every thread of one process; threads come and go between reads."""

    def __init__(self, pid: int):
        self.pid = pid
        self.sparseness = 1  # of SPARSENESS: set by the sampler's budget
        self.task_dir = f"/proc/{pid}/task"
        try:  # (its link count read through the open folder: no path to look up at every tick)
            self._task_fd = os.open(self.task_dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            self._task_fd = -1  # gone already: its first read says so
        self._threads: dict[int, _OpenThread] = {}
        self._reads = 0
        self._links = -1  # the task folder's link count at the last listing: 2 + its threads
        self._listed_at = 0
        # Waits followed (the start of their syscall text): a thread read in one is `parked` until
        # the caller, who alone can know it left the wait, takes it out; while it is, its syscall
        # file is not read (a GIL waiter wakes at every switch interval: the file costs as much
        # as its schedstat), but one read in WAITS_READ_EVERY, and the text read last stands.
        self.waits: tuple[str, ...] = ()
        self.parked: set[int] = set()
        # Parked threads that moved at the last read, their syscall text carried over, not read: one
        # that then stops moving would keep it for good (a read finds its schedstat where it was,
        # its syscall too, then). It may have left the wait just before the samples could see it
        # (took the GIL, went on to block elsewhere: a join): at the next read that finds it still,
        # its syscall file is read.
        self.carried: set[int] = set()
        # Its first thread found stopped at its last look. A stopped thread's schedstat does not move,
        # so it is not read again and would keep the state it had (asleep on the GIL, say). Stopping
        # a process stops all its threads (a signal stops the group, a debugger each thread), and
        # wakes each to stop it: the first thread's stat is read when it moved (a stat costs about
        # ten times a schedstat) and while it is stopped; while it is, every thread's stat is.
        self.stopped = False
        self._found_stopped: dict[int, ThreadReading] = {}  # threads found stopped since: as read then

    def thread_count_changed(self) -> bool:
        """A thread came or went since the last listing. The task folder's link count moves with
        its threads, and costs 1 us at 1000 threads, where the process's stat costs 18 (it sums
        every thread's CPU time). (Once the process is gone the folder counts no thread.)"""
        try:
            return os.fstat(self._task_fd).st_nlink != self._links
        except OSError:
            return True

    def read(self, list_threads: bool = True,
             between: Callable[[], None] | None = None) -> tuple[list[ThreadReading], list[int]]:
        """Returns (readings of live threads, tids gone since the last read).

        With list_threads False, only the threads already known are read (listing the
        task folder costs as much as reading a few threads). Raises ProcessLookupError
        when the process itself is gone. `between` is called after each READ_CHUNK threads
        but the last (the sampler samples the GIL there: a read of 1000 threads takes a few
        milliseconds).
        """
        self._reads += 1
        # a new thread is noticed at the next read: its count is one read, listing them is many
        list_threads = list_threads and (self.thread_count_changed() or not self._threads
                                         or self._reads - self._listed_at >= LIST_EVERY)
        if list_threads:
            if self._task_fd < 0:
                raise ProcessLookupError(self.pid)
            try:
                links = os.fstat(self._task_fd).st_nlink  # (before the listing: a thread born between is listed again)
                tids = [int(t) for t in os.listdir(self.task_dir)]
            except FileNotFoundError:
                raise ProcessLookupError(self.pid) from None
            self._links = links
            self._listed_at = self._reads
        threads = self._threads
        read_every, idle_from = _READ_EVERY[self.sparseness]
        leader = threads.get(self.pid)
        if leader is not None and leader.unchanged >= idle_from:
            leader.unchanged = 0  # (read at every read, asleep or not: its moving says a stop)
        if _gilloop is not None:
            if list_threads:
                open_threads = []
                for tid in tids:
                    th = threads.get(tid)
                    if th is None:
                        try:
                            th = threads[tid] = _OpenThread(self.task_dir, tid)
                        except OSError:
                            continue  # exited between listdir and open
                    open_threads.append(th)
            else:
                open_threads = list(threads.values())  # (the known threads, in the same order: no loop here)
            how = (self._reads, read_every, idle_from, STAT_AFTER_NS, IDLE_STEPS[-1][1], ThreadReading, self.parked,
                   self.waits, WAITS_READ_EVERY, self.carried)
            if between is None or len(open_threads) <= READ_CHUNK:
                readings = _gilloop.read_threads(open_threads, *how)
            else:
                readings = []
                for start in range(0, len(open_threads), READ_CHUNK):
                    if start:
                        between()
                    readings += _gilloop.read_threads(open_threads[start : start + READ_CHUNK], *how)
        else:
            readings = self._read_in_python(tids if list_threads else list(threads), read_every, idle_from, between)
        leader = leader or threads.get(self.pid)  # (opened at this read)
        if leader is not None and (self.stopped or (leader.last is not None and leader.last.moved)):
            self.stopped = self._stopped_as(leader) is not None
        if self.stopped:
            readings = self._as_stopped(readings)
        elif self._found_stopped:
            self._found_stopped.clear()
        if not list_threads:
            return readings, []
        live = set(tids)
        gone = [tid for tid in threads if tid not in live]
        for tid in gone:
            threads.pop(tid).close()
            self.parked.discard(tid)
            self.carried.discard(tid)
            self._found_stopped.pop(tid, None)
        if not readings and not os.path.exists(self.task_dir):
            raise ProcessLookupError(self.pid)
        return readings, gone

    def _read_syscall(self, th: _OpenThread, last: ThreadReading | None) -> str:
        """Its syscall file's text (a restart as the wait it restarts), and whether it is parked."""
        syscall = os.pread(th.sys, 256, 0).decode() if th.sys >= 0 else "running"
        if syscall.startswith(RESTART_SYSCALL) and last is not None:
            syscall = _restarted(syscall, last.syscall)
        if self.waits:
            if syscall.startswith(self.waits):
                self.parked.add(th.tid)
            else:
                self.parked.discard(th.tid)
        return syscall

    @staticmethod
    def _stopped_as(th: _OpenThread) -> str | None:
        """Its stat's state letter where it says stopped (T: by a signal, t: by a tracer), else None."""
        try:
            state = parse_stat(os.pread(th.stat, 1024, 0).decode(errors="replace"))[0]
        except (OSError, ValueError, IndexError):
            return None  # (ended meanwhile: its next read says so)
        return state if state in STOPPED_STATES else None

    def _as_stopped(self, readings: list[ThreadReading]) -> list[ThreadReading]:
        """The readings with each thread its stat says is stopped read as blocked in STOPPED_SYSCALL,
        as moved at the read that finds it stopped (the state rules look at its syscall again), as
        asleep in it at the reads after while it does not move. Its own reading is left as it was
        (th.last): once it goes on, what it waits in is read against that."""
        threads, known = self._threads, self._found_stopped
        out = []
        for r in readings:
            if not r.moved:
                stopped = known.get(r.tid)
                if stopped is not None:  # (to be continued it must run: its schedstat would have moved)
                    out.append(stopped)
                    continue
            if r.state in STOPPED_STATES:
                state = r.state
            else:
                th = threads.get(r.tid)
                state = self._stopped_as(th) if th is not None else None
            if state:
                stopped = r._replace(state=state, syscall=STOPPED_SYSCALL, moved=True)
                known[r.tid] = stopped._replace(moved=False)  # (from its next read: asleep in it)
                out.append(stopped)
            else:
                known.pop(r.tid, None)
                out.append(r)
        return out

    def _read_in_python(self, tids: list[int], read_every: tuple[int, ...], idle_from: int,
                        between: Callable[[], None] | None = None) -> list[ThreadReading]:
        """The reading of every thread, where gilviz/_gilloop.c (read_threads, the same) is not built."""
        pread = os.pread
        threads = self._threads
        idle_most = len(read_every) - 1
        readings = []
        reads = self._reads
        waits, parked, carried = self.waits, self.parked, self.carried
        for i, tid in enumerate(tids):
            if between is not None and i and i % READ_CHUNK == 0:
                between()
            th = threads.get(tid)
            if th is None:
                try:
                    th = _OpenThread(self.task_dir, tid)
                except OSError:
                    continue  # exited between listdir and open
                threads[tid] = th
            last = th.last
            if last is not None and th.unchanged >= idle_from:
                if (reads + tid) % read_every[th.unchanged if th.unchanged < idle_most else idle_most]:
                    # asleep a while: read less often; what it did meanwhile shows at its next read
                    th.unchanged += 1
                    readings.append(last if not last.moved else last._replace(moved=False))
                    continue
            try:
                on, runq, slices = parse_schedstat(pread(th.sched, 128, 0).decode())
                if last is not None and last.on_ns == on and last.runq_ns == runq and last.slices == slices:
                    if carried and tid in carried:  # still, after a move its file was not read at
                        carried.discard(tid)
                        syscall = self._read_syscall(th, last)
                        if syscall != last.syscall:  # (left the wait before it stopped: moved into this one)
                            th.unchanged = 0
                            r = last._replace(state="R" if syscall.startswith("running") else "S", syscall=syscall,
                                              moved=True)
                            th.last = r
                            readings.append(r)
                            continue
                    r = last if not last.moved else last._replace(moved=False)
                    th.unchanged += 1
                else:
                    th.unchanged = 0
                    if waits and last is not None and (reads + tid) % WAITS_READ_EVERY and tid in parked:
                        syscall = last.syscall  # still in the wait its last read found
                        carried.add(tid)
                    else:
                        syscall = self._read_syscall(th, last)
                        carried.discard(tid)
                    if last is None or on - last.on_ns >= STAT_AFTER_NS or reads % IDLE_STEPS[-1][1] == 0:
                        state, cpu = parse_stat(pread(th.stat, 1024, 0).decode(errors="replace"))
                    else:
                        # on a CPU only briefly (a GIL waiter's wake-up): its core is what it was,
                        # and whether it is running now the syscall file tells as well
                        state, cpu = ("R" if syscall.startswith("running") else "S"), last.cpu
                    r = ThreadReading(tid, state, cpu, on, runq, slices, syscall, True)
            except (OSError, ValueError, IndexError):
                continue  # the thread ended while being read
            th.last = r
            readings.append(r)
        return readings

    def close(self) -> None:
        for th in self._threads.values():
            th.close()
        self._threads.clear()
        if self._task_fd >= 0:
            os.close(self._task_fd)
            self._task_fd = -1


def thread_name(pid: int, tid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return str(tid)
