"""The sampler: probes in, records out. One loop in one thread.

Between ticks it samples the GILs of every Python process of the target, as often as its
CPU budget allows (capture/budget.py); at each tick it reads every thread's kernel state and
hands each thread's readings to the state rules (capture/states.py), which turn the interval
into time in each State. The processes followed and their GILs are capture/processes.py's;
py-spy, from a thread beside the loop, names the threads (capture/stacks.py); the line each
thread is on, stamped on its ticks, and its whole stack come from the target's memory (3.9 to
3.15 with a GIL), from a helper on the target's own interpreter where that cannot be read on
3.14+, and from py-spy's stacks where neither can read them (capture/lines.py).
"""

from __future__ import annotations

import errno
import functools
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .capture import states
from .capture.budget import GIL_HZ_MOST, Budget
from .capture.processes import NEW_THREAD_REFRESH_NS, ProcessTable, WatchedProcess
from .capture.lines import HELPER_FROM, STALE_TICKS, LineTable, stack_entries
from .capture.placement import OneCore
from .capture.stacks import MAX_FRAMES, StackReader
from .probes.cpus import CpuProbe
from .probes.frames import FrameReader
from .probes.gil import GilProbe, GilSite
from .probes.threads import NFDS_ARG, SYSCALL_KINDS, ThreadReading, classify_syscall
from .stream import GilTick, Notice, Record, Stack, ThreadTick, Tick

Sink = Callable[[Record], None]
from .native import compiled as _gilloop  # the GIL samples between ticks in C, where it could be built

STOP_SAID_AFTER_US = 200_000  # a process stopped this long is said to be (briefer stops: a debugger's reads)
CORE_READ_EVERY = 10  # ticks between reads of per-core load (/proc/stat counts in 10 ms steps)
CHECK_EVERY_NS = 50_000_000  # the end of the run is noticed within this, however slow the ticks
REFRESH_EVERY_NS = 250_000_000  # new child processes, subinterpreters, switch interval
LINES_EVERY_MAX = 5  # over the budget, lines read from memory at no fewer than one tick in this many
READER_WAITS = 20  # refreshes (5 s) a process's memory reader waits for its first thread state


def _gil_read(proc: WatchedProcess, samples: int) -> str:
    """What the state rules know of the process's GIL over the tick: a GIL located but not sampled
    in it (located in the middle of the tick, or unreadable: the process is ending) is no reading,
    as a GIL not located is none."""
    status = proc.gil_state()
    return "not sampled" if status == states.LOCATED and not samples else status


def _holders_over_tick(proc: WatchedProcess) -> set[int] | None:
    """The threads (PyThreadStates) that held the GIL since the latest sample before the last tick,
    where the samples saw every hand-off: CPython counts in switch_number each take of the GIL by
    another thread than its last holder, and where the samples found as many changes of the last
    holder, each came between two samples that saw it, so the holders found are all there were.
    Only they can have run Python (a frame moves only under the GIL). None where that is not known:
    a tick without a sample, hand-offs the samples missed, a GIL not confirmed, more than one GIL."""
    gil = proc.gil
    if gil is None or len(proc.sites) != 1 or not gil.located:
        return None
    (acc,) = proc.sites.values()
    before = acc.at_last_tick
    now = (acc.switch_number, acc.last_holder) if acc.samples and acc.switch_number is not None else None
    acc.at_last_tick = now
    if before is None or now is None or acc.seen is None or now[0] - before[0] != acc.turns:
        return None
    return acc.seen | {before[1]}


_FUTEX_CALLS = tuple(nr for nr, kind in SYSCALL_KINDS.items() if kind == "futex")


@functools.lru_cache(maxsize=64)
def _take_waits(site: GilSite) -> tuple[str, ...]:
    """The start of the syscall text of a thread asleep inside take_gil."""
    return tuple(f"{nr} {site.address + word:#x} " for nr in _FUTEX_CALLS for word in site.layout.take_words())


def _follow_gil_waits(proc: WatchedProcess, holders: set[int] | None) -> None:
    """Before the tick's read of the threads: which of those its probe found asleep inside take_gil
    are in it still, their syscall files not read again (`ThreadProbe.parked`). A thread leaves
    take_gil's wait only by taking the GIL (or as the interpreter ends: the probe reads them all
    once in a while all the same), so those that did not hold it over the tick, where the samples
    saw every hand-off (`_holders_over_tick`), are still there; where that is not known, none."""
    probe, gil = proc.probe, proc.gil
    waits = _take_waits(gil.sites[0]) if gil is not None and gil.located and len(gil.sites) == 1 else ()
    parked = probe.parked
    if waits != probe.waits:
        probe.waits = waits
        parked.clear()
    elif parked:  # (so waits are followed: its one GIL is located)
        tids = _holder_tids(gil, holders, proc.tids)
        if tids is None:
            parked.clear()
        else:
            parked -= tids


def _holder_tids(gil: GilProbe, holders: set[int] | None, tids: set[int]) -> set[int] | None:
    """The threads of the thread states in `holders`; None where they, or one's thread, are not known
    (mapped as held_by maps them)."""
    if holders is None:
        return None
    resolve = gil.holders.resolve
    out = set()
    for tstate in holders:
        if tstate:  # (none: the GIL was never held)
            tid = resolve(tstate, tids, learn=False)
            if tid is None:
                return None
            out.add(tid)
    return out


def _with_line(row: ThreadTick, line: int | None) -> ThreadTick:
    return tuple.__new__(ThreadTick, (*row[:12], line)) if line else row  # (_replace is 4 times dearer)


@dataclass
class SamplerStats:
    ticks: int = 0
    gil_samples: int = 0  # moments the GILs were read: at a wake-up of their own, at a tick, within one
    wake_ups: int = 0  # the ticks', and those of GIL samples between them
    cpu_s: float = 0.0
    wall_s: float = 0.0


class Sampler:
    def __init__(
        self,
        root_pid: int,
        sink: Sink,
        *,
        tick_hz: float = 200.0,
        gil_hz: float | None = None,
        cpu_budget: float = 0.15,
        stacks_hz: float = 5.0,
        follow_children: bool = True,
        t0: int | None = None,
        gil_reenabled: bool = False,
    ):
        self.root_pid = root_pid
        self._emit = sink
        # Each tick goes out one tick late, with what the next reading showed of its threads' CPU
        # time (states.place_cpu_time: a gap taken for CPU time that was a wait for a CPU), and
        # the records made meanwhile after it, in the order they were made.
        self._held: Tick | None = None
        self._held_spans: list = []
        self._after_held: list[Record] = []
        self.sink = self._send
        self.tick_ns = int(1e9 / tick_hz)
        # at most the rate asked; none asked, past 2 kHz only where its core is idle (capture/budget.py)
        self.gil_hz = max(gil_hz or GIL_HZ_MOST, tick_hz)
        self.gil_hz_asked = gil_hz is not None
        self.cpu_budget = cpu_budget
        self.stats = SamplerStats()
        self.cpus = CpuProbe()
        self._t0 = t0 or time.monotonic_ns()  # zero of the stream's clock, shared with other records
        self.processes = ProcessTable(root_pid, self._send, self._now_us, follow_children=follow_children,
                                      gil_reenabled=gil_reenabled)
        self.stacks = StackReader(stacks_hz, self.processes, self._now_us)
        self.lines = LineTable(self._now_us, self._t0)
        self._helpers_tried: set[int] = set()
        self._no_reader: set[int] = set()  # processes whose frame reader failed as nothing foresaw
        self._reader_waits: dict[int, int] = {}  # pid -> times its reader found no thread state yet
        self._budget: Budget | None = None
        self._next_stacks_ns = 0  # whole stacks read from memory at the stack rate
        self._lines_every = 1  # _line_ticks_every, as of the budget's last adapting
        self._sampled_at_tick: set[int] = set()  # processes whose GILs the C loop sampled as it woke for this tick
        self._within_next_ns = 0  # the next GIL sample within a long tick (_sample_within_tick)
        self._core = OneCore()  # the sampling thread's core (capture/placement.py), chosen as it runs
        self.processes.add(root_pid, ppid=0, wait_for_python_s=1.0)
        if root_pid not in self.processes:
            raise ProcessLookupError(root_pid)

    def _send(self, rec: Record) -> None:
        if self._held is None:
            self._emit(rec)
        else:
            self._after_held.append(rec)

    def _release(self, then: Tick | None, spans: list | None = None) -> None:
        """The held tick out, set right, then what came after it; `then` is held next."""
        held, held_spans, after = self._held, self._held_spans, self._after_held
        self._held, self._held_spans, self._after_held = then, spans or [], []
        if held is None:
            return
        try:
            self._taken_back(held, held_spans)
        finally:  # (whatever happens, nothing held is lost)
            self._emit(held)
            for rec in after:
                self._emit(rec)

    @staticmethod
    def _taken_back(tick: Tick, spans: list) -> None:
        """Sets right the tick's rows: CPU time the next reading showed was a wait for a CPU is one.
        `spans`: (a process's thread memories, its first row, its end) for each process."""
        rows = tick.threads
        for known, start, end in spans:
            for i in range(start, end):
                row = rows[i]
                if row.oncpu <= 0:
                    continue
                mem = known.get(row.tid)
                if mem is None or not mem.taken_back_us:
                    continue
                wait = mem.taken_back_us if mem.taken_back_us < row.oncpu else row.oncpu
                mem.taken_back_us = 0
                native = row.native if row.native < wait else wait
                spin = row.oncpu - row.running - row.native
                spin = spin if spin < wait - native else wait - native
                running = wait - native - spin
                rows[i] = row._replace(running=row.running - running, native=row.native - native,
                                       waiting=row.waiting - spin, runnable=row.runnable + wait,
                                       oncpu=row.oncpu - wait)

    @property
    def pyspy(self):
        return self.stacks.pyspy

    def _now_us(self) -> int:
        return (time.monotonic_ns() - self._t0) // 1000

    # ----------------------------------------------------------------- the loop
    def run(self, *, duration_s: float | None = None, stop: threading.Event | None = None,
            done: Callable[[], bool] | None = None) -> str:
        """Samples until the target ends, the duration passes, or stop is set; says which."""
        stop = stop or threading.Event()
        t_start = time.monotonic_ns()
        deadline = t_start + int(duration_s * 1e9) if duration_s else None
        cpu_start = time.process_time()
        spy_start = self.stacks.cpu_s
        budget = Budget(self.tick_ns, self.gil_hz, self.cpu_budget,
                        lambda: time.process_time() + self.stacks.cpu_s + self.lines.cpu_s, t_start, self.stacks.hz,
                        others=None if self.gil_hz_asked else self._core.others_share)
        self.stacks.rate = lambda: budget.stacks_hz
        self.stacks.names_pids = self.lines.read_pids  # py-spy only names their new threads
        self._budget = budget
        self._start_helpers()
        last_busy = self.cpus.read()
        last_busy_ns = t_start
        next_tick = t_start + self.tick_ns
        next_gil = next_check = t_start
        no_gil = False  # no GIL to sample when last looked: GIL samples wait for the next tick
        last_tick = t_start
        next_refresh = t_start + REFRESH_EVERY_NS
        self.stacks.start()
        monotonic_ns = time.monotonic_ns
        sleep = time.sleep
        reason = "stopped"
        try:
            while True:
                now = monotonic_ns()
                if now >= next_tick:
                    core_busy: list[int] = []
                    if self.stats.ticks % CORE_READ_EVERY == 0:
                        busy = self.cpus.read()
                        core_busy = [b - a for a, b in zip(last_busy, busy)]
                        last_busy = busy
                        self._core.consider(core_busy, (now - last_busy_ns) // 1000)
                        last_busy_ns = now
                    alive = self._tick(now, now - last_tick, core_busy)
                    last_tick = now
                    # (the tick's sample took its turn; with no GIL to sample, sites are looked for at once)
                    next_gil = now if no_gil else max(next_gil, now + budget.period)
                    no_gil = False
                    next_tick += budget.tick_ns
                    if next_tick <= now:
                        next_tick = now + budget.tick_ns
                    self._drain_stacks()
                    if not alive:
                        reason = "exited"
                        break
                    next_check = now  # after each tick
                    if now >= next_refresh:
                        self.processes.refresh()
                        self._start_helpers()
                        next_refresh = now + REFRESH_EVERY_NS
                    stats = budget.adapt(now, self.stats.gil_samples, (now - self._t0) // 1000, self.stats.ticks,
                                         self.stats.wake_ups)
                    if stats is not None:
                        self._lines_every = self._line_ticks_every()
                        for proc in self.processes:
                            proc.probe.sparseness = budget.sparseness
                        if self.lines.helpers or self.lines.readers:
                            self.lines.set_period(budget.tick_ns, self._stack_period_ns())
                            every = 1 if self.lines.helpers else self._lines_every
                            stats.stacks_hz = round(1e9 / budget.tick_ns / every, 1)
                            stats.stacks_by = " + ".join(by for by, on in (("_remote_debugging", self.lines.helpers),
                                                                          ("gilviz", self.lines.readers)) if on)
                        elif self.stacks.pyspy is not None and self.stacks.hz > 0:
                            stats.stacks_by = "py-spy"
                        self.sink(stats)
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
                    fast = self._fast_sites() if _gilloop is not None else None
                    if fast:  # every sample until the next tick or check, in C, then round again
                        next_gil = self._sample_in_c(fast, budget.period, next_gil, min(next_tick, next_check),
                                                     next_tick <= next_check)
                        continue
                    if fast is not None:  # no GIL to read (none yet, or a free-threaded target): no wake-up
                        next_gil, no_gil = next_tick, True  # for it, but looked for again after each tick
                        continue
                    if self._sample_gils_in_python():
                        self.stats.gil_samples += 1
                    self.stats.wake_ups += 1
                    next_gil += budget.period
                    if next_gil <= now:
                        next_gil = now + budget.period
                delay = min(next_gil, next_tick, next_check) - monotonic_ns()
                if delay > 0:
                    sleep(delay / 1e9)
        finally:
            self._core.release()
            self._release(None)  # (first: stopping the helpers can take seconds)
            self.stacks.stop()
            self.lines.stop()
            end = monotonic_ns()
            self.stats.wall_s = (end - t_start) / 1e9
            self.stats.cpu_s = time.process_time() - cpu_start + (self.stacks.cpu_s - spy_start) + self.lines.cpu_s
            self._drain_stacks()
            self.processes.close()
            self.cpus.close()
        return reason

    def _fast_sites(self) -> list[tuple] | None:
        """(proc, its samples, (fd, address, shift, wrefs, flags)) of every GIL (or GIL candidate)
        to sample, where the C loop can read them all; flags: where the GIL flags of the threads
        watched (3.15+) are."""
        out: list[tuple] = []
        for proc in self.processes:
            sites = self._sites_of(proc)
            if sites is None:
                return None
            out += sites
        return out

    @staticmethod
    def _sites_of(proc: WatchedProcess) -> list[tuple] | None:
        """_fast_sites of one process; None where the C loop cannot read its GIL."""
        gil = proc.gil
        if gil is None:
            return []
        fd = getattr(gil.memory, "fd", None)
        if not gil.sites:  # not yet confirmed: its candidate, sampled as often (3.9 to 3.12)
            acc = proc.candidate_samples()
            if acc is None or fd is None:
                return []
            site = gil.candidate
            return [(proc, acc, (fd, site.address, site.layout.shift, site.layout.condvar.wrefs, ()))]
        if fd is None:
            return None
        flags = ()
        if proc.watched:  # (only where the process has one GIL)
            at = gil.offsets.thread["holds_gil"]
            flags = tuple(tstate + at for tstate in proc.watched.values())
        return [(proc, acc, (fd, site.address, site.layout.shift, site.layout.condvar.wrefs, flags))
                for site in gil.sites if (acc := proc.sites.get(site.address)) is not None]

    def _sample_in_c(self, fast: list[tuple], period: int, next_gil: int, until: int, at_until: bool = False) -> int:
        """at_until: `until` is the next tick's: the loop wakes for it and samples there too."""
        assert _gilloop is not None
        next_gil, wake_ups, results, at_tick = _gilloop.sample([f[2] for f in fast], period, next_gil, until, at_until)
        self.stats.gil_samples += wake_ups + at_tick
        self.stats.wake_ups += wake_ups
        if at_tick:
            self._sampled_at_tick = {proc.pid for proc, _, _ in fast}
        self._take_samples(fast, results)
        return next_gil

    def _sample_gils_in_python(self) -> bool:
        """A GIL sample of every process, where the C loop cannot take it; True when one read a GIL."""
        read = False
        for proc in self.processes:
            try:
                read = proc.sample_gils() or read
            except Exception as e:  # (as in _tick)
                self.processes.gil_failed(proc, e)
        return read

    def _sample_within_tick(self, proc: WatchedProcess, later: list[tuple]) -> None:
        """A GIL sample a period after the last, while a tick's threads are read and worked out.
        A tick of a thousand threads takes milliseconds, in which the GIL changes hands more than
        once: unsampled, the hand-offs in it are missed, and the next tick's holders are not known
        (every thread that ran has its line and its wait read again). Kept in `later`, for the
        next tick, as the samples after this tick's read are; not a wake-up (as the tick's own).
        Its GILs are those of its first sample in the tick."""
        now = time.monotonic_ns()
        if now < self._within_next_ns:
            return
        assert self._budget is not None and _gilloop is not None
        self._within_next_ns = now + self._budget.period
        sites = later[0][0] if later else self._sites_of(proc)
        if sites:
            results = _gilloop.sample([f[2] for f in sites], self._budget.period, now, now + 1)[2]
            later.append((sites, results))
            if any(r[0] for r in results):
                self.stats.gil_samples += 1

    def _take_samples(self, fast: list[tuple], results: tuple) -> None:
        """The C loop's samples into their GILs' accumulators."""
        for (proc, acc, _), (samples, held, contended, switch, holders, error, turns) in zip(fast, results):
            acc.samples += samples
            acc.held += held
            acc.contended += contended
            for holder, count in holders:
                acc.holders[holder] += count
            if switch is not None:
                acc.switch_number = switch
            acc.add_turns(turns)
            if error:
                proc.gil.unreadable = error == errno.ESRCH

    def _start_helpers(self) -> None:
        """A reader of its memory for each new process; for a 3.14+ one it cannot read (a
        free-threaded build, a layout not known here), a stack helper, started beside the loop (it
        takes a moment)."""
        if self.stacks.hz <= 0:
            return
        for proc in self.processes:
            if proc.python is None or proc.pid in self._helpers_tried:
                continue
            gil = proc.gil
            helper_can = proc.python.version[:2] >= HELPER_FROM
            if gil is not None and proc.pid not in self._no_reader:  # (a build it does not know: the helper)
                self._helpers_tried.add(proc.pid)
                waited = self._reader_waits[proc.pid] = self._reader_waits.get(proc.pid, 0) + 1
                started = self.lines.start_reader(proc.pid, lambda: FrameReader(gil.memory, proc.python, gil.offsets),
                                                  proc.tids, quiet=helper_can, wait=waited < READER_WAITS)
                if started is None:  # no thread state yet: asked again at the next refresh
                    self._helpers_tried.discard(proc.pid)
                else:
                    del self._reader_waits[proc.pid]
                if started is not False:
                    continue
            if not helper_can:
                continue
            self._helpers_tried.add(proc.pid)
            with self._core.unpinned():  # (the helper's thread, and the process it starts, on any core)
                threading.Thread(target=self.lines.start_helper, args=(proc.pid, self.tick_ns, self._stack_period_ns()),
                                 daemon=True, name="gilviz-helper-start").start()

    def _say_stops(self, proc: WatchedProcess, t_us: int) -> None:
        """A stop long enough to see is said once as it goes on and once as it ends: the lanes'
        "other" is otherwise all a user sees of it (a debugger that stops a process a moment at a
        time, as py-spy without --nonblocking does, is not said)."""
        if proc.probe.stopped:
            if proc.stopped_since_us is None:
                proc.stopped_since_us = t_us
            elif not proc.stop_said and t_us - proc.stopped_since_us >= STOP_SAID_AFTER_US:
                proc.stop_said = True
                self.sink(Notice(t_us, f"pid {proc.pid} was stopped at {proc.stopped_since_us / 1e6:.1f} s (Ctrl-Z, "
                                       "SIGSTOP or a debugger): its threads are drawn blocked, other, till it goes on"))
            return
        if proc.stop_said:
            self.sink(Notice(t_us, f"pid {proc.pid} went on at {t_us / 1e6:.1f} s, "
                                   f"after {(t_us - proc.stopped_since_us) / 1e6:.1f} s stopped"))
        proc.stopped_since_us, proc.stop_said = None, False

    def _reader_failed(self, proc: WatchedProcess, error: Exception) -> None:
        """Its lines are read by CPython's own reader from now on (3.14+), else by py-spy, not by a
        new reader of gilviz's: it would fail alike."""
        self.lines.readers.pop(proc.pid, None)
        self._no_reader.add(proc.pid)
        self._helpers_tried.discard(proc.pid)  # (3.14+: the helper starts at the next refresh)
        if proc.python is not None and proc.python.version[:2] >= HELPER_FROM:
            then = "CPython's own reader reads its lines"
        elif self.stacks.pyspy is not None and self.stacks.hz > 0:
            then = "py-spy reads its lines, a few times a second"
        else:
            then = "its lines are not read"
        self.sink(Notice(self._now_us(), f"pid {proc.pid}: gilviz stopped reading its frames ({type(error).__name__}: "
                                         f"{error}; a fault of gilviz's, worth reporting); {then}"))

    def _stack_period_ns(self) -> int:
        hz = self._budget.stacks_hz if self._budget is not None else self.stacks.hz
        return int(1e9 / max(hz, 0.05))

    def _line_ticks_every(self) -> int:
        """Lines read from memory at one tick in this many: all of a tick's threads or none (the
        ticks that carry lines stay a fair sample), fewer as the budget slows the stacks."""
        share = self._budget.stacks_share if self._budget is not None else 1.0
        return max(1, min(LINES_EVERY_MAX, round(1 / share)))

    def _drain_stacks(self) -> None:
        """py-spy's dumps out, their lines read where nothing reads them at the tick rate."""
        now = self._now_us()
        for rec in self.stacks.drain():
            if isinstance(rec, Stack) and rec.pid not in self.lines.read_pids:
                self.lines.seen_pyspy(now, ((e.tid, e.line) for e in rec.threads))
            self.sink(rec)

    # ----------------------------------------------------------------- one tick
    def _tick(self, now: int, dt_ns: int, core_busy: list[int]) -> bool:
        dt = max(1, dt_ns // 1000)
        threads: list[ThreadTick] = []
        gils: list[GilTick] = []
        root_alive = False
        list_threads = True  # the probe lists the threads again only when their count moved
        spans = []
        t_us = (now - self._t0) // 1000
        readers, helpers = self.lines.readers, self.lines.helpers
        read_lines = bool(readers) and self.stats.ticks % self._lines_every == 0
        read_stacks = bool(readers) and now >= self._next_stacks_ns
        sampled_at_tick, self._sampled_at_tick = self._sampled_at_tick, set()
        sampled_here = bool(sampled_at_tick)  # (the tick's sample, counted once whatever it read)
        self._within_next_ns = now + (self._budget.period if self._budget is not None else 0)
        within_tick = _gilloop is not None and self._budget is not None
        for proc in self.processes:
            try:
                # A GIL sample at the read (taken by the C loop as it woke for the tick, or here): the
                # holders over the tick (the lines read again, the waits followed) reach to the moment
                # its threads are read, and a tick a busy machine kept the sampler off a CPU for has a
                # reading of the GIL all the same. (Part of the tick, at its wake-up: a sample counted,
                # not a wake-up.)
                if proc.sites and proc.pid not in sampled_at_tick and proc.sample_gils() and not sampled_here:
                    sampled_here = True
                    self.stats.gil_samples += 1
                holders = _holders_over_tick(proc)
                _follow_gil_waits(proc, holders)
                later: list[tuple] = []  # GIL samples taken after the read: the next tick's
                within = functools.partial(self._sample_within_tick, proc, later) if within_tick and proc.gil else None
                try:
                    readings, gone = proc.probe.read(list_threads, within)
                except ProcessLookupError:
                    self.processes.end(proc)
                    readers.pop(proc.pid, None)
                    continue
                root_alive = root_alive or proc.pid == self.root_pid
                if proc.probe.stopped or proc.stopped_since_us is not None:
                    self._say_stops(proc, t_us)
                lines = None
                reader = readers.get(proc.pid) if readers else None
                if reader is not None and (proc.gil is None or reader.reader.memory is not proc.gil.memory):
                    del readers[proc.pid]  # it exec'd: a reader of its new image at the next refresh
                    self._helpers_tried.discard(proc.pid)
                    self._reader_waits.pop(proc.pid, None)
                    reader = None
                if reader is not None:
                    try:
                        reader.forget(gone)
                        lines = reader.update(readings, now, read_lines, holders)
                    except Exception as e:  # a misread it did not foresee (memory read as it changes): its
                        reader = lines = None  # lines stop, the recording goes on
                        self._reader_failed(proc, e)
                if within is not None:
                    within()
                ticks, gil_ticks = self._process_tick(proc, readings, gone, dt, now, lines)
                if within is not None:
                    within()
                if read_stacks and reader is not None:
                    try:
                        entries = reader.stack_entries(ticks, proc.threads, dt, MAX_FRAMES)
                    except Exception as e:  # (as above)
                        self._reader_failed(proc, e)
                    else:
                        self.sink(Stack(t_us, proc.pid, entries, "gilviz"))
                helper = helpers.get(proc.pid) if helpers else None
                taken = helper.take_stacks() if helper is not None else None
                if taken is not None and taken[0] >= t_us - STALE_TICKS * dt:
                    self.sink(Stack(taken[0], proc.pid, stack_entries(ticks, taken[1], proc.threads, dt),
                                    "_remote_debugging"))
                spans.append((proc.threads, len(threads), len(threads) + len(ticks)))
                threads.extend(ticks)
                gils.extend(gil_ticks)
                proc.clear_samples()
                for sites, results in later:
                    self._take_samples(sites, results)
                proc.watch_flags(ticks)
            except Exception as e:
                # one no check foresaw: raised in the GIL probe, that process's GIL is read no more
                # and the recording goes on (this tick without its threads); raised elsewhere, it
                # ends the recording
                self.processes.gil_failed(proc, e)
                root_alive = root_alive or proc.pid == self.root_pid  # (not found gone)
        self.stats.ticks += 1
        self.stats.wake_ups += 1
        if read_stacks:
            self._next_stacks_ns = now + self._stack_period_ns()
        threads = self.lines.stamp(threads, t_us, dt)
        for rec in self.lines.drain():
            self.sink(rec)
        self._release(Tick(t=t_us, dt=dt, threads=threads, gils=gils, core_busy=core_busy), spans)
        return root_alive or any(p.pid != self.root_pid for p in self.processes)

    def _process_tick(self, proc: WatchedProcess, readings: list[ThreadReading], gone: list[int], dt: int,
                      now: int, lines: dict[int, int] | None = None) -> tuple[list[ThreadTick], list[GilTick]]:
        """One process's threads and GILs over the tick, and the running check of its GIL; each
        thread's line from `lines` (tid -> line id), where they were read from its memory."""
        gil = proc.gil
        if gil is not None:
            gil.holders.forget(gone)
        for tid in gone:
            proc.threads.pop(tid, None)
            proc.tids.discard(tid)
        tids = {r.tid for r in readings}
        if gil is not None and gil.status == "not located" and self._locate(proc, readings, tids, now):
            proc.candidate = None
            self.processes.gil_changed(proc)
            if gil.located and proc.sample_gils():  # (a reading for this tick, to split its threads' time by)
                self.stats.gil_samples += 1
        held_by, tops, resolved = proc.held_by(tids)
        main = proc.main_samples
        gil_samples = main.samples if main is not None else 0
        gil_ranges = gil.gil_ranges if gil is not None else ()
        ticks: list[ThreadTick] = []
        append = ticks.append
        known, seen = proc.threads, proc.tids
        unchanged, classify = states.unchanged, states.classify
        in_c = states.tick_threads
        i, n = 0, len(readings)
        while i < n:
            if in_c is not None:  # (in C up to a reading it leaves to the loop below: a new thread, say)
                i = in_c(readings, i, ticks, known, seen, held_by, dt, _gil_read(proc, gil_samples), gil_samples,
                         gil_ranges,
                         gil is not None, gil is not None and gil.located, gil.runtime_range if gil is not None else None,
                         ThreadTick, SYSCALL_KINDS, NFDS_ARG, lines)
                if i == n:
                    break
            r = readings[i]
            i += 1
            mem = known.get(r.tid)
            if mem is not None and not r.moved and mem.call != "running" and r.tid in seen:
                row = unchanged(r, mem, dt, held_by.get(r.tid, 0.0))  # asleep all tick: classify's first case
                append(_with_line(row, lines.get(r.tid)) if lines else row)
                continue
            first = mem is None or r.tid not in seen
            if mem is None:
                mem = self.processes.new_thread(proc, r.tid)
                proc.new_thread_ns = now
            seen.add(r.tid)
            call = self._syscall(proc, r, mem, gil_ranges)
            row = classify(r, mem, dt, held_by.get(r.tid, 0.0), call, first=first, gil=_gil_read(proc, gil_samples),
                           gil_samples=gil_samples)  # (a futex just read may have located the GIL)
            append(_with_line(row, lines.get(r.tid)) if lines else row)
        self.processes.watch_new_threads(proc, now)
        gil_ticks: list[GilTick] = []
        if gil is not None and gil.located:
            gil_ticks = proc.gil_ticks(tops)
            verdict = proc.check_gil(dt, resolved, ticks)
            if verdict is not None:
                gil.reject(verdict)
                self.processes.gil_changed(proc)
        return ticks, gil_ticks

    @staticmethod
    def _locate(proc: WatchedProcess, readings: list[ThreadReading], tids: set[int], now: int) -> bool:
        """True when the GIL was found (or its state changed) before the tick's threads are
        classified, wherever this tick shows it: its holder among the threads (3.9 to 3.12), a
        thread asleep on it, or the interpreter made by now (from 3.13, found through its debug
        offsets). Else their time on a CPU had no reading to split it into Python and native
        code, and was taken for Python."""
        gil = proc.gil
        assert gil is not None
        if not tids <= proc.tids and now >= proc.next_gil_refresh_ns:  # new threads: the runtime may be up now
            proc.next_gil_refresh_ns = now + NEW_THREAD_REFRESH_NS
            if gil.refresh():
                return True
        site, acc = gil.candidate, proc.candidate
        if site is not None and gil.confirm_by_holder(tids, acc.holders if acc is not None else ()):
            if acc is not None and acc.samples and proc.candidate_address == site.address:
                proc.sites = {site.address: acc}  # (kept by gil_changed: this tick's readings of it)
            return True
        gil_ranges = gil.gil_ranges
        for r in readings:
            if r.moved and classify_syscall(r.syscall, gil_ranges) == "gil":
                gil.consider_futex(int(r.syscall.split()[1], 16))
                if gil.located:
                    return True
        return False

    def _syscall(self, proc: WatchedProcess, r: ThreadReading, mem: states.ThreadMemory,
                 gil_ranges: tuple[tuple[int, int], ...]) -> str:
        """What the thread sleeps in, classified (a futex that may reveal the GIL was looked at
        before the tick's threads were: `_locate`)."""
        if not r.moved:
            return mem.call
        call = classify_syscall(r.syscall, gil_ranges)
        gil = proc.gil
        if gil is None or (call != "lock" and call != "gil"):
            return call
        if call == "gil":
            mem.in_runtime = False
            return call
        low, high = gil.runtime_range
        mem.in_runtime = low <= int(r.syscall.split()[1], 16) < high
        return call
