"""The sampler: probes in, Ticks out.

One loop in one thread. Between ticks it samples the GIL of every Python process in the
target (as often as its CPU budget allows, up to the asked rate); at each tick it reads
every thread's kernel state and turns the interval into per-thread state durations:

  on-CPU time (schedstat)  -> running while it held the GIL, the rest native or waiting
  run-queue time           -> runnable
  off-CPU time             -> blocked (sleep / io / lock / other) or waiting, from the
                              syscall each thread was in at the two ends of the interval

On-CPU time without the GIL is GIL overhead (waiting) when the thread was seen asleep on
the GIL at either end of the interval, or was waiting in the interval before and nothing
since says otherwise; else native. py-spy runs beside the loop, in its own thread.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

from .probes.cpus import CpuProbe
from .probes.gil import GilCheck, GilProbe
from .probes.pyprocess import PythonProcess, inspect
from .probes.pyspy import PySpy, StackThread, find_pyspy
from .probes.threads import ThreadProbe, ThreadReading, classify_syscall, thread_name
from .stream import (BLOCK_REASONS, GilTick, Process, ProcessEnd, Record, Stack, StackEntry, Stats, Thread,
                     ThreadTick, Tick)

Sink = Callable[[Record], None]
CORE_READ_EVERY = 10  # ticks between reads of per-core load
LIST_THREADS_EVERY = 4  # ticks between looks for new threads
GIL_HZ_FLOOR = 1000  # the CPU budget never slows GIL sampling below this
GIL_HZ_START = 2000
ADAPT_EVERY_NS = 500_000_000
CHECK_EVERY_NS = 50_000_000  # the end of the run is noticed within this, however slow the ticks
YOUNG_PROCESS_S = 3.0  # a process not yet Python this long after it appeared is taken as not Python
REFRESH_EVERY_NS = 250_000_000  # new child processes, subinterpreters, switch interval
MAX_FLAG_THREADS = 8  # threads whose own GIL flags are read with each GIL sample (3.15+)
NEW_THREAD_WATCH_NS = 500_000_000  # after a thread appears, its process's GILs are looked at...
NEW_THREAD_REFRESH_NS = 20_000_000  # ...this often (it may make a subinterpreter with its own GIL)
# GIL overhead comes in short runs on a CPU; C code that released the GIL, in long ones
SPIN_RUN_US = 150
HELD_SHARE_WEIGHT = 0.2  # of the latest tick in held_share: about the last 25 ms
PYTHON_THREAD_HELD_SHARE = 0.15  # held the GIL this much of late: it is running Python
MAX_PENDING_US = 10_000  # schedstat lags a running thread by one scheduler tick (1 to 10 ms)


@dataclass
class _ThreadMemory:
    on_ns: int
    runq_ns: int
    call: str  # classified syscall at the last reading
    off_kind: str = "other"  # what its last off-CPU time was
    in_runtime: bool = False  # its lock wait is on a futex inside _PyRuntime (but not a known GIL)
    spinning_for_gil: bool = False
    name: str = ""
    pending_on: int = 0  # us reported by schedstat and not yet placed in a tick (< 0: placed ahead)
    pending_rq: int = 0
    slices: int = 0  # schedstat's count of times on a CPU, at the last reading
    held_unmatched: int = 0  # GIL time of the last tick that found no CPU time reported beside it
    held_share: float = 0.0  # moving average of the share of each tick it held the GIL


@dataclass
class _SiteSamples:
    """One GIL's samples since the last tick."""

    interp: int
    samples: int = 0
    held: int = 0
    contended: int = 0
    holders: Counter = field(default_factory=Counter)
    switch_number: int | None = None
    last_switch_number: int | None = None

    def clear(self) -> None:
        self.samples = self.held = self.contended = 0
        self.holders.clear()


@dataclass
class _Process:
    pid: int
    probe: ThreadProbe
    python: PythonProcess | None
    gil: GilProbe | None
    threads: dict[int, _ThreadMemory] = field(default_factory=dict)
    tids: set[int] = field(default_factory=set)
    sites: dict[int, _SiteSamples] = field(default_factory=dict)  # by GIL address
    samples_last: int = 0  # samples of the main GIL in the tick being classified
    check: GilCheck = field(default_factory=GilCheck)
    # 3.15+: threads whose own GIL flags are read with each GIL sample (tid -> PyThreadState)
    watched: dict[int, int] = field(default_factory=dict)
    switch_interval_us: int | None = None
    ppid: int = 0
    command: str = ""
    born: float = 0.0  # when the sampler first saw it (monotonic s)
    new_thread_ns: int = -(1 << 62)  # when a thread of it was last seen for the first time
    next_gil_refresh_ns: int = 0

    def gil_state(self) -> str:
        if self.python is None:
            return "not python"
        return self.gil.status if self.gil else "not located"

    def close(self) -> None:
        self.probe.close()
        if self.gil:
            self.gil.close()


@dataclass
class SamplerStats:
    ticks: int = 0
    gil_samples: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0


class Sampler:
    def __init__(
        self,
        root_pid: int,
        sink: Sink,
        *,
        tick_hz: float = 200.0,
        gil_hz: float = 10_000.0,
        cpu_budget: float = 0.15,
        stacks_hz: float = 1.0,
        follow_children: bool = True,
        t0: int | None = None,
        gil_reenabled: bool = False,
    ):
        self.root_pid = root_pid
        self.sink = sink
        self.tick_ns = int(1e9 / tick_hz)
        self.gil_hz = max(gil_hz, tick_hz)
        self.cpu_budget = cpu_budget
        self.stacks_hz = stacks_hz
        self.follow_children = follow_children
        self.gil_reenabled = gil_reenabled  # PYTHON_GIL=1 on a free-threaded build
        self.processes: dict[int, _Process] = {}
        self.stats = SamplerStats()
        self.cpus = CpuProbe()
        self._t0 = t0 or time.monotonic_ns()  # zero of the stream's clock, shared with other records
        self._stack_queue: queue.Queue = queue.Queue()
        self._stop_stacks = threading.Event()
        pyspy_exe = find_pyspy() if stacks_hz > 0 else None
        self.pyspy = PySpy(pyspy_exe) if pyspy_exe else None
        self.add_process(root_pid, ppid=0, wait_for_python_s=1.0)
        if root_pid not in self.processes:
            raise ProcessLookupError(root_pid)

    # ----------------------------------------------------------------- processes
    def add_process(self, pid: int, ppid: int, wait_for_python_s: float = 0.0) -> None:
        python = inspect(pid)
        deadline = time.monotonic() + wait_for_python_s
        while python is None and time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.005)  # just exec'd: the loader may not have mapped libpython yet
            python = inspect(pid)
        gil = self._gil_probe(python)
        proc = _Process(pid, ThreadProbe(pid), python, gil)
        proc.born = time.monotonic()
        try:
            baseline, _ = proc.probe.read()
        except ProcessLookupError:
            return
        self.processes[pid] = proc
        if gil is not None:
            proc.switch_interval_us = gil.switch_interval_us()
            proc.sites = {site.address: _SiteSamples(site.interp) for site in gil.sites}
        try:
            proc.command = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            pass
        proc.ppid = ppid
        self._emit_process(proc)
        for r in baseline:
            mem = self._new_thread(proc, r.tid)
            mem.on_ns, mem.runq_ns, mem.slices = r.on_ns, r.runq_ns, r.slices
            mem.call = classify_syscall(r.syscall, gil.gil_ranges if gil else ())
            proc.tids.add(r.tid)

    def _gil_probe(self, python: PythonProcess | None) -> GilProbe | None:
        if python is None:
            return None
        try:
            return GilProbe(python, self.gil_reenabled)
        except OSError:
            return None

    def _recheck_young_processes(self) -> None:
        """A process seen in its first moments may turn out to be Python (spawned children)."""
        now = time.monotonic()
        for proc in self.processes.values():
            if proc.python is None and now - proc.born < YOUNG_PROCESS_S:
                proc.python = inspect(proc.pid)
                if proc.python is not None:
                    proc.gil = self._gil_probe(proc.python)
                    if proc.gil is not None:
                        self._gil_changed(proc)
                    else:
                        self._emit_process(proc)

    def _emit_process(self, proc: _Process) -> None:
        gil = proc.gil
        self.sink(Process(
            t=self._now_us(), pid=proc.pid, ppid=proc.ppid, command=proc.command,
            python=proc.python.version_string if proc.python else None,
            gil=proc.gil_state(), switch_interval_us=proc.switch_interval_us,
            gil_found_by=gil.found_by if gil else None,
            gil_why=(gil.why or None) if gil and not gil.located else None,
            interpreters=gil.interpreters if gil else [],
        ))

    def _new_thread(self, proc: _Process, tid: int) -> _ThreadMemory:
        mem = _ThreadMemory(0, 0, "running", name=thread_name(proc.pid, tid))
        proc.threads[tid] = mem
        self.sink(Thread(self._now_us(), tid, proc.pid, mem.name))
        return mem

    def _refresh_children(self) -> None:
        if not self.follow_children:
            return
        try:
            children = psutil.Process(self.root_pid).children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            if child.pid not in self.processes:
                try:
                    ppid = child.ppid()
                except psutil.Error:
                    continue
                self.add_process(child.pid, ppid)

    def _refresh_gils(self) -> None:
        """sys.setswitchinterval may change the interval at any time; subinterpreters come and go;
        a process seen before Py_Initialize had made its GIL has one now."""
        for proc in self.processes.values():
            gil = proc.gil
            if gil is not None and gil.unreadable:
                # it exec'd (what was opened of its memory shows the image it left), or it is ending
                gil.unreadable = False
                python = inspect(proc.pid)
                fresh = self._gil_probe(python) if python is not None else None
                if fresh is not None and (python != proc.python or fresh.located):
                    gil.close()
                    proc.python, proc.gil = python, fresh
                    self._gil_changed(proc)
                    gil = fresh
                elif fresh is not None:
                    fresh.close()
            if gil is None:
                continue
            changed = gil.refresh()
            interval = gil.switch_interval_us()
            if changed or (interval is not None and interval != proc.switch_interval_us):
                self._gil_changed(proc)
            if gil.has_thread_flags:
                gil.refresh_thread_states()

    def _gil_changed(self, proc: _Process) -> None:
        """The GILs of a process were found, lost, or changed in number: start their samples anew."""
        gil = proc.gil
        assert gil is not None
        proc.switch_interval_us = gil.switch_interval_us()
        old = proc.sites
        proc.sites = {}
        for site in gil.sites:
            kept = old.get(site.address)
            proc.sites[site.address] = kept if kept is not None and kept.interp == site.interp else _SiteSamples(site.interp)
        proc.check.reset()
        self._emit_process(proc)

    # ----------------------------------------------------------------- the loop
    def _now_us(self) -> int:
        return (time.monotonic_ns() - self._t0) // 1000

    def run(self, *, duration_s: float | None = None, stop: threading.Event | None = None,
            done: Callable[[], bool] | None = None) -> str:
        """Samples until the target ends, the duration passes, or stop is set; says which."""
        stop = stop or threading.Event()
        t_start = time.monotonic_ns()
        deadline = t_start + int(duration_s * 1e9) if duration_s else None
        cpu_start = time.process_time()
        spy_start = self.pyspy.cpu_s if self.pyspy else 0.0
        last_busy = self.cpus.read()
        min_period = int(1e9 / self.gil_hz)
        gil_period = max(min_period, int(1e9 / GIL_HZ_START))  # then up, as the budget allows
        max_period = max(min_period, min(self.tick_ns, int(1e9 / GIL_HZ_FLOOR)))
        next_tick = t_start + self.tick_ns
        next_gil = t_start
        last_tick = t_start
        next_children = t_start + REFRESH_EVERY_NS
        next_adapt = t_start + ADAPT_EVERY_NS
        next_check = t_start
        adapt_cpu, adapt_wall, adapt_samples = cpu_start + spy_start, t_start, 0
        stacks_thread = None
        if self.pyspy is not None:
            stacks_thread = threading.Thread(target=self._stacks_loop, daemon=True, name="gilviz-stacks")
            stacks_thread.start()
        monotonic_ns = time.monotonic_ns
        sleep = time.sleep
        reason = "stopped"
        try:
            while True:
                now = monotonic_ns()
                if now >= next_tick:
                    core_busy: list[int] = []
                    if self.stats.ticks % CORE_READ_EVERY == 0:  # /proc/stat counts in 10 ms steps
                        busy = self.cpus.read()
                        core_busy = [b - a for a, b in zip(last_busy, busy)]
                        last_busy = busy
                    alive = self._tick(now, now - last_tick, core_busy)
                    last_tick = now
                    next_tick += self.tick_ns
                    if next_tick <= now:
                        next_tick = now + self.tick_ns
                    self._drain_stacks()
                    if not alive:
                        reason = "exited"
                        break
                    next_check = now  # after each tick
                    if now >= next_children:
                        self._refresh_children()
                        self._recheck_young_processes()
                        self._refresh_gils()
                        next_children = now + REFRESH_EVERY_NS
                    if now >= next_adapt:
                        cpu = time.process_time() + (self.pyspy.cpu_s if self.pyspy else 0.0)
                        wall = now - adapt_wall
                        overhead = (cpu - adapt_cpu) / (wall / 1e9)
                        rate = (self.stats.gil_samples - adapt_samples) / (wall / 1e9)
                        # spend the budget on GIL samples: slower when over, faster when under
                        if overhead > self.cpu_budget:
                            gil_period = min(max_period, int(gil_period * min(2.0, overhead / self.cpu_budget)))
                        elif overhead < 0.8 * self.cpu_budget:
                            gil_period = max(min_period, int(gil_period / 1.2))
                        self.sink(Stats((now - self._t0) // 1000, round(overhead, 4), round(rate, 1),
                                        round(1e9 / gil_period, 1)))
                        adapt_cpu, adapt_wall, adapt_samples = cpu, now, self.stats.gil_samples
                        next_adapt = now + ADAPT_EVERY_NS
                if now >= next_check:  # at every tick, and often between slow ones (--rate 0.1)
                    if done is not None and done():
                        reason = "exited"
                        break
                    if stop.is_set():
                        reason = "stopped"
                        break
                    if deadline is not None and now >= deadline:
                        reason = "duration"
                        break
                    next_check = now + CHECK_EVERY_NS
                if now >= next_gil:
                    self._sample_gils()
                    next_gil += gil_period
                    if next_gil <= now:
                        next_gil = now + gil_period
                wake = min(next_gil, next_tick, next_check)
                delay = wake - monotonic_ns()
                if delay > 0:
                    sleep(delay / 1e9)
        finally:
            self._stop_stacks.set()
            end = monotonic_ns()
            self.stats.wall_s = (end - t_start) / 1e9
            self.stats.cpu_s = time.process_time() - cpu_start + ((self.pyspy.cpu_s - spy_start) if self.pyspy else 0.0)
            if stacks_thread is not None:
                stacks_thread.join(timeout=10)
            self._drain_stacks()
            for proc in self.processes.values():
                proc.close()
            self.cpus.close()
        return reason

    def _sample_gils(self) -> None:
        for proc in self.processes.values():
            gil = proc.gil
            if gil is None or not gil.sites:
                continue
            asking = False
            if proc.watched:
                # 3.15+: a thread spinning for the GIL is not in the condition variable's count of
                # sleepers, but its own gil_requested flag is set from its request to its turn
                try:
                    asking = any(asks and not holds for holds, asks in map(gil.thread_flags, proc.watched.values()))
                except OSError:
                    pass
            for site in gil.sites:
                acc = proc.sites.get(site.address)
                if acc is None:
                    continue
                try:
                    locked, holder, waiters, switch = gil.sample_site(site)
                except OSError as e:
                    gil.unreadable = isinstance(e, ProcessLookupError)
                    break
                acc.samples += 1
                if locked:
                    acc.held += 1
                    acc.holders[holder] += 1
                if waiters or asking:
                    acc.contended += 1
                acc.switch_number = switch
            self.stats.gil_samples += 1

    # ----------------------------------------------------------------- one tick
    def _tick(self, now: int, dt_ns: int, core_busy: list[int]) -> bool:
        dt = max(1, dt_ns // 1000)
        threads: list[ThreadTick] = []
        gils: list[GilTick] = []
        root_alive = False
        list_threads = self.stats.ticks % LIST_THREADS_EVERY == 0
        for pid, proc in list(self.processes.items()):
            try:
                readings, gone = proc.probe.read(list_threads)
            except ProcessLookupError:
                self._end_process(proc)
                continue
            if pid == self.root_pid:
                root_alive = True
            gil = proc.gil
            if gil is not None:
                gil.holders.forget(gone)
            for tid in gone:
                proc.threads.pop(tid, None)
                proc.tids.discard(tid)
            tids = {r.tid for r in readings}
            if gil is not None and gil.candidate is not None and gil.confirm_by_holder(tids):
                self._gil_changed(proc)
            held_by, tops, resolved = self._held_by(proc, tids)
            main = proc.sites.get(gil.address) if gil is not None and gil.sites else None
            proc.samples_last = main.samples if main is not None else 0
            gil_ranges = gil.gil_ranges if gil is not None else ()
            ticks: list[ThreadTick] = []
            for r in readings:
                mem = proc.threads.get(r.tid)
                first = mem is None or r.tid not in proc.tids
                if mem is None:
                    mem = self._new_thread(proc, r.tid)
                    proc.new_thread_ns = now
                proc.tids.add(r.tid)
                ticks.append(self._classify(proc, r, mem, dt, held_by.get(r.tid, 0), first, gil_ranges))
            threads.extend(ticks)
            if gil is not None and now - proc.new_thread_ns < NEW_THREAD_WATCH_NS and now >= proc.next_gil_refresh_ns:
                # a new thread may make a subinterpreter with a GIL of its own: look for it soon
                proc.next_gil_refresh_ns = now + NEW_THREAD_REFRESH_NS
                if gil.refresh():
                    self._gil_changed(proc)
                if gil.has_thread_flags:
                    gil.refresh_thread_states()
            if gil is not None and gil.located:
                for address, acc in proc.sites.items():
                    switches = 0
                    if acc.switch_number is not None:
                        if acc.last_switch_number is not None:
                            switches = max(0, acc.switch_number - acc.last_switch_number)
                        acc.last_switch_number = acc.switch_number
                    gils.append(GilTick(pid, acc.samples, acc.held, acc.contended, switches, acc.interp,
                                        tops.get(address, 0)))
                if main is not None:
                    self._check_gil(proc, dt, main, resolved, ticks)
            for acc in proc.sites.values():
                acc.clear()
            if gil is not None and gil.has_thread_flags and len(gil.sites) == 1:
                self._watch_flags(proc, gil, ticks)
            elif proc.watched:
                proc.watched = {}
        self.stats.ticks += 1
        tick = Tick(t=(now - self._t0) // 1000, dt=dt, threads=threads, gils=gils, core_busy=core_busy)
        self.sink(tick)
        return root_alive or any(p.pid != self.root_pid for p in self.processes.values())

    def _held_by(self, proc: _Process, tids: set[int]) -> tuple[dict[int, float], dict[int, int], int]:
        """Per thread, the fraction of its GIL's samples this tick in which it held it; per GIL, the
        thread that held it most; and how many locked samples of the main GIL had a known holder."""
        gil = proc.gil
        out: dict[int, float] = {}
        tops: dict[int, int] = {}
        resolved = 0
        if gil is None:
            return out, tops, resolved
        for address, acc in proc.sites.items():
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

    @staticmethod
    def _watch_flags(proc: _Process, gil: GilProbe, ticks: list[ThreadTick]) -> None:
        """Threads that were on a CPU or waited for the GIL last tick (the only ones that can be
        asking for it now) get their GIL flags read with each GIL sample of the next."""
        watched = {}
        for th in ticks:
            if th.oncpu > 0 or th.waiting > 0:
                tstate = gil.thread_state(th.tid)
                if tstate is not None:
                    watched[th.tid] = tstate
                    if len(watched) >= MAX_FLAG_THREADS:
                        break
        proc.watched = watched

    def _check_gil(self, proc: _Process, dt: int, main: _SiteSamples, resolved: int, ticks: list[ThreadTick]) -> None:
        """Drops a GIL that contradicts what the threads did over the last second."""
        waited = elsewhere = 0
        for th in ticks:
            waited += th.waiting - max(0, th.oncpu - th.running - th.native)  # asleep on the GIL
            mem = proc.threads.get(th.tid)
            if mem is not None and mem.in_runtime:
                elsewhere += th.lock
        verdict = proc.check.add(dt, main.samples, main.held, resolved, waited, elsewhere)
        if verdict is not None and proc.gil is not None:
            proc.gil.reject(verdict)
            self._gil_changed(proc)

    def _classify(self, proc: _Process, r: ThreadReading, mem: _ThreadMemory, dt: int, held_frac: float,
                  first: bool, gil_ranges: tuple[tuple[int, int], ...]) -> ThreadTick:
        if not r.moved and mem.call != "running" and not first:
            return self._unchanged(r, mem, dt, held_frac)  # asleep in a syscall all tick
        call = classify_syscall(r.syscall, gil_ranges) if r.moved else mem.call
        if r.moved and proc.gil is not None and call in ("gil", "lock"):
            address = int(r.syscall.split()[1], 16)
            low, high = proc.gil.runtime_range
            mem.in_runtime = call == "lock" and low <= address < high
            if call == "gil" and not proc.gil.located:
                proc.gil.consider_futex(address)
                if proc.gil.located:
                    self._gil_changed(proc)
        if first and mem.on_ns == 0 and mem.runq_ns == 0:
            # born during this tick: everything it did is since its birth
            rep_on, rep_rq = r.on_ns // 1000, r.runq_ns // 1000
        else:
            rep_on, rep_rq = (r.on_ns - mem.on_ns) // 1000, (r.runq_ns - mem.runq_ns) // 1000
        before = mem.call
        slices = r.slices - mem.slices if mem.slices else 1  # times it was put on a CPU this tick
        mem.on_ns, mem.runq_ns, mem.call, mem.slices = r.on_ns, r.runq_ns, call, r.slices
        on, runq = self._place_cpu_time(mem, rep_on, rep_rq, dt,
                                        busy=r.state == "R" and call == "running" and before == "running")
        off = dt - on - runq

        running = native = waiting = 0
        held = int(held_frac * dt)
        gil_state = proc.gil_state()
        if gil_state == "located":
            # schedstat may report a tick's CPU time a tick late, the GIL samples never do: GIL
            # time that found no CPU time beside it is matched with the next tick's report
            running = min(on, held + mem.held_unmatched)
            mem.held_unmatched = min(MAX_PENDING_US, held - min(on, held))
            spin = on - running
            # Time on a CPU without the GIL is GIL overhead (waking from the timed wait, asking
            # for a drop, handing over), or the noise of matching exact CPU time with sampled
            # GIL time, when the thread has lately been running Python (it held the GIL for a
            # good share of the last few ticks), or when it came in short runs from a thread
            # after the GIL. Otherwise it is C code that released the GIL (a hash, a
            # compression), even if the thread then queues for the GIL.
            mem.held_share += HELD_SHARE_WEIGHT * (held / dt - mem.held_share)
            # (held comes from GIL samples, so when it held the GIL, it may be off by a sample period)
            sample_period = dt // proc.samples_last if proc.samples_last and held else 0
            short_runs = spin < SPIN_RUN_US * max(1, slices) + sample_period
            after_gil = held > 0 or call == "gil" or before == "gil" or mem.spinning_for_gil
            if mem.held_share > PYTHON_THREAD_HELD_SHARE or (short_runs and after_gil):
                waiting += spin
                mem.spinning_for_gil = held == 0 and spin > 0
            else:
                native += spin
                mem.spinning_for_gil = False
        elif gil_state == "not python":
            native = on
        else:  # no GIL (free-threaded) or GIL not located: any time on a CPU counts as running
            running = on

        blocked = {"sleep": 0, "io": 0, "lock": 0, "other": 0}
        if off > 0:
            kinds = [c for c in dict.fromkeys((before, call)) if c != "running"] or [mem.off_kind]
            share = off // len(kinds)
            for i, kind in enumerate(kinds):
                part = share if i else off - share * (len(kinds) - 1)
                if kind == "gil":
                    waiting += part
                else:
                    blocked[kind] += part
            mem.off_kind = kinds[-1]
        return ThreadTick(r.tid, r.cpu, running, native, waiting, runq, blocked["sleep"], blocked["io"],
                          blocked["lock"], blocked["other"], held, on)

    @staticmethod
    def _unchanged(r: ThreadReading, mem: _ThreadMemory, dt: int, held_frac: float) -> ThreadTick:
        """A thread that did not run all tick: off CPU the whole time, for the reason it had."""
        kind = mem.call if mem.call != "running" else mem.off_kind
        held = int(held_frac * dt)
        mem.held_share += HELD_SHARE_WEIGHT * (held / dt - mem.held_share)  # fades while it sleeps
        if kind == "gil":
            return ThreadTick(r.tid, r.cpu, 0, 0, dt, 0, 0, 0, 0, 0, held, 0)
        return ThreadTick(r.tid, r.cpu, 0, 0, 0, 0, dt if kind == "sleep" else 0, dt if kind == "io" else 0,
                          dt if kind == "lock" else 0, dt if kind == "other" else 0, held, 0)

    @staticmethod
    def _place_cpu_time(mem: _ThreadMemory, rep_on: int, rep_rq: int, dt: int, busy: bool) -> tuple[int, int]:
        """Places schedstat's on-CPU and run-queue time into this tick.

        The kernel adds a running thread's CPU time to schedstat only at scheduler ticks
        (every 4 ms at HZ=250) and its run-queue wait only when it gets a CPU, so a
        thread busy for a whole tick can report 0 or 8 ms of it. What was reported but
        not placed is kept for the next ticks; a thread seen runnable at both ends of
        the tick has its gap filled now and the reports that follow pay it back. Totals
        stay exact sums of schedstat time, give or take one scheduler tick.
        """
        on = max(0, rep_on + mem.pending_on)
        runq = max(0, rep_rq + mem.pending_rq)
        if busy and on + runq < dt:
            on = dt - runq
        if on + runq > dt:
            scale = dt / (on + runq)
            on = int(on * scale)
            runq = dt - on if runq else 0
        mem.pending_on = max(-MAX_PENDING_US, min(MAX_PENDING_US, rep_on + mem.pending_on - on))
        mem.pending_rq = max(-MAX_PENDING_US, min(MAX_PENDING_US, rep_rq + mem.pending_rq - runq))
        return on, runq

    def _end_process(self, proc: _Process) -> None:
        self.processes.pop(proc.pid, None)
        proc.close()
        self.sink(ProcessEnd(self._now_us(), proc.pid))

    # ----------------------------------------------------------------- stacks
    def _stacks_loop(self) -> None:
        assert self.pyspy is not None
        period = 1.0 / self.stacks_hz
        failures: Counter = Counter()
        wait = min(period, 0.2)  # names and lines early, then at the asked rate
        while not self._stop_stacks.wait(wait):
            wait = period
            for pid in [p.pid for p in list(self.processes.values()) if p.python is not None]:
                if failures[pid] >= 5:
                    continue
                t = self._now_us()
                dump = self.pyspy.dump(pid)
                if dump is None:
                    failures[pid] += 1
                    continue
                failures[pid] = 0
                self._stack_queue.put((t, pid, dump))

    def _drain_stacks(self) -> None:
        while True:
            try:
                t, pid, dump = self._stack_queue.get_nowait()
            except queue.Empty:
                return
            proc = self.processes.get(pid)
            if proc is None:
                continue
            dump = [self._with_tid(proc, th) for th in dump]
            for th in dump:
                mem = proc.threads.get(th.tid)
                if mem is not None and th.name and th.name != mem.name and not _is_default_name(th.name, mem.name):
                    mem.name = th.name
                    self.sink(Thread(t, th.tid, pid, th.name))
            self.sink(Stack(t, pid, [StackEntry(th.tid, th.name, th.line, th.owns_gil, th.active, list(th.frames[:12]))
                                     for th in dump if th.tid is not None]))

    @staticmethod
    def _with_tid(proc: _Process, th: StackThread) -> StackThread:
        if th.tid is not None or proc.gil is None:
            return th
        return dataclasses.replace(th, tid=proc.gil.holders.tid_of_pthread(th.thread_id, proc.tids))


_DEFAULT_THREAD_NAME = re.compile(r"(MainThread|Thread-\d+( \(.*\))?|Dummy-\d+)$")


def _is_default_name(pyspy_name: str, os_name: str) -> bool:
    """py-spy's name adds nothing when it is Python's default and the OS name was chosen."""
    return bool(_DEFAULT_THREAD_NAME.match(pyspy_name)) and not os_name.startswith("python")
