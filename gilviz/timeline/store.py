"""The timeline: the record stream kept compactly, and aggregated into cells.

A collector (collect.py) for the live view, in plain Python: testable without an app. The
widgets ask it for the cells of one lane over a window of time at a zoom (microseconds per
cell) and draw those.

Storage. Every thread keeps one bytearray with REC bytes per tick of its life: each state's
share of the tick (0..Q), the GIL-held share, the on-CPU share, and the core it was on.
A tick where it was missing is all zeros: gone. Each core keeps, per tick, the target
thread with most on-CPU time on it, the target's share, and the share other processes
took (filled in when a per-core load reading arrives). Each process with a GIL keeps its
GIL samples per tick. Shares are quantized to 1/Q of the tick (Q = 250), so a cell's
state is the state with the largest summed share over all the ticks in it: every tick
counts, none is dropped, and the aggregate follows schedstat's durations.

Cells are aligned on absolute time (cell c covers [c*zoom, (c+1)*zoom) microseconds since
the start), so a finished cell never changes and is cached; following the live edge only
computes the newest cells. A tick belongs to the cell holding its midpoint; when cells
are finer than ticks, a cell shows the tick that covers it.

The sums of every BLOCK ticks per thread make a sum over any range cost two short slices and
a sum of block sums, so zooming out to a second per cell over minutes of history stays fast;
merging old ticks changes only the blocks it merges, never those after.
"""

from __future__ import annotations

import bisect
import itertools
from itertools import accumulate, chain, islice
from operator import mul, sub
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..lines import LineFigures, LineSums
from ..stream import (BLOCK_REASONS, STATE_KEYS, End, Header, Line, Process, ProcessEnd, Progress, Record, Stack,
                      StackEntry, State, Stats, Thread, ThreadTick, Tick, Unsplit)
from ..stream import Output as OutputRecord

Q = 250  # a tick's full share
REC = 11  # bytes per thread per tick: 8 states, held, oncpu, cpu
HELD, ONCPU, CPU = 8, 9, 10
NFIELDS = 10  # summed fields (cpu is not summed)
BLOCK = 64  # ticks summed together per thread (ThreadSeries.blocks)

# cell codes: a State, or GONE when the thread did not exist
RUNNING, NATIVE, WAITING, RUNNABLE, SLEEP, IO, LOCK, OTHER = State
GONE = len(State)
CODE_NAMES = (*STATE_KEYS, "gone")
HELD_BIT = 0x10  # or'ed into a cell code when the thread held the GIL at least half the cell
STATE_MASK = 0x0F

ZOOMS = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
DEFAULT_ZOOM = 10_000

# core and GIL-holder cells: (kind, serial)
IDLE, OCCUPIED, PARTLY, OTHERS, UNKNOWN = range(5)

# The stacks read kept for the stack under a click, by thread entries (one dump of 64 threads, its
# texts shared with earlier dumps, is about 12 KB): at 64 threads and 5 dumps a second, the last
# 5 minutes; older dumps are let go (the lines pane keeps its own sums)
MAX_STACK_ENTRIES = 100_000
TEXTS_KEPT = 50_000  # distinct frame texts shared between dumps before the table starts over
LINE_BUCKET_US = 1_000_000  # time per line is summed by the second: a span's figures are to the second...
LINE_SECONDS_KEPT = 600  # ...for the last ten minutes; older seconds merge into minutes
MAX_LINE_CHANGES = 20_000  # per thread: the times its line changed, for the table's line column
MAX_OUTPUT_CHUNKS = 20_000
MAX_UNSPLIT_RANGES = 2048  # per process: past it, neighbouring ranges join (the gaps drawn unsplit too)
CACHE_CELLS = 8192  # finished cells kept per lane per zoom
MERGE_TICKS = 1024  # ticks of full detail merged at a time: the pause it makes stays short
COARSE_SHARE = 0.25  # of the ticks kept, the share that may be merged ones before they are merged again
MAX_THREAD_TICKS = 7_000_000  # about 95 MB of history (13 bytes a thread tick) before old time is merged: 9 minutes of 64 threads at 200 ticks/s
COARSE_STEPS_US = (100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000)  # old ticks merge into these
CLASS_EDGES_US = tuple(step // 2 for step in COARSE_STEPS_US)

END_REASONS = {
    "exited": "the target exited",
    "duration": "the duration passed",
    "interrupted": "interrupted",
    "stopped": "stopped",
}


def fmt_duration(us: float) -> str:
    """Short human time: 850 us, 12 ms, 1.5 s, 2 min 5 s."""
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1_000_000:
        ms = us / 1000
        return f"{ms:.0f} ms" if ms >= 10 or ms == int(ms) else f"{ms:.1f} ms"
    s = us / 1e6
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    return f"{int(s // 60)} min {int(s % 60)} s"


def fmt_zoom(zoom: int) -> str:
    return fmt_duration(zoom) + "/cell"


@dataclass(slots=True, eq=False)
class ThreadSeries:
    tid: int
    pid: int | None
    name: str
    serial: int  # order of appearance, 0-based; picks the colour and the letter
    start: int  # global tick index of data's first record
    data: bytearray = field(default_factory=bytearray)
    codes: bytearray = field(default_factory=bytearray)  # per tick: dominant state | HELD_BIT
    blocks: array = field(default_factory=lambda: array("q"))  # sums (NFIELDS each) of each BLOCK of local ticks
    first_t: int = 0
    last_t: int = 0
    cache: dict = field(default_factory=dict)  # zoom -> [first cell, bytearray of finished cells]

    @property
    def ticks(self) -> int:
        return len(self.data) // REC

    @property
    def letter(self) -> str:
        return LETTERS[self.serial % len(LETTERS)]

    def _block_sums(self, la: int, lb: int, dts, off: int) -> list[int]:
        """Each field's share times its tick's length (dts[off + local index]), summed."""
        data = self.data
        weights = dts[la + off : lb + off]
        if weights and weights.count(weights[0]) == len(weights):  # ticks of one length, as most are
            w = weights[0]
            return [sum(data[la * REC + f : lb * REC : REC]) * w for f in range(NFIELDS)]
        return [sum(map(mul, data[la * REC + f : lb * REC : REC], weights)) for f in range(NFIELDS)]

    def sums(self, la: int, lb: int, dts, off: int) -> list[int]:
        """Fields 0..9 over local ticks [la, lb), each tick's share weighted by its length (ticks
        merged into longer ones count for their whole length): share x microseconds."""
        n = self.ticks
        la, lb = max(0, la), min(lb, n)
        if lb <= la:
            return [0] * NFIELDS
        if lb - la == 2:  # a cell of the default zoom at 200 ticks/s, for each lane at every frame
            i = la * REC
            data = self.data
            wa, wb = dts[la + off], dts[la + 1 + off]
            return [x * wa + y * wb for x, y in zip(data[i : i + NFIELDS], data[i + REC : i + REC + NFIELDS])]
        if lb - la <= 2 * BLOCK:
            return self._block_sums(la, lb, dts, off)
        blocks = self.blocks
        ka = -(-la // BLOCK)
        kb = min(lb // BLOCK, len(blocks) // NFIELDS)
        head = self._block_sums(la, ka * BLOCK, dts, off)
        tail = self._block_sums(kb * BLOCK, lb, dts, off)
        return [h + sum(blocks[ka * NFIELDS + f : kb * NFIELDS : NFIELDS]) + t
                for f, (h, t) in enumerate(zip(head, tail))]

    def close_block(self, dts, off: int) -> None:
        n = len(self.codes)
        if n and n % BLOCK == 0:
            self.blocks.extend(self._block_sums(n - BLOCK, n, dts, off))

    def whole_blocks(self, la: int, lb: int, dts, off: int) -> array:
        """The sums of each BLOCK of local ticks [la, lb) (both multiples of BLOCK), a field at a
        time (one pass each, at C speed)."""
        weights = dts[off + la : off + lb]
        columns = []
        for f in range(NFIELDS):
            ends = list(islice(accumulate(map(mul, self.data[la * REC + f : lb * REC : REC], weights)),
                               BLOCK - 1, None, BLOCK))
            columns.append(list(map(sub, ends, [0, *ends[:-1]])))
        return array("q", [v for row in zip(*columns) for v in row])

    def rebuild_blocks(self, dts, off: int) -> None:
        """Every block's sums again."""
        self.blocks = self.whole_blocks(0, len(self.codes) // BLOCK * BLOCK, dts, off)

    def code_at(self, li: int) -> int:
        """The dominant state of one local tick (GONE outside its life)."""
        if li < 0 or li >= len(self.codes):
            return GONE
        return self.codes[li] & STATE_MASK


def _keep_cells_from(cache: dict, t: int) -> None:
    """Drops the finished cells that start before time t (their ticks were merged); the later
    ones stand, so the frame after a merge does not compute every cell on screen again."""
    for zoom, entry in list(cache.items()):
        first, cells = entry
        drop = -(-t // zoom) - first  # cells before the first one starting at or after t
        if drop <= 0:
            continue
        if drop >= len(cells):
            del cache[zoom]
        else:
            entry[0], entry[1] = first + drop, cells[drop:]


def _quantize(th, dt: int) -> tuple[bytes, int]:
    """A thread tick's record (shares of the tick, 0..Q) and its dominant state code."""
    _, cpu, run, nat, wait, runq, slp, io, lck, oth, held, on = th[:12]
    rec = bytes((
        run * Q // dt if run < dt else Q,
        nat * Q // dt if nat < dt else Q,
        wait * Q // dt if wait < dt else Q,
        runq * Q // dt if runq < dt else Q,
        slp * Q // dt if slp < dt else Q,
        io * Q // dt if io < dt else Q,
        lck * Q // dt if lck < dt else Q,
        oth * Q // dt if oth < dt else Q,
        held * Q // dt if held < dt else Q,
        on * Q // dt if on < dt else Q,
        cpu if 0 <= cpu < 255 else 255,
    ))
    states = rec[:8]
    best = max(states)
    if not best:
        return rec, GONE
    present = run + nat + wait + runq + slp + io + lck + oth
    return rec, states.index(best) | (HELD_BIT if held and held * 2 >= present else 0)


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
PALETTE_SIZE = 12


@dataclass(slots=True, eq=False)
class CoreSeries:
    cpu: int
    start: int
    top: array = field(default_factory=lambda: array("H"))  # serial + 1 of the thread with most on-CPU, 0 none
    top_q: bytearray = field(default_factory=bytearray)  # that thread's share
    target_q: bytearray = field(default_factory=bytearray)  # all target threads' share
    other_q: bytearray = field(default_factory=bytearray)  # other processes' share
    cache: dict = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class GilSeries:
    pid: int
    start: int
    interp: int = 0  # 0: the process's main GIL; else a subinterpreter's own
    counts: array = field(default_factory=lambda: array("L"))  # samples, held, contended, switches per tick
    holder: array = field(default_factory=lambda: array("H"))  # serial + 1 of the thread that held it most
    holder_q: bytearray = field(default_factory=bytearray)
    cache: dict = field(default_factory=dict)

    @property
    def ticks(self) -> int:
        return len(self.holder)


@dataclass(slots=True)
class ThreadStats:
    """A thread's figures over a range of time, as fractions of the time it existed there."""

    tid: int
    life: float  # time present, microseconds
    running: float = 0.0
    native: float = 0.0
    waiting: float = 0.0
    runnable: float = 0.0
    blocked: float = 0.0
    blocked_by: str = ""
    held: float = 0.0
    cpu_s: float = 0.0
    state: str = "gone"
    unsplit: float = 0.0  # of running, the share no GIL sample split (Python or C): of its time, as running
    unsplit_now: bool = False  # its state at the end is that: on a CPU, the GIL not read


class History:
    """Everything the stream said, ready to be drawn."""

    def __init__(self, max_thread_ticks: int = MAX_THREAD_TICKS):
        self.header = Header()
        self.processes: dict[int, Process] = {}
        self.proc_ended: dict[int, int] = {}
        self.threads: dict[int, ThreadSeries] = {}  # by tid (the latest thread of that tid)
        self.order: list[ThreadSeries] = []  # by serial
        self.times = array("q")  # tick end times
        self.mids = array("q")  # tick midpoints
        self.dts = array("q")
        self.base = 0  # global index of times[0] (after old ticks were let go)
        self.cores: list[CoreSeries] = []
        self.gils: dict[int, GilSeries] = {}  # each process's main GIL
        self.interp_gils: dict[tuple[int, int], GilSeries] = {}  # (pid, interpreter id): subinterpreters' own
        self.stacks: list[Stack] = []
        self.line_names: dict[int, Line] = {}
        self.line_buckets: dict[int, LineSums] = {}  # second -> that second's time per line
        self.line_minutes: dict[int, LineSums] = {}  # minute -> the same, for seconds merged away
        self._line_spans: dict[int, tuple[int, LineSums]] = {}  # first second -> (last second, their sums), once past
        self.line_changes: dict[int, tuple[array, array]] = {}  # tid -> (times its line changed, line ids)
        self.stack_times: list[int] = []
        self.last_stack: dict[int, StackEntry] = {}  # tid -> the thread's entry in its latest dump
        self._stack_entries = 0  # thread entries in self.stacks
        self._texts: dict[str, str] = {}
        self.output: list[OutputRecord] = []
        self.output_seen = 0  # chunks ever received (the pane reads from here)
        self.progress: Progress | None = None
        self.first_progress: Progress | None = None
        self.results: dict[str, Any] | None = None
        self.progress_times = array("q")  # when each progress report came...
        self.progress_done = array("d")  # ...and the work done by then
        self.stats: Stats | None = None
        self.end: End | None = None
        self.error: str | None = None  # the source failed: why
        self.version = 0  # bumped on every change
        self.max_thread_ticks = max_thread_ticks
        self._thread_ticks = 0
        self._core_acc: list[int] = []  # exact target on-CPU us per core since the last load reading
        self._core_read_at = 0  # global index after the last load reading
        self.cores_known_t = 0  # cores' other-process share is known up to this time
        self.t_first = None
        self._ranges: dict[tuple[int, int], tuple[int, int]] = {}  # finished cells' tick ranges
        self._memo: dict[int, dict[tuple, tuple[bytes, int]]] = {}  # dt -> a thread tick's fields -> (record, code)
        self._old_dts = array("q")  # while coarsening: the tick lengths before it
        # pid -> [start, end] times (sorted, apart) of the ticks in which nothing split its threads'
        # time on a CPU by the GIL (not located, or not sampled): counted as running, it may be C
        self.unsplit: dict[int, list[list[int]]] = {}
        self._unsplit_now = Unsplit()
        self._unsplit_memo: dict[tuple, tuple] = {}  # (pid, zoom, c0, c1) -> (ticks then, mask, partial cells)

    # ----------------------------------------------------------------- ingest
    def add(self, rec: Record) -> None:
        self.version += 1
        if isinstance(rec, Tick):
            self.add_tick_raw(rec.t, rec.dt, rec.threads, rec.gils, rec.core_busy)
            self._tick_lines(rec)
        elif isinstance(rec, Line):
            self.line_names[rec.id] = rec
        elif isinstance(rec, Thread):
            self._thread_record(rec)
        elif isinstance(rec, Stack):
            self._stack_record(rec)
        elif isinstance(rec, OutputRecord):
            self.output.append(rec)
            self.output_seen += 1
            if len(self.output) > MAX_OUTPUT_CHUNKS:
                del self.output[: MAX_OUTPUT_CHUNKS // 4]
        elif isinstance(rec, Progress):
            if rec.done is not None:
                if self.first_progress is None:
                    self.first_progress = rec
                self.progress = rec
                self.progress_times.append(rec.t)
                self.progress_done.append(float(rec.done))
            if rec.result:
                self.results = rec.result
        elif isinstance(rec, Stats):
            self.stats = rec
        elif isinstance(rec, Process):
            self.processes[rec.pid] = rec
            if rec.pid not in self.proc_ended:
                self._unsplit_now.process(rec)
        elif isinstance(rec, ProcessEnd):
            self.proc_ended[rec.pid] = rec.t
            self._unsplit_now.ended(rec.pid)
        elif isinstance(rec, Header):
            self.header = rec
            self._ensure_cores(rec.cpus or 0)
        elif isinstance(rec, End):
            self.end = rec

    def finish(self) -> None:
        pass

    def extend(self, records: Iterable[Record]) -> None:
        for rec in records:
            self.add(rec)

    def _thread_record(self, rec: Thread) -> None:
        s = self.threads.get(rec.tid)
        if s is not None and (s.pid is None or s.pid == rec.pid):
            s.pid = rec.pid
            if rec.name:
                s.name = rec.name
            return
        self._new_thread(rec.tid, rec.pid, rec.name or str(rec.tid))

    def _new_thread(self, tid: int, pid: int | None, name: str) -> ThreadSeries:
        s = ThreadSeries(tid, pid, name, len(self.order), self.base + len(self.times))
        self.threads[tid] = s
        self.order.append(s)
        return s

    def _stack_record(self, rec: Stack) -> None:
        texts = self._texts
        if len(texts) > TEXTS_KEPT:
            texts.clear()
        share = texts.setdefault  # every dump repeats the same frames: keep each text once
        for th in rec.threads:
            th.name, th.line, th.frames = share(th.name, th.name), share(th.line, th.line), [share(f, f) for f in th.frames]
            self.last_stack[th.tid] = th
        self.stacks.append(rec)
        self.stack_times.append(rec.t)
        self._stack_entries += len(rec.threads)
        if self._stack_entries > MAX_STACK_ENTRIES and len(self.stacks) > 1:
            cut = 0
            while self._stack_entries > MAX_STACK_ENTRIES * 3 // 4 and cut < len(self.stacks) - 1:
                self._stack_entries -= len(self.stacks[cut].threads)
                cut += 1
            del self.stacks[:cut]
            del self.stack_times[:cut]

    def _ensure_cores(self, n: int) -> None:
        g = self.base + len(self.times)
        while len(self.cores) < n:
            self.cores.append(CoreSeries(len(self.cores), g))
            self._core_acc.append(0)

    def add_tick(self, tick: Tick) -> None:
        self.add_tick_raw(tick.t, tick.dt, tick.threads, tick.gils, tick.core_busy)
        self._tick_lines(tick)

    def add_tick_raw(self, t: int, dt: int, rows: Iterable, gils: Iterable, core_busy: list[int]) -> None:
        """One tick, its threads as ThreadTick or the same fields in a list (as recorded)."""
        g = self.base + len(self.times)  # this tick's global index
        dt = dt if dt > 0 else 1
        if self.t_first is None:
            self.t_first = t - dt
        self.times.append(t)
        self.mids.append(t - dt // 2)
        self.dts.append(dt)
        threads = self.threads
        ncores = len(self.cores)
        core_on = [0] * ncores
        core_top = [0] * ncores
        core_top_on = [0] * ncores
        hold: dict[int, tuple[int, int]] = {}
        acc = self._core_acc
        n_threads = 0
        memo = self._memo
        by_fields = memo.get(dt)  # (one dict per tick length: a row's key is then a slice of it)
        if by_fields is None or len(by_fields) > 20_000:
            if len(memo) > 200:  # tick lengths vary by a few microseconds: keep the latest few
                memo.clear()
            by_fields = memo[dt] = {}
        for th in rows:
            n_threads += 1
            s = threads.get(th[0])
            if s is None:
                s = self._new_thread(th[0], None, str(th[0]))
                s.first_t = t - dt
                s.start = g
            elif not s.data:
                s.first_t = t - dt
                s.start = g
            codes = s.codes
            if len(codes) < g - s.start:  # missing from some ticks: gone there
                for _ in range(len(codes), g - s.start):
                    s.data += bytes(REC)
                    codes.append(GONE)
                    s.close_block(self.dts, s.start - self.base)
            key = th[1:12]
            hit = by_fields.get(key)
            if hit is None:
                hit = by_fields[key] = _quantize(th, dt)
            s.data += hit[0]
            codes.append(hit[1])
            if len(codes) % BLOCK == 0:
                s.close_block(self.dts, s.start - self.base)
            s.last_t = t
            on = th[11]
            if on > 0:
                cpu = th[1]
                if cpu >= 0:
                    if cpu >= ncores:
                        self._ensure_cores(cpu + 1)
                        grow = len(self.cores) - ncores
                        core_on += [0] * grow
                        core_top += [0] * grow
                        core_top_on += [0] * grow
                        ncores = len(self.cores)
                    core_on[cpu] += on
                    acc[cpu] += on
                    if on > core_top_on[cpu]:
                        core_top_on[cpu] = on
                        core_top[cpu] = s.serial + 1
            held = th[10]
            if held > 0 and s.pid is not None:
                best = hold.get(s.pid)
                if best is None or held > best[0]:
                    hold[s.pid] = (held, s.serial + 1)
        self._thread_ticks += n_threads
        for cpu, core in enumerate(self.cores):
            core.top.append(core_top[cpu])
            on = core_top_on[cpu]
            core.top_q.append(on * Q // dt if on < dt else Q)
            on = core_on[cpu]
            core.target_q.append(on * Q // dt if on < dt else Q)
            core.other_q.append(0)
        self._mark_unsplit(t, dt, gils)
        for gt in gils:
            pid, samples, held_n, contended, switches = gt[:5]
            interp = gt[5] if len(gt) > 5 else 0
            holder_tid = gt[6] if len(gt) > 6 else 0
            series = self.gils if not interp else self.interp_gils
            key = pid if not interp else (pid, interp)
            gs = series.get(key)
            if gs is None:
                gs = series[key] = GilSeries(pid, g, interp)
            missing = g - gs.start - gs.ticks
            for _ in range(missing):
                gs.counts.extend((0, 0, 0, 0))
                gs.holder.append(0)
                gs.holder_q.append(0)
            gs.counts.extend((samples, held_n, contended, switches))
            h = hold.get(pid)
            if holder_tid or interp:  # the sampler says who held this GIL most
                holder = threads.get(holder_tid) if holder_tid else None
                h = (dt * held_n // samples, holder.serial + 1) if holder is not None and samples else None
            if h is None:
                gs.holder.append(0)
                gs.holder_q.append(0)
            else:
                gs.holder.append(h[1])
                gs.holder_q.append(h[0] * Q // dt if h[0] < dt else Q)
        if core_busy:
            self._core_reading(core_busy, g)
        if self._thread_ticks + len(self.times) * self._tick_weight() > self.max_thread_ticks:
            self.coarsen_oldest()

    def _mark_unsplit(self, t: int, dt: int, gils) -> None:
        """The processes whose threads' time on a CPU this tick no GIL sample split."""
        for pid in self._unsplit_now.in_tick(gils):
            ranges = self.unsplit.setdefault(pid, [])
            if ranges and ranges[-1][1] >= t - dt - dt // 4:  # (the next tick, give or take its jitter)
                ranges[-1][1] = t
                continue
            ranges.append([t - dt, t])
            if len(ranges) > MAX_UNSPLIT_RANGES:
                kept = self.times[0] - self.dts[0]  # ranges of ticks let go go too
                ranges[:] = [r for r in ranges if r[1] > kept]
            if len(ranges) > MAX_UNSPLIT_RANGES:  # flapping: join pairs, more drawn unsplit, none less
                ranges[:] = [[ranges[i][0], ranges[min(i + 1, len(ranges) - 1)][1]] for i in range(0, len(ranges), 2)]

    def _unsplit_from(self, pid: int | None, t0: int) -> tuple[list[list[int]], int] | None:
        ranges = self.unsplit.get(pid) if pid is not None else None
        if not ranges:
            return None
        i = bisect.bisect_right(ranges, t0, key=lambda r: r[1])
        return (ranges, i) if i < len(ranges) else None

    def _unsplit_running(self, s: ThreadSeries, a: int, b: int) -> int:
        """The thread's running (share x us, as sums gives it) in global ticks [a, b) that no GIL
        sample split."""
        found = self._unsplit_from(s.pid, self.times[a - self.base] - self.dts[a - self.base]) if a < b else None
        if found is None:
            return 0
        ranges, i = found
        out = 0
        for start, end in ranges[i:]:
            ra, rb = max(a, self.tick_index(start + 1)), min(b, self.tick_index(end) + 1)
            if ra >= b:
                break
            if rb > ra:
                out += s.sums(ra - s.start, rb - s.start, self.dts, s.start - self.base)[0]
        return out

    def unsplit_in(self, pid: int | None, t0: int, t1: int) -> bool:
        """Whether any of the process's time in (t0, t1] went unsplit by its GIL."""
        found = self._unsplit_from(pid, t0)
        return found is not None and found[0][found[1]][0] < t1

    def _unsplit_spans(self, pid: int | None, zoom: int, c0: int, c1: int) -> tuple[bytes, dict] | None:
        """Per cell c0..c1: 2 where all its ticks went unsplit by the process's GIL, 1 where some
        did (and which: global tick ranges, per cell), 0 where none; None when none did (as nearly
        always). The same for every lane of the process in a frame: kept till a tick comes."""
        found = self._unsplit_from(pid, c0 * zoom)
        if found is None or found[0][found[1]][0] >= (c1 + 1) * zoom:
            return None
        key = (pid, zoom, c0, c1)
        now = (self.base, len(self.times))
        hit = self._unsplit_memo.get(key)
        if hit is not None and hit[0] == now:
            return hit[1]
        ranges, i = found
        mask = bytearray(c1 - c0 + 1)
        partial: dict[int, list[tuple[int, int]]] = {}
        for start, end in ranges[i:]:
            if start >= (c1 + 1) * zoom:
                break
            ta, tb = self.tick_index(start + 1), self.tick_index(end) + 1  # its ticks
            first, last = max(c0, start // zoom), min(c1, (end - 1) // zoom)
            for c in range(first, last + 1):
                if first < c < last:
                    mask[c - c0] = 2  # (inside the range: every tick whose middle it holds is unsplit)
                    continue
                a, b = self.cell_range(zoom, c)  # (a cell holds the ticks whose middles it holds)
                ra, rb = max(a, ta), min(b, tb)
                if ra < rb:
                    if (ra, rb) == (a, b) and mask[c - c0] != 1:
                        mask[c - c0] = 2
                    else:
                        mask[c - c0] = 1
                        partial.setdefault(c, []).append((ra, rb))
        out = (bytes(mask), partial) if any(mask) else None
        if len(self._unsplit_memo) > 64:
            self._unsplit_memo.clear()
        self._unsplit_memo[key] = (now, out)
        return out

    def unsplit_running_cells(self, s: ThreadSeries, zoom: int, c0: int, c1: int) -> bytes | None:
        """1 for each cell c0..c1 the thread's lane draws as running where at least half of its
        running there no GIL sample split (Python or C, unknown which, as its HELD_BIT is half of
        it). None when there is none."""
        spans = self._unsplit_spans(s.pid, zoom, c0, c1)
        if spans is None:
            return None
        mask, partial = spans
        cells = self.thread_cells(s, zoom, c0, c1)
        out = bytearray(len(mask))
        off = s.start - self.base
        for i, (m, code) in enumerate(zip(mask, cells)):
            if not m or code & STATE_MASK != RUNNING:
                continue
            if m == 2:
                out[i] = 1
                continue
            a, b = self.cell_range(zoom, c0 + i)
            running = s.sums(a - s.start, b - s.start, self.dts, off)[0]
            unsplit = sum(s.sums(ra - s.start, rb - s.start, self.dts, off)[0] for ra, rb in partial[c0 + i])
            out[i] = 1 if running and unsplit * 2 >= running else 0
        return bytes(out) if any(out) else None

    def _tick_weight(self) -> int:
        """What a tick costs beside its threads (its times, cores and GILs), in thread ticks."""
        return 2 + (5 * len(self.cores) + 19 * (len(self.gils) + len(self.interp_gils))) // 13

    def _core_reading(self, busy: list[int], g: int) -> None:
        """Per-core busy time since the last reading: what the target did not use was others'."""
        self._ensure_cores(len(busy))
        lo = self._core_read_at
        hi = g + 1
        i0, i1 = max(lo, self.base) - self.base, hi - self.base
        span = sum(self.dts[i0:i1]) if i1 > i0 else 0
        if lo > 0 and span > 0:  # the first reading is the baseline
            for cpu, core in enumerate(self.cores):
                b = busy[cpu] if cpu < len(busy) else 0
                other = max(0, b - self._core_acc[cpu])
                q = other * Q // span if other < span else Q
                a, z = max(lo, core.start) - core.start, hi - core.start
                if z > a:
                    core.other_q[a:z] = bytes((q,)) * (z - a)
        self._core_acc = [0] * len(self.cores)
        self._core_read_at = hi
        self.cores_known_t = self.times[-1]

    def coarsen_oldest(self) -> None:
        """Keeps memory bounded without losing the start of the run: the oldest ticks of one
        length class (under 100 ms, under 1 s, under 10 s...) are merged into ticks of the next
        (100 ms, 1 s, 10 s...), each field summed by duration, so every range's totals stay what
        they were and old time can still be scrolled through, in less detail. Full detail keeps
        most of the room; the newest ticks are never merged."""
        n = len(self.times)
        dts = self.dts

        # a tick merged into `step` lasts about that long: at least half of it is its class
        fine = n  # ticks [fine, n) are the newest stretch at full detail (class 0)
        shortest = CLASS_EDGES_US[0]
        while fine > 0:
            below = max(0, fine - 1024)
            if max(dts[below:fine]) < shortest:  # (a thousand at a time: a long history is mostly such)
                fine = below
                continue
            while dts[fine - 1] < shortest:
                fine -= 1
            break
        classes = [bisect.bisect_right(CLASS_EDGES_US, d) for d in dts[:fine]]  # (only older time's are read)
        candidates: list[tuple[int, int, int]] = []  # (step index, first local tick, end)
        if n - fine > (1 - COARSE_SHARE) * n:
            candidates.append((0, fine, fine + min((n - fine) // 8, MERGE_TICKS)))
        # older time: the class with most ticks there, merged with any shorter ticks among them
        counts: dict[int, int] = {}
        for k in classes:
            counts[k] = counts.get(k, 0) + 1
        for k in sorted(counts, key=counts.__getitem__, reverse=True):
            if k >= len(COARSE_STEPS_US):
                continue
            best = (0, 0)
            i = 0
            while i < fine:  # the longest stretch of ticks of class k or shorter
                if classes[i] > k:
                    i += 1
                    continue
                j = i
                while j < fine and classes[j] <= k:
                    j += 1
                if j - i > best[1] - best[0]:
                    best = (i, j)
                i = j
            r0, r1 = best
            candidates.append((k, r0, r0 + max(2, (r1 - r0) // 2)) if r1 - r0 >= 2 else (k, r0, r0))
        if n - fine <= (1 - COARSE_SHARE) * n and n - fine >= 16:
            candidates.append((0, fine, fine + min((n - fine) // 8, MERGE_TICKS)))
        for k, r0, r1 in candidates:
            if r1 - r0 < 2:
                continue
            buckets = self._buckets(r0, r1, COARSE_STEPS_US[k])
            # aligned when it can be (cheap); else as it is, if it merges anything (short stretches)
            groups = self._aligned(buckets) or (buckets if len(buckets) < r1 - r0 else [])
            if groups:
                self._merge(groups[0][0], groups[-1][1], groups)
                return
        self.forget_oldest()

    @staticmethod
    def _aligned(groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The groups, the last ones cut short, so that the ticks merged away are a whole number
        of BLOCKs: the ticks after keep their checkpoints, only shifted (empty if fewer than a BLOCK)."""
        if not groups:
            return groups
        groups = list(groups)
        away = groups[-1][1] - groups[0][0] - len(groups)
        while away % BLOCK and groups:
            a, b = groups[-1]
            if b - a > 1:
                groups[-1] = (a, b - 1)
                away -= 1
            else:
                groups.pop()
        return groups if away >= BLOCK else []

    def _buckets(self, r0: int, r1: int, step: int) -> list[tuple[int, int]]:
        """Local tick ranges in [r0, r1) that end within the same `step` of time."""
        times = self.times
        groups = []
        i = r0
        while i < r1:
            bucket = (times[i] - 1) // step
            j = i + 1
            while j < r1 and (times[j] - 1) // step == bucket:
                j += 1
            groups.append((i, j))
            i = j
        return groups

    def _merge(self, r0: int, r1: int, groups: list[tuple[int, int]]) -> None:
        """Local ticks [r0, r1) become one tick per group. The ticks after them keep their global
        indices; those before move up by as many as were merged away."""
        dts = self._old_dts = self.dts
        times = self.times
        spans = [sum(dts[a:b]) for a, b in groups]
        old_base = self.base
        delta = (r1 - r0) - len(groups)
        new_base = old_base + delta
        group_of = [0] * (r1 - r0)
        for k, (a, b) in enumerate(groups):
            for i in range(a, b):
                group_of[i - r0] = k
        lo, hi = old_base + r0, old_base + r1  # the merged stretch, in old global indices
        merged_until = times[r1 - 1]  # cells from here on hold none of the merged ticks

        def merged_index(g: int) -> int:
            """New global index of what was at old global index g."""
            if g < lo:
                return g + delta
            if g < hi:
                return new_base + r0 + group_of[g - lo]
            return g

        merged_times = array("q", [times[b - 1] for _, b in groups])
        self.times = times[:r0] + merged_times + times[r1:]
        self.dts = dts[:r0] + array("q", spans) + dts[r1:]
        # (only the merged stretch's midpoints are new: a pass over all of them took 10 ms a merge)
        self.mids = self.mids[:r0] + array("q", [t - d // 2 for t, d in zip(merged_times, spans)]) + self.mids[r1:]
        self.base = new_base
        if self._core_read_at >= old_base:
            self._core_read_at = merged_index(self._core_read_at)
        total = 0
        for ts in self.order:
            if ts.ticks and ts.start < hi and ts.start + ts.ticks > lo:
                self._merge_thread(ts, groups, spans, lo, hi, old_base)
            elif ts.start < lo:
                ts.start += delta
            _keep_cells_from(ts.cache, merged_until)
            total += ts.ticks
        self._thread_ticks = total
        for core in self.cores:
            if core.start < hi and core.start + len(core.top) > lo:
                self._merge_core(core, groups, spans, lo, hi, old_base)
            elif core.start < lo:
                core.start += delta
            _keep_cells_from(core.cache, merged_until)
        for gs in (*self.gils.values(), *self.interp_gils.values()):
            if gs.start < hi and gs.start + gs.ticks > lo:
                self._merge_gil(gs, groups, spans, lo, hi, old_base)
            elif gs.start < lo:
                gs.start += delta
            _keep_cells_from(gs.cache, merged_until)
        self._ranges.clear()
        self._old_dts = array("q")

    @staticmethod
    def _overlap(start: int, count: int, groups, old_base: int):
        """For a series with data from global index `start` for `count` ticks: each group it
        has data in, with its local range there."""
        out = []
        for k, (a, b) in enumerate(groups):
            la, lb = max(old_base + a, start) - start, min(old_base + b, start + count) - start
            if lb > la:
                out.append((k, la, lb))
        return out

    def _new_start(self, start: int, lo: int, groups, old_base: int) -> int:
        if start < lo:
            return start + (self.base - old_base)
        for k, (a, b) in enumerate(groups):
            if old_base + a <= start < old_base + b:
                return self.base + groups[0][0] + k
        return start

    def _merge_thread(self, ts: ThreadSeries, groups, spans, lo: int, hi: int, old_base: int) -> None:
        data, codes = ts.data, ts.codes
        parts = self._overlap(ts.start, ts.ticks, groups, old_base)
        old_dts = self._old_dts
        first, last = parts[0][1], parts[-1][2]
        off = ts.start - old_base
        weights = old_dts[first + off : last + off]
        one_length = weights.count(weights[0]) == len(weights)  # (ticks at full detail, as most merged are)
        w = weights[0]
        # each field's sum over each group, a field at a time for all the groups (weighted: running
        # totals read at group ends); a field that stayed 0 all along (most states) is left 0
        ends = [lb - first for _, _, lb in parts]
        begins = [la - first for _, la, _ in parts]
        pieces = list(map(slice, begins, ends))
        part_spans = [spans[k] for k, _, _ in parts]
        halves = [span // 2 for span in part_spans]
        zeros = [0] * len(parts)
        columns = []
        for f in range(NFIELDS):
            column = data[first * REC + f : last * REC : REC]
            if column.count(0) == len(column):
                columns.append(zeros)
                continue
            if one_length:  # each group's slice summed (at C speed, no running total of big ints)
                sums = map(w.__mul__, map(sum, map(column.__getitem__, pieces)))
            else:
                totals = [0, *accumulate(map(mul, column, weights))]
                sums = map(sub, map(totals.__getitem__, ends), map(totals.__getitem__, begins))
            columns.append([min(Q, (x + half) // span) for x, half, span in zip(sums, halves, part_spans)])
        cpus = []
        for _, la, lb in parts:
            cpu = 255
            for li in range(lb - 1, la - 1, -1):  # the core it was last on
                if data[li * REC + ONCPU]:
                    cpu = data[li * REC + CPU]
                    break
            cpus.append(cpu)
        new_codes = bytearray()
        records = list(zip(*columns, cpus))
        for rec in records:
            states = rec[:8]
            best = max(states)
            present = sum(states)
            new_codes.append(GONE if not best else states.index(best) | (HELD_BIT if rec[HELD] and rec[HELD] * 2 >= present else 0))
        new_data = bytes(chain.from_iterable(records))  # (rounded, not cut)
        # in place, moving what comes before the stretch rather than the longer history after it
        # (a bytearray lets go of bytes at its front without moving the rest)
        data[: last * REC] = data[: first * REC] + new_data
        codes[:last] = codes[:first] + new_codes
        started_before = ts.start <= lo
        ts.start = self._new_start(ts.start, lo, groups, old_base)
        off = ts.start - self.base
        shift, uneven = divmod(last - first - len(parts), BLOCK)
        if not started_before or uneven:
            ts.rebuild_blocks(self.dts, off)  # born inside the merged stretch: rare, and short
            return
        # the blocks before the stretch stand, and so do those after it, a whole number of BLOCKs
        # earlier now; those it touched are summed again
        keep = first // BLOCK  # blocks that end at or before the stretch's start
        after_old = -(-last // BLOCK)  # the first block that starts at or after its end, in old ticks
        blocks = ts.blocks
        old_count = len(blocks) // NFIELDS
        new_to = min(after_old - shift, len(codes) // BLOCK)
        middle = ts.whole_blocks(keep * BLOCK, new_to * BLOCK, self.dts, off) if new_to > keep else array("q")
        blocks[keep * NFIELDS : min(after_old, old_count) * NFIELDS] = middle

    def _merge_core(self, core: CoreSeries, groups, spans, lo: int, hi: int, old_base: int) -> None:
        parts = self._overlap(core.start, len(core.top), groups, old_base)
        old_dts = self._old_dts
        top, top_q = array("H"), bytearray()
        target_q, other_q = bytearray(), bytearray()
        off = core.start - old_base
        for k, la, lb in parts:
            span = spans[k]
            weights = old_dts[la + off : lb + off]
            totals: dict[int, int] = {}
            for serial, q, d in zip(core.top[la:lb], core.top_q[la:lb], weights):
                if serial:
                    totals[serial] = totals.get(serial, 0) + q * d
            best = max(totals, key=totals.__getitem__) if totals else 0
            top.append(best)
            top_q.append(min(Q, (totals.get(best, 0) + span // 2) // span))
            target_q.append(min(Q, (sum(map(mul, core.target_q[la:lb], weights)) + span // 2) // span))
            other_q.append(min(Q, (sum(map(mul, core.other_q[la:lb], weights)) + span // 2) // span))
        first, last = parts[0][1], parts[-1][2]
        core.top = core.top[:first] + top + core.top[last:]
        core.top_q = core.top_q[:first] + top_q + core.top_q[last:]
        core.target_q = core.target_q[:first] + target_q + core.target_q[last:]
        core.other_q = core.other_q[:first] + other_q + core.other_q[last:]
        core.start = self._new_start(core.start, lo, groups, old_base)

    def _merge_gil(self, gs: GilSeries, groups, spans, lo: int, hi: int, old_base: int) -> None:
        parts = self._overlap(gs.start, gs.ticks, groups, old_base)
        old_dts = self._old_dts
        counts, holder, holder_q = array("L"), array("H"), bytearray()
        off = gs.start - old_base
        for k, la, lb in parts:
            span = spans[k]
            counts.extend(sum(gs.counts[4 * la + f : 4 * lb : 4]) for f in range(4))
            totals: dict[int, int] = {}
            for serial, q, d in zip(gs.holder[la:lb], gs.holder_q[la:lb], old_dts[la + off : lb + off]):
                if serial:
                    totals[serial] = totals.get(serial, 0) + q * d
            best = max(totals, key=totals.__getitem__) if totals else 0
            holder.append(best)
            holder_q.append(min(Q, (totals.get(best, 0) + span // 2) // span))
        first, last = parts[0][1], parts[-1][2]
        gs.counts = gs.counts[: 4 * first] + counts + gs.counts[4 * last :]
        gs.holder = gs.holder[:first] + holder + gs.holder[last:]
        gs.holder_q = gs.holder_q[:first] + holder_q + gs.holder_q[last:]
        gs.start = self._new_start(gs.start, lo, groups, old_base)

    def forget_oldest(self) -> None:
        """Lets go of the oldest quarter of the history: only when even its coarsest ticks do not
        keep memory within bounds (a run of months)."""
        n = len(self.times)
        cut = (n // 4) // BLOCK * BLOCK
        if cut <= 0:
            return
        new_base = self.base + cut
        self._ranges.clear()
        del self.times[:cut]
        del self.mids[:cut]
        del self.dts[:cut]
        self.base = new_base
        total = 0
        for ts in self.order:
            drop = min(max(0, new_base - ts.start), ts.ticks)
            if drop > 0:
                del ts.data[: drop * REC]
                del ts.codes[:drop]
                ts.start += drop
                if drop % BLOCK:
                    ts.rebuild_blocks(self.dts, ts.start - self.base)
                else:
                    del ts.blocks[: drop // BLOCK * NFIELDS]
            ts.cache.clear()
            total += ts.ticks
        self._thread_ticks = total
        for core in self.cores:
            drop = new_base - core.start
            if drop > 0:
                del core.top[:drop]
                del core.top_q[:drop]
                del core.target_q[:drop]
                del core.other_q[:drop]
                core.start = new_base
            core.cache.clear()
        for gs in (*self.gils.values(), *self.interp_gils.values()):
            drop = new_base - gs.start
            if drop > 0:
                del gs.counts[: drop * 4]
                del gs.holder[:drop]
                del gs.holder_q[:drop]
                gs.start += drop
            gs.cache.clear()

    # ----------------------------------------------------------------- time
    @property
    def t_last(self) -> int:
        return self.times[-1] if self.times else 0

    @property
    def t_start(self) -> int:
        """The earliest time still held."""
        if not self.times:
            return 0
        return self.times[0] - self.dts[0]

    @property
    def ended(self) -> bool:
        return self.end is not None or self.error is not None

    def tick_rate(self, window_us: int = 1_000_000) -> float:
        """Ticks per second achieved over the last second of data."""
        n = len(self.times)
        if n < 2:
            return 0.0
        t1 = self.times[-1]
        i = bisect.bisect_left(self.times, t1 - window_us)
        i = min(i, n - 2)
        span = t1 - self.times[i]
        return (n - 1 - i) / (span / 1e6) if span > 0 else 0.0

    def cell_range(self, zoom: int, c: int) -> tuple[int, int]:
        """Global tick indices [a, b) that make cell c at this zoom."""
        key = (zoom, c)
        hit = self._ranges.get(key)
        if hit is not None:
            return hit
        found = self._cell_range(zoom, c)
        if self.finished(zoom, c):
            if len(self._ranges) > 50_000:
                self._ranges.clear()
            self._ranges[key] = found
        return found

    def _cell_range(self, zoom: int, c: int) -> tuple[int, int]:
        lo = c * zoom
        mids = self.mids
        a = bisect.bisect_left(mids, lo)
        b = bisect.bisect_left(mids, lo + zoom, a)
        if a == b:  # cells finer than ticks: the tick covering the cell's middle
            m = lo + zoom // 2
            j = bisect.bisect_left(self.times, m)
            if j < len(self.times) and self.times[j] - self.dts[j] <= m:
                return self.base + j, self.base + j + 1
        return self.base + a, self.base + b

    def finished(self, zoom: int, c: int, known_t: int | None = None) -> bool:
        """True when no later tick can change cell c."""
        limit = self._finished_until(known_t)
        return limit is None or (c + 1) * zoom <= limit

    def _finished_until(self, known_t: int | None) -> int | None:
        """Cells that end by this time are finished; None: all are (the run has ended)."""
        if self.ended:
            return None
        return self.t_last if known_t is None else min(known_t, self.t_last)

    def _cells(self, cache: dict, zoom: int, c0: int, c1: int, compute, known_t: int | None = None,
               kind: type = list) -> Any:
        """Cells c0..c1 inclusive, finished ones from the cache: a list, or a bytearray (kind)."""
        entry = cache.get(zoom)
        if entry is None or c0 < entry[0] or c0 > entry[0] + len(entry[1]):
            entry = cache[zoom] = [c0, kind()]
        first, cells = entry
        have_to = first + len(cells)
        if c0 < have_to:
            out = cells[c0 - first : min(c1 + 1, have_to) - first]
            c = min(c1 + 1, have_to)
        else:
            out = kind()
            c = c0
        if c <= c1:
            limit = self._finished_until(known_t)
            while c <= c1:
                value = compute(c)
                if c == first + len(cells) and (limit is None or (c + 1) * zoom <= limit):  # finished
                    cells.append(value)
                out.append(value)
                c += 1
        if len(cells) > CACHE_CELLS:
            cut = len(cells) - CACHE_CELLS // 2
            del cells[:cut]
            entry[0] = first + cut
        return out

    def clear_caches(self) -> None:
        self._ranges.clear()
        for s in self.order:
            s.cache.clear()
        for c in self.cores:
            c.cache.clear()
        for g in (*self.gils.values(), *self.interp_gils.values()):
            g.cache.clear()

    # ----------------------------------------------------------------- lanes
    def thread_cells(self, s: ThreadSeries, zoom: int, c0: int, c1: int) -> bytes:
        """One code per cell: the state with most time, | HELD_BIT when it held the GIL half of it."""
        first_c = (s.first_t // zoom) if s.data else None
        last_c = s.last_t // zoom if s.data else None
        codes = s.codes

        def compute(c: int) -> int:
            if first_c is None or c < first_c - 1 or c > last_c + 1:
                return GONE
            a, b = self.cell_range(zoom, c)
            la, lb = max(0, a - s.start), min(b - s.start, len(codes))
            if lb <= la:
                return GONE
            first = codes[la]
            if lb - la == 1:
                return first
            if codes.count(first, la, lb) == lb - la:  # the same all along: no need to add up
                return first
            sums = s.sums(la, lb, self.dts, s.start - self.base)
            states = sums[:8]
            best = max(states)
            if not best:
                return GONE
            code = states.index(best)
            present = sum(states)
            return code | (HELD_BIT if sums[8] and sums[8] * 2 >= present else 0)

        return bytes(self._cells(s.cache, zoom, c0, c1, compute, kind=bytearray))

    def core_cells(self, core: CoreSeries, zoom: int, c0: int, c1: int) -> list[tuple[int, int]]:
        """Per cell (kind, serial+1): which target thread had the core, or others, or idle."""

        def compute(c: int) -> tuple[int, int]:
            a, b = self.cell_range(zoom, c)
            a, b = max(a, core.start) - core.start, b - core.start
            n = b - a
            if n <= 0:
                return (IDLE, 0)
            target = sum(core.target_q[a:b])
            other = sum(core.other_q[a:b])
            full = n * Q
            if target * 5 >= full and target >= other:
                serial = _heaviest(core.top, core.top_q, a, b)
                return (OCCUPIED if target * 2 >= full else PARTLY, serial)
            if other * 4 >= full:
                return (OTHERS, 0)
            return (IDLE, 0)

        return self._cells(core.cache, zoom, c0, c1, compute, known_t=self.cores_known_t)

    def gil_cells(self, gs: GilSeries, zoom: int, c0: int, c1: int) -> list[tuple]:
        """Per cell (kind, serial+1, held, contended, switches per s) for one process's GIL."""

        def compute(c: int) -> tuple:
            a, b = self.cell_range(zoom, c)
            dur = sum(self.dts[max(a, self.base) - self.base : b - self.base]) if b > a else 0
            a, b = max(a, gs.start) - gs.start, min(b - gs.start, gs.ticks)
            if b <= a:
                return (IDLE, 0, -1.0, -1.0, -1.0)
            counts = gs.counts
            samples = sum(counts[4 * a : 4 * b : 4])
            held = sum(counts[4 * a + 1 : 4 * b : 4])
            cont = sum(counts[4 * a + 2 : 4 * b : 4])
            sw = sum(counts[4 * a + 3 : 4 * b : 4])
            held_f = held / samples if samples else -1.0
            cont_f = cont / samples if samples else -1.0
            rate = sw / (dur / 1e6) if dur else -1.0
            serial = _heaviest(gs.holder, gs.holder_q, a, b)
            if held_f < 0:
                kind = UNKNOWN
            elif held_f >= 0.5:
                kind = OCCUPIED if serial else UNKNOWN
            elif held_f >= 0.15:
                kind = PARTLY if serial else UNKNOWN
            else:
                kind = IDLE
            return (kind, serial if kind in (OCCUPIED, PARTLY) else 0, held_f, cont_f, rate)

        return self._cells(gs.cache, zoom, c0, c1, compute)

    # ----------------------------------------------------------------- figures
    def tick_index(self, t: int) -> int:
        """Global index of the first tick ending at or after t (len if none)."""
        return self.base + bisect.bisect_left(self.times, t)

    def thread_stats(self, s: ThreadSeries, t0: int, t1: int) -> ThreadStats:
        """Figures of one thread over (t0, t1], and its state at t1."""
        a = self.tick_index(t0 + 1)
        b = self.tick_index(t1)
        b = min(b + 1, self.base + len(self.times))
        la, lb = a - s.start, b - s.start
        sums = s.sums(la, lb, self.dts, s.start - self.base)
        present = sum(sums[:8])
        st = ThreadStats(s.tid, present / Q)
        if present:
            st.running = sums[0] / present
            st.native = sums[1] / present
            st.waiting = sums[2] / present
            st.runnable = sums[3] / present
            blocked = sums[4:8]
            st.blocked = sum(blocked) / present
            if st.blocked >= 0.005:
                st.blocked_by = BLOCK_REASONS[blocked.index(max(blocked))]
            st.held = sums[8] / present
            st.cpu_s = sums[9] / Q / 1e6
        last = min(lb, s.ticks) - 1
        st.state = CODE_NAMES[s.code_at(last)] if last >= 0 and lb > 0 and b - 1 < s.start + s.ticks else "gone"
        if st.running and s.pid in self.unsplit:
            st.unsplit = self._unsplit_running(s, a, b) / present
            if st.unsplit and st.state == "running":
                t_end = self.times[b - 1 - self.base]
                st.unsplit_now = self.unsplit_in(s.pid, t_end - 1, t_end)
        return st

    def gil_stats(self, pid: int, t0: int, t1: int) -> dict[str, float] | None:
        gs = self.gils.get(pid)
        if gs is None:
            return None
        a = max(self.tick_index(t0 + 1), gs.start) - gs.start
        b = min(self.tick_index(t1) + 1 - gs.start, gs.ticks)
        if b <= a:
            return None
        counts = gs.counts
        samples = sum(counts[4 * a : 4 * b : 4])
        if not samples:
            return None
        i0, i1 = a + gs.start - self.base, b + gs.start - self.base
        dur = sum(self.dts[max(0, i0) : i1])
        return {
            "held": sum(counts[4 * a + 1 : 4 * b : 4]) / samples,
            "contended": sum(counts[4 * a + 2 : 4 * b : 4]) / samples,
            "handoffs_per_s": sum(counts[4 * a + 3 : 4 * b : 4]) / (dur / 1e6) if dur else 0.0,
            "samples_per_s": samples / (dur / 1e6) if dur else 0.0,
        }

    def done_at(self, t: int) -> float | None:
        """Work done by time t, read between the progress reports around it (None before the first)."""
        times, done = self.progress_times, self.progress_done
        i = bisect.bisect_right(times, t)
        if i == 0:
            return None
        if i == len(times):
            return done[-1]
        t0, t1 = times[i - 1], times[i]
        return done[i - 1] + (done[i] - done[i - 1]) * (t - t0) / (t1 - t0) if t1 > t0 else done[i]

    def work_rates(self, zoom: int, c0: int, c1: int) -> list[float]:
        """Work done per second in each cell c0..c1 (-1 where there is no report on both sides)."""
        out = []
        last_t = self.progress_times[-1] if self.progress_times else -1
        for c in range(c0, c1 + 1):
            a, b = c * zoom, (c + 1) * zoom
            da, db = self.done_at(a), self.done_at(min(b, last_t))
            out.append(-1.0 if da is None or db is None or b > last_t + zoom else (db - da) / (zoom / 1e6))
        return out

    def work_rate(self) -> float | None:
        """Work per second over the run, from the first report to the last."""
        times, done = self.progress_times, self.progress_done
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (done[-1] - done[0]) / ((times[-1] - times[0]) / 1e6)

    def stack_at(self, tid: int, t: int) -> tuple[int, StackEntry] | None:
        """The thread's entry in the latest stack dump at or before t (else the first after)."""
        i = bisect.bisect_right(self.stack_times, t)
        for j in itertools.chain(range(i - 1, -1, -1), range(i, len(self.stacks))):
            for th in self.stacks[j].threads:
                if th.tid == tid:
                    return self.stacks[j].t, th
            if abs(self.stack_times[j] - t) > 30_000_000:
                break
        return None

    def line_at(self, tid: int, t: int) -> str:
        """The line the thread was on at t: from the ticks' lines where they say, else py-spy's dumps."""
        changes = self.line_changes.get(tid)
        if changes is not None:
            i = bisect.bisect_right(changes[0], t) - 1
            if i >= 0 and changes[1][i] in self.line_names:
                line = self.line_names[changes[1][i]]
                return f"{line.function} ({line.file.rpartition('/')[2]}:{line.line})"
        found = self.stack_at(tid, t)
        return found[1].line if found else ""

    # ----------------------------------------------------------------- lines
    def _tick_lines(self, tick: Tick) -> None:
        """Each stamped row's line: its change for the table, its time into the second's sums."""
        rows = tick.threads
        if not rows:
            return
        bucket = self.line_buckets.get(tick.t // LINE_BUCKET_US)
        if bucket is None:
            bucket = self.line_buckets[tick.t // LINE_BUCKET_US] = LineSums()
            while len(self.line_buckets) > LINE_SECONDS_KEPT:  # dicts keep their order: the oldest first
                second = next(iter(self.line_buckets))
                old = self.line_buckets.pop(second)
                minute = self.line_minutes.get(second // 60)
                if minute is None:
                    self.line_minutes[second // 60] = old
                else:
                    minute.merge(old)
        bucket.add_tick(tick.dt, rows)
        for th in rows:
            lid = th[12]
            if not lid:
                continue
            changes = self.line_changes.get(th[0])
            if changes is None:
                changes = self.line_changes[th[0]] = (array("q"), array("l"))
            elif changes[1][-1] == lid:
                continue
            changes[0].append(tick.t - tick.dt)
            changes[1].append(lid)
            if len(changes[0]) > MAX_LINE_CHANGES:
                del changes[0][: MAX_LINE_CHANGES // 4]
                del changes[1][: MAX_LINE_CHANGES // 4]

    def line_cells(self, tid: int, lid: int, zoom: int, c0: int, c1: int) -> bytes:
        """1 for each cell c0..c1 in which the thread was on the line: from a reading that found it
        there to the thread's next reading elsewhere (at the tick rate, tick by tick; with py-spy's
        few readings a second, as far as they tell)."""
        out = bytearray(c1 - c0 + 1)
        changes = self.line_changes.get(tid)
        s = self.threads.get(tid)
        if changes is None or s is None:
            return bytes(out)
        times, ids = changes
        lo, hi = c0 * zoom, (c1 + 1) * zoom
        k = max(0, bisect.bisect_right(times, lo) - 1)
        n = len(times)
        while k < n and times[k] < hi:
            if ids[k] == lid:
                start = max(times[k], lo)
                end = min(times[k + 1] if k + 1 < n else s.last_t, hi)
                for c in range(start // zoom, (max(start, end - 1)) // zoom + 1):
                    out[c - c0] = 1
            k += 1
        return bytes(out)

    def line_figures(self, t0: int, t1: int) -> tuple[list[LineFigures], float, tuple[int, int]]:
        """Time per line over the seconds that (t0, t1] touches (the minutes, beyond the last ten
        minutes), most GIL held first; the stack readings a second per thread they rest on; and
        the span they cover."""
        first, last = t0 // LINE_BUCKET_US, t1 // LINE_BUCKET_US
        kept = next(iter(self.line_buckets), last + 1)  # the oldest second still kept by itself
        now = self.t_last // LINE_BUCKET_US  # the second still being filled
        past = min(last, now - 1)
        total = LineSums()
        if past >= first:  # the seconds already over do not change: their sum is kept, and extended, for the next frames
            entry = self._line_spans.get(first)
            if entry is None or entry[0] > past or (entry[0] < past and entry[0] + 1 < kept):
                upto, done = first - 1, LineSums()
                if first < kept:  # from the minutes merged away (whole minutes: a coarser start)
                    for minute in range(first // 60, min(past, kept - 1) // 60 + 1):
                        bucket = self.line_minutes.get(minute)
                        if bucket is not None:
                            done.merge(bucket)
                    upto = min(past, kept - 1)
            else:
                upto, done = entry
            for second in range(upto + 1, past + 1):
                bucket = self.line_buckets.get(second)
                if bucket is not None:
                    done.merge(bucket)
            if first not in self._line_spans and len(self._line_spans) >= 8:
                self._line_spans.pop(next(iter(self._line_spans)))
            self._line_spans[first] = (past, done)
            total.merge(done)
        for second in range(max(first, past + 1), last + 1):
            bucket = self.line_buckets.get(second)
            if bucket is not None:
                total.merge(bucket)
        total.lines = self.line_names  # type: ignore[assignment]
        start = first * LINE_BUCKET_US if first >= kept else (first // 60) * 60 * LINE_BUCKET_US
        end = min((last + 1) * LINE_BUCKET_US, max(self.t_last, t1))
        return total.figures(), total.readings_per_s(), (start, end)

    @property
    def root_pid(self) -> int | None:
        return self.header.pid

    def gil_status(self, pid: int | None = None) -> str | None:
        proc = self.processes.get(pid if pid is not None else self.root_pid)  # type: ignore[arg-type]
        return proc.gil if proc else None

    def describe_end(self) -> str | None:
        if self.error:
            return self.error
        if self.end is None:
            return None
        how = END_REASONS.get(self.end.reason, self.end.reason or "ended")
        code = self.end.exit_code
        if code not in (None, 0):
            how += f", exit status {code}"
        return how


# Thread ticks with field names, for tests and synthetic feeds
def make_thread_tick(tid: int, dt: int, state: str = "running", cpu: int = 0, held: int | None = None,
                     oncpu: int | None = None) -> ThreadTick:
    times = [dt if key == state else 0 for key in STATE_KEYS]
    if held is None:
        held = dt if state == "running" else 0
    if oncpu is None:
        oncpu = dt if state in ("running", "native") else 0
    return ThreadTick(tid, cpu, *times, held, oncpu)


__all__ = [
    "History", "ThreadSeries", "ThreadStats", "Tick", "ZOOMS", "DEFAULT_ZOOM", "CODE_NAMES",
    "HELD_BIT", "STATE_MASK", "fmt_duration", "fmt_zoom", "make_thread_tick",
]


def core_share(model: History, core: CoreSeries, t0: int, t1: int) -> tuple[float, float]:
    """The target's and other processes' shares of one core over (t0, t1]."""
    a = max(model.tick_index(t0 + 1), core.start) - core.start
    b = min(model.tick_index(t1) + 1, model.base + len(model.times)) - core.start
    if b <= a:
        return 0.0, 0.0
    off = core.start - model.base
    weights = model.dts[a + off : b + off]  # ticks merged into longer ones count for their length
    full = sum(weights) * Q
    if not full:
        return 0.0, 0.0
    return sum(map(mul, core.target_q[a:b], weights)) / full, sum(map(mul, core.other_q[a:b], weights)) / full


def _heaviest(serials, weights, a: int, b: int) -> int:
    """The serial with the most weight over ticks a..b (0: none), e.g. a core's main thread."""
    if b - a == 1:
        return serials[a]
    totals: dict[int, int] = {}
    for i in range(a, b):
        serial = serials[i]
        if serial:
            totals[serial] = totals.get(serial, 0) + weights[i]
    return max(totals, key=totals.__getitem__) if totals else 0
