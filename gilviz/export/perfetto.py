"""A recording as a Chrome trace-event JSON file, which ui.perfetto.dev (and chrome://tracing) opens.

What it holds, per run:
- a track per thread: a slice per state (`running`, `native`, `waiting`, `runnable`,
  `blocked: sleep|io|lock|other`), each as long as the thread spent in it, and an instant per
  reading of its whole stack (a few a second); time on a CPU that no GIL sample split (its
  process's GIL not located, or not sampled in that tick) is `on a CPU (GIL not read)`, not
  `running`: Python or C, unknown which;
- beside it, a track of the Python line the thread was on: slices named by function (file and
  line in their arguments), from a stack reading that found it there to the next that found it
  elsewhere (at the tick rate where gilviz reads them; with py-spy, as far as its readings tell, and
  for no more than MAX_LINE_GAP_US past the last);
- a track per CPU core: which thread of the target was on it, and a counter of how busy the
  core was with any process;
- a track per GIL (per process, and per subinterpreter with a GIL of its own): who held it, and
  counters of the threads waiting for it and of hand-offs per second;
- the workload's progress as a counter, and the process and thread names.

A tick (5 ms by default) says how long a thread spent in each state, not in which order: within
one tick the slices are laid end to end, the state the previous tick ended in first. Their
lengths are exact, so per-thread totals equal the report's; their order inside a tick is not a
measurement, as the trace's metadata says (a note on each slice would double the file).
"""

from __future__ import annotations

import json
from typing import IO, Any

from ..stream import (BLOCKED, STATES, End, Header, Line, Process, ProcessEnd, Progress, Record, Stack, State,
                      Thread, Tick, Unsplit)

CORES_PID = 2**31 - 1  # the made-up process that holds one track per core (minus the run's index)
GIL_TID = 2**31 - 1000  # the made-up thread of a process that holds its GIL's track (plus interp)
PID_SHIFT = 1 << 22  # past Linux's largest pid: the second run's ids, where they clash with the first's
LINE_TID_SHIFT = 1 << 23  # a thread's line track: its tid plus this
MAX_LINE_GAP_US = 1_000_000  # a line slice goes on this long at most past the reading that found it


def state_name(state: State) -> str:
    return f"blocked: {state.key}" if state in BLOCKED else state.key


_NAMES = [state_name(s) for s in STATES]
UNSPLIT_NAME = "on a CPU (GIL not read)"
_INDEX = {**{name: i for i, name in enumerate(_NAMES)}, UNSPLIT_NAME: State.RUNNING}  # a slice's name -> its state


class TraceWriter:
    """The trace file: events written as they come, so memory does not grow with the run."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.events = 0
        out.write('{"displayTimeUnit":"ms","traceEvents":[\n')

    def event(self, ev: dict[str, Any]) -> None:
        self.out.write((",\n" if self.events else "") + json.dumps(ev, separators=(",", ":")))
        self.events += 1

    def close(self, metadata: dict[str, Any]) -> None:
        self.out.write('\n],"metadata":' + json.dumps(metadata) + "}\n")


class _Slice:
    __slots__ = ("name", "start", "end", "args")

    def __init__(self, name: str, start: int, end: int, args: dict[str, Any] | None):
        self.name, self.start, self.end, self.args = name, start, end, args


class RunTrace:
    """A collector that writes one run of a recording into a trace (a comparison has two)."""

    def __init__(self, writer: TraceWriter, run: int = 0, label: str = "", taken_pids: set[int] | None = None):
        self.w = writer
        self.run = run
        self.prefix = f"{label}: " if label else ""
        self.taken = taken_pids or set()  # pids of the run before (a comparison)
        self.pids: set[int] = set()  # this run's, as written
        self.header = Header()
        self.thread_pid: dict[int, int] = {}
        self.thread_name: dict[int, str] = {}
        self.named_processes: dict[int, str] = {}
        self.unsplit = Unsplit()
        self.open: dict[tuple[int, int], _Slice] = {}  # (pid, tid) -> the slice still growing
        self.counters: dict[tuple[int, str], float] = {}
        self.last_core_t: int | None = None
        self.cores_named: set[int] = set()
        self.gil_tracks: set[tuple[int, int]] = set()
        self.shift = 0
        self.ticks = 0
        self.root_named = False
        self.lines: dict[int, Line] = {}
        self.thread_line: dict[int, tuple[int, int]] = {}  # tid -> (line id, when a reading last found it)
        self.line_tracks: set[int] = set()

    # ---------------------------------------------------------------- ids
    def _pid(self, pid: int) -> int:
        return pid + self.shift

    def _cores_pid(self) -> int:
        return CORES_PID - self.run

    # ---------------------------------------------------------------- collector
    def add(self, rec: Record) -> None:
        if isinstance(rec, Tick):
            self._tick(rec)
        elif isinstance(rec, Thread):
            self._thread(rec)
        elif isinstance(rec, Process):
            self.unsplit.process(rec)
            if not (rec.pid == self.header.pid and self.root_named):  # the target keeps the name it was given
                self._process(rec.pid, rec.command)
        elif isinstance(rec, ProcessEnd):
            self.unsplit.ended(rec.pid)
        elif isinstance(rec, Stack):
            self._stack(rec)
        elif isinstance(rec, Line):
            self.lines[rec.id] = rec
        elif isinstance(rec, Progress):
            self._progress(rec)
        elif isinstance(rec, Header):
            self.header = rec
            if rec.pid is not None and rec.pid in self.taken:
                self.shift = PID_SHIFT  # the second run reused a pid of the first: keep them apart
            if rec.pid is not None:
                self._process(rec.pid, rec.command or "")
                self.root_named = bool(rec.command)
            self._meta(self._cores_pid(), None, "process_name", f"{self.prefix}CPU cores (the target's threads on them)")
            self._meta(self._cores_pid(), None, "process_sort_index", 1_000_000 + self.run, key="sort_index")
        elif isinstance(rec, End):
            self._flush_all()
            root = self.header.pid
            if root is not None:
                self.w.event({"name": f"end: {rec.reason}", "ph": "i", "s": "p", "ts": rec.t,
                              "pid": self._pid(root), "tid": self._pid(root),
                              "args": {"exit_code": rec.exit_code}})

    def finish(self) -> None:
        self._flush_all()

    # ---------------------------------------------------------------- names
    def _meta(self, pid: int, tid: int | None, what: str, value: Any, key: str = "name") -> None:
        ev: dict[str, Any] = {"name": what, "ph": "M", "pid": pid, "args": {key: value}}
        if tid is not None:
            ev["tid"] = tid
        self.w.event(ev)

    def _process(self, pid: int, command: str) -> None:
        name = self.prefix + (" ".join(command.split()) or f"pid {pid}")[:120]
        if self.named_processes.get(pid) != name:
            self.named_processes[pid] = name
            self.pids.add(self._pid(pid))
            self._meta(self._pid(pid), None, "process_name", name)
            self._meta(self._pid(pid), None, "process_sort_index", self.run * 1000 + len(self.named_processes),
                       key="sort_index")

    def _thread(self, rec: Thread) -> None:
        pid = rec.pid if rec.pid is not None else self.thread_pid.get(rec.tid, self.header.pid or 0)
        self.thread_pid[rec.tid] = pid
        name = rec.name or self.thread_name.get(rec.tid) or f"thread {rec.tid}"
        if self.thread_name.get(rec.tid) != name:
            self.thread_name[rec.tid] = name
            self._meta(self._pid(pid), self._pid(rec.tid), "thread_name", name)
            if self._pid(rec.tid) + LINE_TID_SHIFT in self.line_tracks:
                self._meta(self._pid(pid), self._pid(rec.tid) + LINE_TID_SHIFT, "thread_name", f"{name}: Python line")

    def _name_of(self, tid: int) -> str:
        return self.thread_name.get(tid) or f"thread {tid}"

    # ---------------------------------------------------------------- slices
    def _slice(self, pid: int, tid: int, name: str, start: int, end: int, args: dict[str, Any] | None = None) -> None:
        """Adds to the track's open slice when it continues it, else ends that one and opens this."""
        if end <= start:
            return
        key = (pid, tid)
        cur = self.open.get(key)
        if cur is not None and cur.name == name and cur.end == start and cur.args == args:
            cur.end = end
            return
        if cur is not None:
            self._emit(key, cur)
        self.open[key] = _Slice(name, start, end, args)

    def _emit(self, key: tuple[int, int], s: _Slice) -> None:
        ev: dict[str, Any] = {"name": s.name, "ph": "X", "ts": s.start, "dur": s.end - s.start,
                              "pid": key[0], "tid": key[1]}
        if s.args:
            ev["args"] = s.args
        self.w.event(ev)

    def _flush_all(self) -> None:
        for key, s in self.open.items():
            self._emit(key, s)
        self.open.clear()

    def _counter(self, pid: int, name: str, t: int, value: float) -> None:
        value = round(value, 3)
        if self.counters.get((pid, name)) == value:
            return
        self.counters[pid, name] = value
        self.w.event({"name": name, "ph": "C", "ts": t, "pid": pid, "args": {"value": value}})

    # ---------------------------------------------------------------- ticks
    def _tick(self, tick: Tick) -> None:
        self.ticks += 1
        t, dt = tick.t, tick.dt
        root = self.header.pid or 0
        unsplit = self.unsplit.in_tick(tick.gils)
        waiting_per_pid: dict[int, int] = {}
        on_core: dict[int, list[tuple[int, int]]] = {}
        for th in tick.threads:
            pid = self.thread_pid.get(th.tid)
            if pid is None:
                pid = self.thread_pid[th.tid] = root
            if th.tid not in self.thread_name:
                self._thread(Thread(t, th.tid, pid, ""))
            self._thread_states(self._pid(pid), self._pid(th.tid), th, t, pid in unsplit)
            if th.line or th.tid in self.thread_line:
                self._thread_line(self._pid(pid), th.tid, th.line, t, dt)
            waiting_per_pid[pid] = waiting_per_pid.get(pid, 0) + th.waiting
            if th.cpu >= 0 and th.oncpu > 0:
                on_core.setdefault(th.cpu, []).append((th.tid, th.oncpu))
        cores = self._cores_pid()
        for cpu, occupants in on_core.items():
            if cpu not in self.cores_named:
                self.cores_named.add(cpu)
                self._meta(cores, cpu, "thread_name", f"cpu{cpu}")
                self._meta(cores, cpu, "thread_sort_index", cpu, key="sort_index")
            at = t - dt
            for tid, us in occupants:
                us = min(us, t - at)
                self._slice(cores, cpu, self._name_of(tid), at, at + us, {"tid": tid})
                at += us
        if tick.core_busy:
            if self.last_core_t is not None and t > self.last_core_t:
                for cpu, busy in enumerate(tick.core_busy):
                    self._counter(cores, f"cpu{cpu} busy, any process (%)", self.last_core_t,
                                  100.0 * busy / (t - self.last_core_t))
            self.last_core_t = t
        for g in tick.gils:
            self._gil(g, t, dt, waiting_per_pid.get(g.pid, 0))

    def _thread_states(self, pid: int, tid: int, th, t: int, unsplit: bool = False) -> None:
        times = [th.time_in(s) for s in STATES]
        total = sum(times)
        if total <= 0:
            return
        parts = [i for i, us in enumerate(times) if us > 0]
        cur = self.open.get((pid, tid))
        if cur is not None and len(parts) > 1:  # the state the last tick ended in goes on first
            first = _INDEX.get(cur.name, -1)
            if first in parts:
                parts.remove(first)
                parts.insert(0, first)
        at = t - total
        for i in parts:
            self._slice(pid, tid, UNSPLIT_NAME if unsplit and i == State.RUNNING else _NAMES[i], at, at + times[i])
            at += times[i]

    def _thread_line(self, pid: int, tid: int, lid: int, t: int, dt: int) -> None:
        if lid:
            self.thread_line[tid] = (lid, t)
        else:
            lid, seen = self.thread_line[tid]
            if t - seen > MAX_LINE_GAP_US:
                del self.thread_line[tid]
                return
        line = self.lines.get(lid)
        if line is None:
            return
        track = self._pid(tid) + LINE_TID_SHIFT
        if track not in self.line_tracks:
            self.line_tracks.add(track)
            self._meta(pid, track, "thread_name", f"{self._name_of(tid)}: Python line")
        start = t - dt
        cur = self.open.get((pid, track))
        if cur is not None and 0 < abs(start - cur.end) <= 2:  # ticks' ends and lengths round apart by a microsecond
            start = cur.end
        self._slice(pid, track, line.function or "?", start, t, {"file": line.file, "line": line.line})

    def _gil(self, g, t: int, dt: int, waiting_us: int) -> None:
        pid = self._pid(g.pid)
        tid = GIL_TID + g.interp
        if (g.pid, g.interp) not in self.gil_tracks:
            self.gil_tracks.add((g.pid, g.interp))
            self._meta(pid, tid, "thread_name", "GIL" if g.interp == 0 else f"GIL of interpreter {g.interp}")
            self._meta(pid, tid, "thread_sort_index", -1000 + g.interp, key="sort_index")
        label = "GIL" if g.interp == 0 else f"GIL {g.interp}"
        if g.samples <= 0:
            return  # not sampled in this tick: a gap, not a guess
        held = round(dt * g.held / g.samples)
        if held > 0:
            who = self._name_of(g.holder) if g.holder else "a thread not identified"
            self._slice(pid, tid, f"held by {who}", t - dt, t - dt + held, {"holder tid": g.holder})
        self._counter(pid, f"{label} hand-offs/s", t - dt, g.switches * 1e6 / dt)
        self._counter(pid, f"{label} contended (% of samples)", t - dt, 100.0 * g.contended / g.samples)
        if g.interp == 0:
            self._counter(pid, f"{label} waiters (threads waiting, mean)", t - dt, waiting_us / dt)

    # ---------------------------------------------------------------- the rest
    def _stack(self, rec: Stack) -> None:
        for e in rec.threads:
            if not e.line:
                continue
            pid = self.thread_pid.get(e.tid, rec.pid)
            self.w.event({"name": e.line, "ph": "i", "s": "t", "ts": rec.t, "pid": self._pid(pid),
                          "tid": self._pid(e.tid), "cat": "stack",
                          "args": {"owns GIL": e.owns_gil, "stack": e.frames[:20], "read by": rec.by}})

    def _progress(self, rec: Progress) -> None:
        root = self.header.pid
        if root is None:
            return
        if rec.done is not None:
            self._counter(self._pid(root), f"work ({rec.unit or 'done'})", rec.t, float(rec.done))
        if rec.result and (rec.final or False):
            self.w.event({"name": "result", "ph": "i", "s": "p", "ts": rec.t, "pid": self._pid(root),
                          "tid": self._pid(root), "args": {k: v for k, v in rec.result.items()}})


def write_trace(out: IO[str], runs: list[tuple[Any, str]]) -> dict[str, Any]:
    """Writes the runs (each an iterable of records and its label) into one trace; returns what it
    wrote, for the command to say."""
    from ..collect import replay

    writer = TraceWriter(out)
    taken: set[int] = set()
    ticks = []
    for index, (records, label) in enumerate(runs):
        run = replay(records, RunTrace(writer, index, label, taken))
        taken |= run.pids
        ticks.append(run.ticks)
    writer.close({"source": "gilviz", "runs": [label for _, label in runs],
                  "note": "a tick (5 ms by default) measures how long a thread spent in each state, not in which "
                          "order: within a tick, slices are laid end to end; across ticks, the order is measured"})
    return {"events": writer.events, "ticks": ticks}
