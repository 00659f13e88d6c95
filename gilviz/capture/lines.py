"""The Python line each thread is on, stamped on the ticks, so every state is attributed to lines.

Readings come from three sources, all at the tick rate but the last: the sampler itself, from
the target's memory at each tick (probes/frames.py, `FrameLines`, 3 to 7 us a thread; CPython
3.9 to 3.15 with a GIL); where it cannot read a 3.14+ target, a helper on the target's own
interpreter (probes/unwinder_helper.py, CPython's `_remote_debugging`, about 25 us a reading,
and a process of its own); where neither can read, py-spy's dumps (capture/stacks.py), a few a
second. Each reading's innermost Python frame becomes a
`Line` (named once) and is stamped on that thread's next tick, so the ticks that carry a line
are a sample of the thread's life (see gilviz/lines.py for the sums).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from typing import Callable, Iterable

from ..probes.frames import UNREADABLE, FrameReader, FramesError
from ..probes.threads import ThreadReading, scheduler_tick_us
from ..stream import Line, Notice, Record, StackEntry, ThreadTick

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "probes", "unwinder_helper.py")
HELPER_FROM = (3, 14)  # the first CPython whose _remote_debugging reads other processes
STALE_TICKS = 3  # a reading older than this many ticks is stamped on no tick
WALK_EVERY_NS = 50_000_000  # thread states are looked for again at most this often...
WALK_TRIES = 4  # ...for a thread this many times (a thread CPython did not start has none)
MAX_STACK_READS = 128  # whole stacks read at once, at most (about 2 ms): with more threads moving, in turn
_PYTHON_EXE = re.compile(r"python(3(\.\d+)?)?t?(-dbg)?$")


def _alive(pid: int) -> bool:
    """Running still (an exited process may stay a zombie until its parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def short_file(path: str) -> str:
    """A module's path from its package root, as py-spy shows it; a script's name."""
    for root in ("/site-packages/", "/dist-packages/"):
        if root in path:
            return path.rpartition(root)[2]
    _, sep, rest = path.rpartition("/lib/python")
    if sep and "/" in rest:
        return rest.partition("/")[2]
    return os.path.basename(path)


def stack_entries(rows: list[ThreadTick], frames: dict[int, list[str]], names: dict, dt: int) -> list[StackEntry]:
    """The stack of each thread of the tick that has one; whether it held the GIL and was active
    (not blocked) are the tick's measure of it."""
    out = []
    for row in rows:
        found = frames.get(row.tid)
        if found is None:
            continue
        mem = names.get(row.tid)
        out.append(StackEntry(row.tid, mem.name if mem is not None else "", found[0] if found else "",
                              row.held * 2 > dt, (row.running + row.native + row.waiting + row.runnable) * 2 > dt,
                              found))
    return out


def _frame_text(file: str, line: int, function: str) -> str:
    return f"{function} ({short_file(file)}:{line})"


def parse_pyspy_line(text: str) -> tuple[str, int, str] | None:
    """py-spy's "func (file.py:12)" -> (file, 12, func)."""
    if not text.endswith(")") or " (" not in text:
        return None
    function, _, where = text[:-1].partition(" (")  # a function has no " (" in its name; a path may
    file, _, lineno = where.rpartition(":")
    return (file, int(lineno), function) if lineno.isdigit() and file else None


class LineTable:
    """Lines by (file, line, function) -> id, and each thread's latest reading not yet stamped."""

    def __init__(self, now_us: Callable[[], int], t0_ns: int):
        """t0_ns: the stream's zero on CLOCK_MONOTONIC (the helpers stamp their readings on it)."""
        self.now_us = now_us
        self.t0_ns = t0_ns
        self.ids: dict[tuple[str, int, str], int] = {}
        self._new: list[Record] = []
        self._latest: dict[int, tuple[int, int]] = {}  # tid -> (t_us, line id)
        self._lock = threading.Lock()
        self.helpers: dict[int, UnwinderHelper] = {}
        self.readers: dict[int, FrameLines] = {}  # read by the sampler itself, from the target's memory
        self.read_pids = _PidsOf(self.helpers, self.readers)  # whose lines py-spy does not read
        self._ended_cpu_s = 0.0  # helpers that ended before the run did
        self._stopped = False

    def intern(self, file: str, lineno: int, function: str) -> int:
        with self._lock:
            return self._intern(file, lineno, function)

    def _intern(self, file: str, lineno: int, function: str) -> int:
        key = (file, lineno, function)
        lid = self.ids.get(key)
        if lid is None:
            lid = self.ids[key] = len(self.ids) + 1
            self._new.append(Line(self.now_us(), lid, file, lineno, function))
        return lid

    def seen(self, t_us: int, readings: Iterable[tuple[int, int]]) -> None:
        """A reading: (tid, line id) of each thread it found in Python code, at t_us."""
        with self._lock:
            for tid, lid in readings:
                self._latest[tid] = (t_us, lid)

    def intern_all(self, wheres: Iterable[tuple[str, int, str]]) -> list[int]:
        with self._lock:
            return [self._intern(*where) for where in wheres]

    def seen_pyspy(self, t_us: int, entries: Iterable[tuple[int | None, str]]) -> None:
        with self._lock:
            for tid, line in entries:
                top = parse_pyspy_line(line) if tid is not None else None
                if top is not None:
                    self._latest[tid] = (t_us, self._intern(*top))  # type: ignore[index]

    def stamp(self, ticks: list[ThreadTick], t_us: int, tick_us: int) -> list[ThreadTick]:
        """Each thread's tick with the line of its latest reading, if it came since its last tick."""
        latest = self._latest
        if not latest:
            return ticks
        oldest = t_us - STALE_TICKS * tick_us
        with self._lock:
            out = []
            for tt in ticks:
                seen = latest.pop(tt.tid, None)
                out.append(tt._replace(line=seen[1]) if seen is not None and seen[0] >= oldest else tt)
            return out

    def drain(self) -> list[Record]:
        with self._lock:
            out, self._new = self._new, []
        return out

    # ------------------------------------------------------------- from the target's memory
    def start_reader(self, pid: int, make: Callable[[], FrameReader], tids: set[int],
                     quiet: bool = False, wait: bool = True) -> bool | None:
        """Lines read from the process's memory at every tick. Where its frames cannot be read,
        False, and unless `quiet` (a helper will read them), the stream says py-spy reads them;
        None while it has no thread state yet to tell whether they can (its interpreter is
        starting), unless told not to `wait` longer: ask again."""
        try:
            reader = FrameLines(make(), self)
            if not reader.walk(tids, 0):
                if wait:
                    return None
                raise FramesError("no thread state found in its interpreters")
            if not reader.tstates:
                raise FramesError("no thread state names a thread of the process (3.9 and 3.10: a C library "
                                  "other than glibc?)")
        except Exception as e:  # (one nothing foresaw too, in memory read as it changes: not the end of the run)
            if not quiet:
                why = str(e) if isinstance(e, (OSError, FramesError)) else f"{type(e).__name__}: {e}"
                with self._lock:
                    self._new.append(Notice(self.now_us(), f"pid {pid}: gilviz cannot read its frames ({why}); py-spy "
                                                           "reads its lines, a few times a second"))
            return False
        self.readers[pid] = reader
        return True

    # ------------------------------------------------------------- 3.14+ helpers
    def start_helper(self, pid: int, period_ns: int, stack_period_ns: int = 0) -> None:
        """A helper for a 3.14+ process; where it cannot start, py-spy reads its lines, and the
        stream says why."""
        helper = UnwinderHelper(pid, self, period_ns, stack_period_ns)
        if not helper.start():
            self._cannot_read(helper)
            return
        self.helpers[pid] = helper
        if self._stopped:  # the run ended while it started
            helper.stop()

    def helper_ended(self, helper: UnwinderHelper) -> None:
        """Its output closed: the process is gone, or the helper could read it no more (then
        py-spy takes its lines over)."""
        if self.helpers.get(helper.pid) is helper:
            del self.helpers[helper.pid]
            self._ended_cpu_s += helper.cpu_s()
        helper.error = helper.error or f"it ended, exit status {helper.proc.returncode if helper.proc else '?'}"
        self._cannot_read(helper)

    def _cannot_read(self, helper: UnwinderHelper) -> None:
        if self._stopped or not _alive(helper.pid):
            return  # the run or the process is over: nothing is missing
        with self._lock:
            self._new.append(Notice(self.now_us(), f"pid {helper.pid}: CPython's own stack reader stopped or "
                                                   f"could not start ({helper.error}); py-spy reads its lines, "
                                                   "a few times a second"))

    def set_period(self, period_ns: int, stack_period_ns: int) -> None:
        for helper in list(self.helpers.values()):
            helper.set_period(period_ns, stack_period_ns)

    @property
    def cpu_s(self) -> float:
        return self._ended_cpu_s + sum(h.cpu_s() for h in list(self.helpers.values()))

    def stop(self) -> None:
        self._stopped = True
        for helper in list(self.helpers.values()):
            helper.stop()


class UnwinderHelper:
    def __init__(self, pid: int, table: LineTable, period_ns: int, stack_period_ns: int = 0):
        self.pid = pid
        self.table = table
        self.period_ns = period_ns
        self.stack_period_ns = stack_period_ns
        self._frames: dict[int, str] = {}  # the helper's line ids -> "function (file:line)"
        self._stacks: tuple[int, dict[int, list[str]]] | None = None  # its latest whole stacks, not yet taken
        self.proc: subprocess.Popen | None = None
        self.error = ""
        self._thread: threading.Thread | None = None
        self._ids: dict[int, int] = {}  # the helper's line ids -> the table's
        self._cpu_at_end = 0.0

    def start(self) -> bool:
        try:
            exe = os.readlink(f"/proc/{self.pid}/exe")
        except OSError as e:
            self.error = str(e)
            return False
        if not _PYTHON_EXE.match(os.path.basename(exe)) or not os.access(exe, os.X_OK):
            # a program embedding Python (uwsgi, blender...) would not run the helper: py-spy reads it
            self.error = f"{exe} is not a python executable"
            return False
        try:
            self.proc = subprocess.Popen([exe, "-I", HELPER, str(self.pid), str(self.period_ns), str(self.stack_period_ns)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         bufsize=0)
        except OSError as e:
            self.error = str(e)
            return False
        first = self.proc.stdout.readline().decode(errors="replace")  # type: ignore[union-attr]
        if not first or first.startswith("E "):
            self.error = first[2:].strip() or "the stack helper ended"
            self.stop()
            return False
        self._handle(first)
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"gilviz-lines-{self.pid}")
        self._thread.start()
        return True

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._handle(raw.decode(errors="replace"))
        self.proc.wait()
        self.table.helper_ended(self)

    def _handle(self, text: str) -> None:
        if text.startswith("S "):
            parts = text.split()
            t_us = (int(parts[1]) - self.table.t0_ns) // 1000
            readings = []
            for part in parts[2:]:
                tid, _, key = part.partition(":")
                lid = self._ids.get(int(key))
                if lid is not None:
                    readings.append((int(tid), lid))
            self.table.seen(t_us, readings)
        elif text.startswith("L "):
            key, lineno, function, file = text[2:].rstrip("\n").split("\t", 3)
            self._ids[int(key)] = self.table.intern(file, int(lineno), function)
            self._frames[int(key)] = _frame_text(file, int(lineno), function)
        elif text.startswith("K "):
            parts = text.split()
            frames = self._frames
            stacks = {}
            for part in parts[2:]:
                tid, _, keys = part.partition(":")
                stacks[int(tid)] = [frames[int(k)] for k in keys.split(",") if int(k) in frames]
            self._stacks = ((int(parts[1]) - self.table.t0_ns) // 1000, stacks)
        elif text.startswith("E "):
            self.error = text[2:].strip()

    def take_stacks(self) -> tuple[int, dict[int, list[str]]] | None:
        """(t_us, tid -> whole stack) of its latest reading of them, once."""
        stacks, self._stacks = self._stacks, None
        return stacks

    def set_period(self, period_ns: int, stack_period_ns: int) -> None:
        if (period_ns, stack_period_ns) == (self.period_ns, self.stack_period_ns):
            return
        if self.proc is None or self.proc.poll() is not None:
            return
        said = f"{period_ns}\n" if period_ns != self.period_ns else ""
        said += f"K {stack_period_ns}\n" if stack_period_ns != self.stack_period_ns else ""
        self.period_ns, self.stack_period_ns = period_ns, stack_period_ns
        try:
            self.proc.stdin.write(said.encode())  # type: ignore[union-attr]
        except OSError:
            pass

    def cpu_s(self) -> float:
        if self.proc is None or self.proc.poll() is not None:
            return self._cpu_at_end
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            self._cpu_at_end = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
        return self._cpu_at_end

    def stop(self) -> None:
        if self.proc is None:
            return
        self.cpu_s()
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._thread is not None:
            self._thread.join(2)


class _PidsOf:
    """The processes whose lines are read at the tick rate, by a helper or by the sampler."""

    def __init__(self, *tables: dict) -> None:
        self.tables = tables

    def __contains__(self, pid: object) -> bool:
        return any(pid in t for t in self.tables)


SCHEDSTAT_LAG_NS = (scheduler_tick_us() + 1000) * 1000  # how late schedstat may show a running thread's run


class FrameLines:
    """One process's lines, read from its memory: `lines` holds each thread's line id (0: in no
    Python code) as of the last tick read, for the sampler to put on the ticks as it makes them.
    A thread asleep since is on the same line (its frame cannot have moved): it is not read again;
    nor is one that ran but never held the GIL, where the GIL's samples tell who did."""

    def __init__(self, reader: FrameReader, table: LineTable):
        self.reader = reader
        self.table = table
        self.tstates: dict[int, int] = {}  # tid -> PyThreadState address
        self.lines: dict[int, int] = {}  # tid -> line id, for threads whose line is known
        self.tries: dict[int, int] = {}  # tid -> walks that did not find its thread state
        self.walked_ns = -(1 << 62)
        self.stirred: set[int] = set()  # threads whose frames may have moved since their stacks were last read
        self.frames: dict[int, list[str]] = {}  # tid -> its stack as last read, innermost first
        self._next_stack = 0  # where in the tick's rows the next stack reads begin
        self._tid_of: dict[int, int] = {}  # PyThreadState address -> tid, as of the last walk
        self.one_interpreter = False  # the last walk found the thread states of one interpreter only
        # Where the holders were not known, the threads that ran are read: a thread running then
        # may show it in its schedstat only a scheduler tick later, so those that ran are read at
        # the ticks after too, up to the first after that much time (then holders alone again).
        self._moved_read_until = -(1 << 62)
        self._last_ns = -(1 << 62)

    def walk(self, tids: set[int], now_ns: int) -> int:
        """The thread states of the process's threads; how many thread states there were."""
        found: dict[int, int] = {}
        states = self.reader.thread_states()
        for tstate, _, tid in states:
            if tid in tids:  # (a thread of the process: not one that ended, nor a misread)
                found[tid] = tstate
        if found != self.tstates:
            self.lines = {tid: lid for tid, lid in self.lines.items() if self.tstates.get(tid) == found.get(tid)}
            self.frames = {tid: f for tid, f in self.frames.items() if self.tstates.get(tid) == found.get(tid)}
        self.tstates = found
        self._tid_of = {tstate: tid for tid, tstate in found.items()}
        self.one_interpreter = len({interp for _, interp, _ in states}) == 1
        self.walked_ns = now_ns
        return len(states)

    def update(self, readings: list[ThreadReading], now_ns: int, read: bool,
               holders: set[int] | None = None) -> dict[int, int] | None:
        """The lines of this tick's threads, read for those that moved; None on a tick not read
        (then the lines of those that moved are no longer known). `holders`: every thread state
        that held the GIL over the tick, where that is known (sampler._holders_over_tick): a
        thread's frames move only while it holds the GIL, so only theirs are read again, in place
        of those that moved."""
        tstates, lines = self.tstates, self.lines
        moved = [r.tid for r in readings if r.moved]
        movers = self._movers(holders)
        if movers is None:
            self._moved_read_until = now_ns + SCHEDSTAT_LAG_NS
        else:  # (the holders whether their schedstat shows it yet or not: it lags a running thread)
            if self._last_ns < self._moved_read_until:  # (and those that ran, a tick after holders unknown)
                movers.update(moved)
            moved = [tid for tid in movers if tid in tstates]
        self._last_ns = now_ns
        self.stirred.update(moved)  # (their whole stacks too)
        if len(tstates) < len(readings) and now_ns - self.walked_ns >= WALK_EVERY_NS:
            tries = self.tries
            lost = [r.tid for r in readings if r.tid not in tstates and tries.get(r.tid, 0) < WALK_TRIES]
            if lost:
                try:
                    self.walk({r.tid for r in readings}, now_ns)
                except (OSError, FramesError):
                    self.walked_ns = now_ns
                tstates, lines = self.tstates, self.lines
                for tid in lost:
                    if tid not in tstates:
                        tries[tid] = tries.get(tid, 0) + 1
        if not read:
            for tid in moved:
                lines.pop(tid, None)
            return None
        todo = set(moved)
        if len(lines) < len(tstates):
            todo.update(tid for tid in tstates if tid not in lines)
        tids = [tid for tid in todo if tid in tstates]
        fresh_tids: list[int] = []
        fresh: list[tuple[str, int, str]] = []
        known = self.table.ids  # (a line's id never changes: those known are not asked for under the lock)
        for tid, where in zip(tids, self.reader.lines([tstates[tid] for tid in tids])):
            if where is UNREADABLE:  # it ended, or its thread state went: look again
                del tstates[tid]
                lines.pop(tid, None)
                continue
            if where is None:
                lines[tid] = 0
                continue
            lid = known.get(where)
            if lid is not None:
                lines[tid] = lid
            else:
                fresh_tids.append(tid)
                fresh.append(where)
        if fresh:
            lines.update(zip(fresh_tids, self.table.intern_all(fresh)))
        return lines

    def _movers(self, holders: set[int] | None) -> set[int] | None:
        """The threads of `holders` (None: where one is not a thread state of this process's one
        interpreter, as of the last walk: then any may have moved)."""
        if holders is None or not self.one_interpreter:
            return None
        out = set()
        for tstate in holders:
            tid = self._tid_of.get(tstate)
            if tid not in self.tstates:  # (only the walk adds to them, and it makes _tid_of anew)
                return None
            out.add(tid)
        return out

    def stack_entries(self, rows: list[ThreadTick], names: dict, dt: int, limit: int) -> list[StackEntry]:
        """Each thread's whole stack, read again only for those that moved since it was last read,
        and for at most MAX_STACK_READS of them (the others in turn, at the next reads: until then
        they are left out, and their last stack read stands at its own time)."""
        frames, stirred, tstates = self.frames, self.stirred, self.tstates
        stack = self.reader.stack
        now: dict[int, list[str]] = {}
        n = len(rows)
        start = self._next_stack % n if n else 0
        left, after = MAX_STACK_READS, start
        for k in range(n):
            tid = rows[(start + k) % n].tid
            tstate = tstates.get(tid)
            if tstate is None:
                continue
            if tid in stirred or tid not in frames:
                if not left:
                    continue
                left -= 1
                after = start + k + 1
                stirred.discard(tid)
                try:
                    frames[tid] = [_frame_text(*where) for where in stack(tstate, limit)]
                except (OSError, FramesError):
                    frames.pop(tid, None)
                    continue
            now[tid] = frames[tid]
        self._next_stack = after
        return stack_entries(rows, now, names, dt)

    def forget(self, gone: list[int]) -> None:
        for tid in gone:
            self.tstates.pop(tid, None)
            self.lines.pop(tid, None)
            self.tries.pop(tid, None)
            self.frames.pop(tid, None)
            self.stirred.discard(tid)
