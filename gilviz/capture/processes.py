"""The processes of the target: found, followed, and their GILs kept in step.

`ProcessTable` holds every process being sampled (the target and its descendants): it finds
new children, notices a process turning into Python (a spawned child) or into another Python
(an exec), keeps each process's GILs up to date (subinterpreters come and go, a switch
interval changes), and says so in `Process` records. `WatchedProcess` is one of them, with
its GIL samples between two ticks and the running check of its GIL.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import psutil

from ..probes.gil import GilCheck, GilProbe, raised_in_probe
from ..probes.pyprocess import PythonProcess, inspect
from ..probes.threads import ThreadProbe, classify_syscall, thread_name
from ..stream import GilTick, Notice, Process, ProcessEnd, Record, Thread, ThreadTick
from .states import ThreadMemory

YOUNG_PROCESS_S = 3.0  # a process not yet Python this long after it appeared is taken as not Python
NAMING_S = 5.0  # a new thread with its process's name is looked at again this long for a name of its own
MAX_SEEN_HOLDERS = 64  # last holders of a GIL kept over a tick; more: the lines of every thread that ran are read
MAX_FLAG_THREADS = 8  # threads whose own GIL flags are read with each GIL sample (3.15+; _gilloop.c MAX_FLAGS)
NEW_THREAD_WATCH_NS = 500_000_000  # after a thread appears, its process's GILs are looked at...
NEW_THREAD_REFRESH_NS = 20_000_000  # ...this often (it may make a subinterpreter with its own GIL)


CHILDREN_LOOK_EVERY_S = 2.0  # every process is walked at least this often, whatever last_pid says
NEW_IDS_MAX = 512  # ids given out since the last look that are looked at one by one; more: walk them all


def parent_if_process(pid: int) -> int | None:
    """The parent of process `pid`, None if that id is no process now (gone, or a thread's id)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
        tgid = int(text.split(b"\nTgid:")[1].split()[0])
        ppid = int(text.split(b"\nPPid:")[1].split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return ppid if tgid == pid else None


def last_pid() -> int | None:
    """The last process or thread id the kernel gave out (/proc/loadavg's last field): while it
    stands still, no process was born anywhere, so there is no new child to look for. (Finding
    children walks every process of the machine: about 1.3 ms, four times a second.) Where it may
    not say so (gilviz in a pid namespace of its own over another's /proc, a /proc/loadavg made up
    by a container's runtime), the look every CHILDREN_LOOK_EVERY_S still finds them."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class GilSamples:
    """One GIL's samples since the last tick."""

    interp: int
    samples: int = 0
    held: int = 0
    contended: int = 0
    holders: Counter = field(default_factory=Counter)
    switch_number: int | None = None
    last_switch_number: int | None = None
    # Who may have run Python (a frame moves only under the GIL): the GIL's last holder (a
    # PyThreadState) at the latest sample, held or not; since the last tick, how many samples found
    # another than the sample before, and every last holder found (None: too many to keep)
    last_holder: int | None = None
    turns: int = 0
    seen: set[int] | None = field(default_factory=set)
    # (switch_number, last_holder) at the latest sample before the last tick, None: no sample in it
    at_last_tick: tuple[int, int | None] | None = None

    def clear(self) -> None:
        self.samples = self.held = self.contended = 0
        self.holders.clear()
        self.turns = 0
        self.seen = set()

    def add_turns(self, turns: tuple | None) -> None:
        """The C loop's account of the last holders it read (see gilviz/_gilloop.c)."""
        if turns is None:
            return
        first, last, changes, seen = turns
        self.turns += changes + (first != self.last_holder)
        self.last_holder = last
        if seen is None or self.seen is None or len(self.seen) + len(seen) > MAX_SEEN_HOLDERS:
            self.seen = None
        else:
            self.seen.update(seen)

    def switches(self) -> int:
        """Hand-offs since the last tick."""
        n = 0
        if self.switch_number is not None:
            if self.last_switch_number is not None:
                n = max(0, self.switch_number - self.last_switch_number)
            self.last_switch_number = self.switch_number
        return n


@dataclass
class WatchedProcess:
    pid: int
    probe: ThreadProbe
    python: PythonProcess | None
    gil: GilProbe | None
    threads: dict[int, ThreadMemory] = field(default_factory=dict)
    tids: set[int] = field(default_factory=set)
    sites: dict[int, GilSamples] = field(default_factory=dict)  # by GIL address
    # (3.9 to 3.12) the samples since the last tick of a GIL-shaped struct not yet confirmed
    candidate: GilSamples | None = None
    candidate_address: int = 0
    check: GilCheck = field(default_factory=GilCheck)
    # 3.15+: threads whose own GIL flags are read with each GIL sample (tid -> PyThreadState)
    watched: dict[int, int] = field(default_factory=dict)
    switch_interval_us: int | None = None
    ppid: int = 0
    command: str = ""
    born: float = 0.0  # when the sampler first saw it (monotonic s)
    new_thread_ns: int = -(1 << 62)  # when a thread of it was last seen for the first time
    next_gil_refresh_ns: int = 0
    # threads that had the process's own name when first seen (they may name themselves soon after)
    unnamed: dict[int, float] = field(default_factory=dict)
    os_name: str | None = None  # its main thread's OS name as first read (py-spy may rename the thread)
    stopped_since_us: int | None = None  # the first tick of a stop (probes.threads.ThreadProbe.stopped)
    stop_said: bool = False  # the stream said it was stopped

    def gil_state(self) -> str:
        if self.python is None:
            return "not python"
        return self.gil.status if self.gil else "not located"

    @property
    def main_samples(self) -> GilSamples | None:
        gil = self.gil
        return self.sites.get(gil.address) if gil is not None and gil.sites else None  # type: ignore[arg-type]

    def sample_gils(self) -> bool:
        """One sample of each of its GILs; False if it has none to sample, or none could be read."""
        gil = self.gil
        if gil is None or not gil.sites:
            return False
        asking = False
        if self.watched:
            # 3.15+: a thread spinning for the GIL is not in the condition variable's count of
            # sleepers, but its own gil_requested flag is set from its request to its turn
            try:
                asking = any(asks and not holds for holds, asks in map(gil.thread_flags, self.watched.values()))
            except OSError:
                pass
        read = False
        for site in gil.sites:
            acc = self.sites.get(site.address)
            if acc is None:
                continue
            try:
                locked, holder, waiters, switch = gil.sample_site(site)
            except OSError as e:
                gil.unreadable = isinstance(e, ProcessLookupError)
                break
            acc.samples += 1
            read = True
            if locked:
                acc.held += 1
                acc.holders[holder] += 1
            if waiters or asking:
                acc.contended += 1
            acc.switch_number = switch
            acc.add_turns((holder, holder, 0, (holder,)))  # (one sample, as the C loop tells its samples)
        return read

    def held_by(self, tids: set[int]) -> tuple[dict[int, float], dict[int, int], int]:
        """Per thread, the fraction of its GIL's samples this tick in which it held it; per GIL, the
        thread that held it most; and how many locked samples of the main GIL had a known holder."""
        gil = self.gil
        out: dict[int, float] = {}
        tops: dict[int, int] = {}
        resolved = 0
        if gil is None:
            return out, tops, resolved
        for address, acc in self.sites.items():
            if not acc.samples:
                continue
            best = 0
            for pointer, count in acc.holders.items():
                tid = gil.holders.resolve(pointer, tids)
                if tid is None:
                    continue
                out[tid] = out.get(tid, 0.0) + count / acc.samples
                if count > best:
                    best, tops[address] = count, tid
                if address == gil.address:
                    resolved += count
        return out, tops, resolved

    def gil_ticks(self, tops: dict[int, int]) -> list[GilTick]:
        return [GilTick(self.pid, acc.samples, acc.held, acc.contended, acc.switches(), acc.interp,
                        tops.get(address, 0))
                for address, acc in self.sites.items()]

    def check_gil(self, dt: int, resolved: int, ticks: list[ThreadTick]) -> str | None:
        """Why its GIL contradicts what the threads did over the last second, if it does."""
        main = self.main_samples
        if main is None:
            return None
        waited = elsewhere = queued = 0
        for th in ticks:
            queued += th.runnable
            if th.waiting:
                spun = th.oncpu - th.running - th.native
                waited += th.waiting - spun if spun > 0 else th.waiting  # asleep on the GIL
            if th.lock:
                mem = self.threads.get(th.tid)
                if mem is not None and mem.in_runtime:
                    elsewhere += th.lock
        return self.check.add(dt, main.samples, main.held, resolved, waited, elsewhere, queued)

    def watch_flags(self, ticks: list[ThreadTick]) -> None:
        """Threads that were on a CPU or waited for the GIL last tick (the only ones that can be
        asking for it now) get their GIL flags read with each GIL sample of the next."""
        gil = self.gil
        watched: dict[int, int] = {}
        if gil is not None and gil.has_thread_flags and len(gil.sites) == 1:
            for th in ticks:
                if th.oncpu > 0 or th.waiting > 0:
                    tstate = gil.thread_state(th.tid)
                    if tstate is not None:
                        watched[th.tid] = tstate
                        if len(watched) >= MAX_FLAG_THREADS:
                            break
        self.watched = watched

    def clear_samples(self) -> None:
        for acc in self.sites.values():
            acc.clear()
        if self.candidate is not None:
            self.candidate.clear()

    def candidate_samples(self) -> GilSamples | None:
        """Where the samples of its GIL's candidate go between ticks (none once it has a GIL, which
        leaves no candidate):
        a holder among them confirms it at the tick, and the tick keeps them as its readings."""
        gil = self.gil
        site = gil.candidate if gil is not None else None
        if site is None:
            self.candidate = None
            return None
        if self.candidate is None or self.candidate_address != site.address:
            self.candidate, self.candidate_address = GilSamples(site.interp), site.address
        return self.candidate

    def close(self) -> None:
        self.probe.close()
        if self.gil:
            self.gil.close()


class ProcessTable:
    """The processes being sampled, from the target down."""

    def __init__(self, root_pid: int, sink: Callable[[Record], None], now_us: Callable[[], int], *,
                 follow_children: bool = True, gil_reenabled: bool = False):
        self.root_pid = root_pid
        self.sink = sink
        self.now_us = now_us
        self.follow_children = follow_children
        self.gil_reenabled = gil_reenabled  # PYTHON_GIL=1 on a free-threaded build
        self.by_pid: dict[int, WatchedProcess] = {}
        self._last_pid: int | None = None  # at the last look for children
        self._moved = True  # ...and whether it had moved then
        self._looked_at = -1e9  # when every process was last walked (monotonic s)
        self._unlisted: list[int] = []  # ids given out before the last look that were no process yet

    def __iter__(self):
        return iter(list(self.by_pid.values()))

    def __contains__(self, pid: int) -> bool:
        return pid in self.by_pid

    def add(self, pid: int, ppid: int, wait_for_python_s: float = 0.0) -> None:
        python = inspect(pid)
        deadline = time.monotonic() + wait_for_python_s
        while python is None and time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.005)  # just exec'd: the loader may not have mapped libpython yet
            python = inspect(pid)
        gil = self._gil_probe(python)
        proc = WatchedProcess(pid, ThreadProbe(pid), python, gil)
        proc.born = time.monotonic()
        try:
            baseline, _ = proc.probe.read()
        except ProcessLookupError:
            return
        self.by_pid[pid] = proc
        if gil is not None:
            proc.switch_interval_us = gil.switch_interval_us()
            proc.sites = {site.address: GilSamples(site.interp) for site in gil.sites}
        try:
            proc.command = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            pass
        proc.ppid = ppid
        self.emit(proc)
        for r in baseline:
            mem = self.new_thread(proc, r.tid)
            mem.on_ns, mem.runq_ns, mem.slices = r.on_ns, r.runq_ns, r.slices
            mem.call = classify_syscall(r.syscall, gil.gil_ranges if gil else ())
            proc.tids.add(r.tid)

    def _gil_probe(self, python: PythonProcess | None) -> GilProbe | None:
        if python is None:
            return None
        try:
            gil = GilProbe(python, self.gil_reenabled)
        except OSError:
            return None
        if gil.failed:
            self._say_failed(python.pid, gil)
        return gil

    def gil_failed(self, proc: WatchedProcess, error: Exception) -> None:
        """An error no check foresaw: raised by the GIL probe's own code (gil.raised_in_probe), it ends
        the reading of that process's GIL, not the recording; re-raised otherwise, and where its GIL
        had failed already."""
        if proc.gil is None or proc.gil.failed or not raised_in_probe(error):
            raise error
        proc.gil.fail(error)
        proc.watched = {}
        self.gil_changed(proc)
        self._say_failed(proc.pid, proc.gil)

    def _say_failed(self, pid: int, gil: GilProbe) -> None:
        self.sink(Notice(self.now_us(), f"pid {pid}: gilviz stopped reading its GIL ({gil.failed}; a fault of "
                                        "gilviz's, worth reporting): its threads' waits for it are read from their "
                                        "futexes, their time on a CPU is no longer split by it (counted as running)"))

    def emit(self, proc: WatchedProcess) -> None:
        gil = proc.gil
        self.sink(Process(
            t=self.now_us(), pid=proc.pid, ppid=proc.ppid, command=proc.command,
            python=proc.python.version_string if proc.python else None,
            gil=proc.gil_state(), switch_interval_us=proc.switch_interval_us,
            gil_found_by=gil.found_by if gil else None,
            gil_why=(gil.why or None) if gil and not gil.located else None,
            interpreters=gil.interpreters if gil else [],
        ))

    def new_thread(self, proc: WatchedProcess, tid: int) -> ThreadMemory:
        mem = ThreadMemory(name=thread_name(proc.pid, tid))
        proc.threads[tid] = mem
        if tid == proc.pid:
            proc.os_name = mem.name
        elif mem.name == proc.os_name:
            proc.unnamed[tid] = time.monotonic()
        self.sink(Thread(self.now_us(), tid, proc.pid, mem.name))
        return mem

    def rename_threads(self) -> None:
        """A thread is seen the moment it starts, before the code it runs names it (threading
        sets the OS name from 3.14; workloads set it themselves): look again at young ones."""
        now = time.monotonic()
        for proc in self.by_pid.values():
            for tid, seen in list(proc.unnamed.items()):
                mem = proc.threads.get(tid)
                if mem is None or now - seen > NAMING_S:
                    del proc.unnamed[tid]
                    continue
                name = thread_name(proc.pid, tid)
                if name != mem.name and name != str(tid):
                    mem.name = name
                    del proc.unnamed[tid]
                    self.sink(Thread(self.now_us(), tid, proc.pid, name))

    def end(self, proc: WatchedProcess) -> None:
        self.by_pid.pop(proc.pid, None)
        proc.close()
        self.sink(ProcessEnd(self.now_us(), proc.pid))

    def close(self) -> None:
        for proc in self.by_pid.values():
            proc.close()

    # ----------------------------------------------------------------- every REFRESH_EVERY_NS
    def refresh(self) -> None:
        self.find_children()
        self.recheck_young()
        self.refresh_gils()
        self.rename_threads()

    def find_children(self) -> None:
        """New descendants of the target. Walking every process of the machine takes about 1.3 ms,
        so it is done every CHILDREN_LOOK_EVERY_S, or when no counter says which ids are new; in
        between, only the ids the kernel gave out since the last look are looked at (a few
        dozen a second where a py-spy is started five times a second)."""
        if not self.follow_children:
            return
        pid = last_pid()
        now = time.monotonic()
        if pid is not None and pid > 0 and now - self._looked_at < CHILDREN_LOOK_EVERY_S and self._last_pid:
            if pid == self._last_pid and not self._moved:
                return
            if 0 <= pid - self._last_pid <= NEW_IDS_MAX:
                self._look_at_ids(self._last_pid, pid)
                return
        # one more look after it stood still: a child's id is given out before the child is listed
        self._moved, self._last_pid, self._looked_at, self._unlisted = pid != self._last_pid, pid, now, []
        try:
            children = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            if child.pid not in self.by_pid:
                try:
                    ppid = child.ppid()
                except psutil.Error:
                    continue
                self.add(child.pid, ppid)

    def _look_at_ids(self, last: int, now: int) -> None:
        """Children among the ids given out after `last` up to `now`, and among those that were no
        process yet at the last look (looked at once more)."""
        unlisted = []
        for pid in [*self._unlisted, *range(last + 1, now + 1)]:
            ppid = parent_if_process(pid)
            if ppid is None:
                if pid > last:
                    unlisted.append(pid)
            elif ppid in self.by_pid and pid not in self.by_pid:
                self.add(pid, ppid)
        self._moved, self._last_pid, self._unlisted = now != last, now, unlisted

    def recheck_young(self) -> None:
        """A process seen in its first moments may turn out to be Python (spawned children)."""
        now = time.monotonic()
        for proc in self.by_pid.values():
            if proc.python is None and now - proc.born < YOUNG_PROCESS_S:
                proc.python = inspect(proc.pid)
                if proc.python is not None:
                    proc.gil = self._gil_probe(proc.python)
                    if proc.gil is not None:
                        self.gil_changed(proc)
                    else:
                        self.emit(proc)

    def refresh_gils(self) -> None:
        """sys.setswitchinterval may change the interval at any time; subinterpreters come and go;
        a process seen before Py_Initialize had made its GIL has one now."""
        for proc in list(self.by_pid.values()):
            try:
                self._refresh_gil(proc)
            except Exception as e:
                self.gil_failed(proc, e)

    def _refresh_gil(self, proc: WatchedProcess) -> None:
        gil = proc.gil
        if gil is not None and gil.unreadable:
            # it exec'd (what was opened of its memory shows the image it left), or it is ending
            gil.unreadable = False
            python = inspect(proc.pid)
            fresh = self._gil_probe(python) if python is not None else None
            if fresh is not None and (python != proc.python or fresh.located):
                gil.close()
                proc.python, proc.gil = python, fresh
                self.gil_changed(proc)
                gil = fresh
            elif fresh is not None:
                fresh.close()
        if gil is None:
            return
        changed = gil.refresh()
        interval = gil.switch_interval_us()
        if changed or (interval is not None and interval != proc.switch_interval_us):
            self.gil_changed(proc)
        if gil.has_thread_flags:
            gil.refresh_thread_states()

    def watch_new_threads(self, proc: WatchedProcess, now_ns: int) -> None:
        """A new thread may make a subinterpreter with a GIL of its own: look for it soon."""
        gil = proc.gil
        if gil is None or now_ns - proc.new_thread_ns >= NEW_THREAD_WATCH_NS or now_ns < proc.next_gil_refresh_ns:
            return
        proc.next_gil_refresh_ns = now_ns + NEW_THREAD_REFRESH_NS
        if gil.refresh():
            self.gil_changed(proc)
        if gil.has_thread_flags:
            gil.refresh_thread_states()

    def gil_changed(self, proc: WatchedProcess) -> None:
        """The GILs of a process were found, lost, or changed in number: start their samples anew."""
        gil = proc.gil
        assert gil is not None
        proc.switch_interval_us = gil.switch_interval_us()
        old = proc.sites
        proc.sites = {}
        for site in gil.sites:
            kept = old.get(site.address)
            proc.sites[site.address] = kept if kept is not None and kept.interp == site.interp else GilSamples(site.interp)
        proc.check.reset()
        self.emit(proc)
