"""Which lines hold the GIL and which wait for it, on real workloads, 3.9 to 3.15.

The workload is a small convoy: one thread spins on a single line, another reads a socket fed
by a child process a byte a millisecond. Each time its recv returns, the reader must take the
GIL back from the spinner, so its waits are on the recv line (the call it is returning from:
the frame is still on it while CPython takes the GIL back). gilviz reads the lines from the
target's memory at the tick rate; where it cannot, on 3.14+ a helper reads them with the
target's own `_remote_debugging`, also at the tick rate; py-spy, 5 dumps a second, takes over
where neither can.
"""

import pytest

from conftest import record_code
from gilviz.capture.lines import LineTable
from gilviz.lines import LineSums
from gilviz.stream import Line, ThreadTick

CONVOY = """
import os, socket, threading, time
ours, theirs = socket.socketpair()
if os.fork() == 0:
    ours.close()
    end = time.time() + 4
    while time.time() < end:
        theirs.send(b"x"); time.sleep(0.001)
    os._exit(0)
theirs.close()
def spin():
    x = 0
    while True: x += 1
def read():
    while True:
        data = ours.recv(64)
        if not data: break
threading.Thread(target=spin, name="spinner", daemon=True).start()
reader = threading.Thread(target=read, name="reader")
reader.start()
reader.join()
"""
HOT = CONVOY.splitlines().index("    while True: x += 1") + 1
WAIT = CONVOY.splitlines().index("        data = ours.recv(64)") + 1


def test_the_hot_line_holds_and_the_recv_line_waits(tmp_path, python):
    summary, _ = record_code(tmp_path, python, CONVOY, duration=3.0)
    assert summary["stacks"]["by"] == "gilviz"
    assert summary["stacks"]["readings_per_s"] > 50  # at about the tick rate (200/s asked)
    _assert_hot_and_waiting_lines(summary)


def test_the_lines_read_from_memory_land_on_the_ticks_the_state_rules_make_in_python(tmp_path, monkeypatch):
    from conftest import python_or_skip
    from gilviz.capture import states

    monkeypatch.setattr(states, "tick_threads", None)  # as where the C extension could not be built
    summary, _ = record_code(tmp_path, python_or_skip("3.12"), CONVOY, duration=2.0)
    assert summary["stacks"]["by"] == "gilviz" and summary["stacks"]["readings_per_s"] > 50, summary["stacks"]
    _assert_hot_and_waiting_lines(summary)


def test_where_gilviz_cannot_read_the_frames_pyspy_reads_the_lines_and_the_stream_says_why(tmp_path, monkeypatch):
    from conftest import python_or_skip
    from gilviz.probes import frames

    python = python_or_skip("3.12")
    monkeypatch.delitem(frames.LAYOUTS, (3, 12))  # as for a build whose layout gilviz does not know
    summary, rec = record_code(tmp_path, python, CONVOY, duration=3.0)
    assert summary["stacks"]["by"] == "py-spy"
    notices = [text for text in rec.notices if "cannot read its frames" in text]
    # once for each Python process (the workload forks one)
    assert notices and len(set(notices)) == len(notices), notices
    assert all("CPython 3.12" in text and "py-spy reads its lines" in text for text in notices), notices
    _assert_hot_and_waiting_lines(summary)


def test_where_no_thread_id_can_be_read_pyspy_reads_the_lines_and_the_stream_says_why(tmp_path, monkeypatch):
    """3.9 and 3.10 keep the OS thread id in glibc's struct pthread: another C library would give
    thread states gilviz cannot match to threads (here: a wrong offset into the struct)."""
    from conftest import python_or_skip
    from gilviz.probes import frames

    monkeypatch.setattr(frames, "PTHREAD_TID", frames.PTHREAD_TID + 64)
    summary, rec = record_code(tmp_path, python_or_skip("3.10"), CONVOY, duration=3.0)
    assert summary["stacks"]["by"] == "py-spy"
    notices = [text for text in rec.notices if "cannot read its frames" in text]
    assert notices and all("no thread state names a thread" in text for text in notices), notices
    _assert_hot_and_waiting_lines(summary)


class _StatesReader:
    """A frame reader whose process's interpreters hold these thread states, (address, interp, tid)."""

    def __init__(self, states):
        self.states = states

    def thread_states(self):
        return self.states


def test_a_reader_is_taken_only_once_a_thread_state_tells_whether_it_can_read_the_threads():
    """Started while its interpreter is starting (no thread state yet), a reader of the process's
    memory cannot tell whether it will match thread states to threads: it waits, and is not taken
    (else a reader that can match none, as on a C library other than glibc on 3.9 and 3.10, would
    stand, and no lines come at all: py-spy reads them only where gilviz does not)."""
    table = LineTable(lambda: 0, 0)
    assert table.start_reader(1, lambda: _StatesReader([]), {1, 2}) is None  # not yet
    assert 1 not in table.readers and not table.drain()
    assert table.start_reader(1, lambda: _StatesReader([(0x1000, 0x10, 99)]), {1, 2}) is False  # none of its threads
    assert 1 not in table.readers and any("cannot read its frames" in r.text for r in table.drain())
    assert table.start_reader(1, lambda: _StatesReader([]), {1, 2}, wait=False) is False  # waited long enough
    assert 1 not in table.readers
    assert table.start_reader(1, lambda: _StatesReader([(0x1000, 0x10, 2)]), {1, 2}) is True
    assert table.readers[1].tstates == {2: 0x1000}


class _LinesReader(_StatesReader):
    """A frame reader whose threads are each on a line of their own; it notes what it was asked."""

    def __init__(self, states):
        super().__init__(states)
        self.asked: list[int] = []
        self.line_of = {tstate: ("w.py", tid, "f") for tstate, _, tid in states}

    def lines(self, tstates):
        self.asked += tstates
        return [self.line_of[t] for t in tstates]


def _readings(tids, still=()):
    """Readings of threads that ran (those in `still`: whose schedstat did not show it yet)."""
    from gilviz.probes.threads import ThreadReading

    return [ThreadReading(tid, "S", 0, 1, 0, 1, "running", tid not in still) for tid in tids]


def test_of_the_threads_that_ran_only_those_that_held_the_gil_have_their_lines_read_again():
    from gilviz.capture.lines import SCHEDSTAT_LAG_NS, FrameLines

    states = [(0x1000 * tid, 0x10, tid) for tid in (1, 2, 3, 4)]
    everyone = {0x1000, 0x2000, 0x3000, 0x4000}
    reader = _LinesReader(states)
    lines = FrameLines(reader, LineTable(lambda: 0, 0))
    lines.walk({1, 2, 3, 4}, 0)
    clock = iter(range(0, 1 << 40, 5_000_000))  # (a tick every 5 ms)
    lines.update(_readings([1, 2, 3, 4]), next(clock), True, everyone)
    assert sorted(reader.asked) == [0x1000, 0x2000, 0x3000, 0x4000]  # (none known yet: all)
    first = dict(lines.lines)
    for holders, read in (({0x2000}, [0x2000]), ({0x2000, 0x3000}, [0x2000, 0x3000]),
                          (None, [0x1000, 0x2000, 0x3000, 0x4000]),  # who held it is not known
                          ({0x2000, 0x9000}, [0x1000, 0x2000, 0x3000, 0x4000])):  # a holder not walked
        reader.asked.clear()
        lines.stirred.clear()
        reader.line_of = {t: ("w.py", line + 100, "f") for t, line in ((t, tid) for t, _, tid in states)}
        out = lines.update(_readings([1, 2, 3, 4]), next(clock), True, holders)
        assert sorted(reader.asked) == read, holders
        assert lines.stirred == {t // 0x1000 for t in read}  # (whose whole stacks are read again)
        assert all(out[tid] != first[tid] for tid in (1, 2, 3, 4) if 0x1000 * tid in read)
        reader.line_of = {t: ("w.py", tid, "f") for t, _, tid in states}
        for _ in range(SCHEDSTAT_LAG_NS // 5_000_000 + 2):
            lines.update(_readings([1, 2, 3, 4]), next(clock), True, everyone)  # (back where they were)
    # a holder is read though its schedstat does not show it ran yet (it lags a running thread by
    # up to a scheduler tick): else, read as moved at the next tick, when it held the GIL no more,
    # it would keep a line it left
    reader.asked.clear()
    lines.update(_readings([1, 2, 3, 4], still={2}), next(clock), True, {0x2000})
    assert reader.asked == [0x2000]
    # the same where the holders are not known: a thread that held the GIL and whose schedstat shows
    # it only at the next tick is read then, though that tick knows its holders and it is not one
    reader.asked.clear()
    lines.update(_readings([1, 2, 3, 4], still={1, 3, 4}), next(clock), True, None)
    assert reader.asked == [0x2000]
    reader.asked.clear()
    lines.update(_readings([1, 2, 3, 4], still={1, 2}), next(clock), True, {0x2000})
    assert sorted(reader.asked) == [0x2000, 0x3000, 0x4000]
    after = SCHEDSTAT_LAG_NS // 5_000_000 + 1
    for _ in range(after):
        lines.update(_readings([1, 2, 3, 4]), next(clock), True, {0x2000})
    reader.asked.clear()
    lines.update(_readings([1, 2, 3, 4]), next(clock), True, {0x2000})  # (past the lag: the holders alone)
    assert reader.asked == [0x2000]
    # a tick whose lines are not read forgets the lines of the holders only
    lines.update(_readings([1, 2, 3, 4]), next(clock), False, {0x3000})
    assert set(lines.lines) == {1, 2, 4}
    # thread states of two interpreters: a thread of the other may run under another GIL
    reader.states = states + [(0x5000, 0x20, 5)]
    reader.line_of[0x5000] = ("w.py", 5, "f")
    lines.walk({1, 2, 3, 4, 5}, 0)
    lines.update(_readings([1, 2, 3, 4, 5]), next(clock), True)
    reader.asked.clear()
    lines.update(_readings([1, 2, 3, 4]), next(clock), True, {0x2000})
    assert sorted(reader.asked) == [0x1000, 0x2000, 0x3000, 0x4000]


def test_the_holders_over_a_tick_are_known_only_where_the_samples_saw_every_hand_off():
    from types import SimpleNamespace

    from gilviz.capture.processes import GilSamples
    from gilviz.sampler import _holders_over_tick

    acc = GilSamples(0)
    proc = SimpleNamespace(gil=SimpleNamespace(located=True), sites={0x10: acc})

    def tick(*samples, switch):  # the last holder read at each sample; the switch count at the latest
        for holder in samples:
            acc.samples += 1
            acc.add_turns((holder, holder, 0, (holder,)))  # (as the Python loop tells a sample)
        acc.switch_number = switch
        out = _holders_over_tick(proc)
        acc.clear()
        return out

    assert tick(1, 1, switch=5) is None  # no tick before to count from
    assert tick(1, 1, 1, switch=5) == {1}
    assert tick(1, 2, 2, switch=6) == {1, 2}
    assert tick(2, 3, switch=8) is None  # two hand-offs, one seen: who held it between is not known
    assert tick(3, 3, switch=8) == {3}
    assert tick(switch=8) is None  # no sample this tick
    assert tick(3, switch=8) is None  # (nor in the one before)
    assert tick(3, switch=8) == {3}
    acc.add_turns((3, 4, 1, (3, 4)))  # from the C loop: 3, ..., 4 read, one change between
    acc.samples, acc.switch_number = 3, 9
    assert _holders_over_tick(proc) == {3, 4}
    acc.clear()
    acc.add_turns((5, 5, 0, None))  # more holders than it keeps
    acc.samples, acc.switch_number = 2, 10
    assert _holders_over_tick(proc) is None
    proc.sites[0x20] = GilSamples(1)  # two GILs: not known
    assert _holders_over_tick(proc) is None


SPINNING_LINES = """
import threading
def a(n):
    return n + 1
def b(n):
    return n * 2
def spin():
    n = 0
    while True:
        n = a(n) % 1000
        n = b(n) % 1000
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
threading.Event().wait(30)
"""


@pytest.mark.parametrize("version", ["3.9", "3.12", "3.15"])
def test_a_line_not_read_again_is_the_line_a_read_finds_unless_the_gil_changed_hands_since(tmp_path, monkeypatch,
                                                                                           version):
    """Where only the GIL's holders have their lines read again, every other thread's line kept is
    the one a read at the same moment finds, but for a thread that took the GIL after the tick's
    last sample (then the next tick sees the hand-off and reads them all)."""
    from conftest import python_or_skip
    from gilviz import sampler
    from gilviz.capture import lines as capture_lines
    from gilviz.probes.frames import UNREADABLE

    python = python_or_skip(version)
    counts = {"ticks with holders": 0, "kept": 0, "kept, same as read": 0, "kept, GIL taken since": 0}
    procs = []
    holders_over_tick = sampler._holders_over_tick
    update = capture_lines.FrameLines.update

    def noted(proc):
        procs[:] = [proc]
        return holders_over_tick(proc)

    def checked(self, readings, now_ns, read, holders=None):
        out = update(self, readings, now_ns, read, holders)
        movers = self._movers(holders)
        if out is None or movers is None:
            return out
        counts["ticks with holders"] += 1
        kept = [r.tid for r in readings if r.moved and r.tid not in movers and r.tid in self.tstates]
        for tid, where in zip(kept, self.reader.lines([self.tstates[tid] for tid in kept])):
            if where is UNREADABLE or where is None:
                continue
            counts["kept"] += 1
            if out.get(tid) == self.table.ids.get(where):
                counts["kept, same as read"] += 1
                continue
            gil = procs[0].gil
            (acc,) = procs[0].sites.values()
            if gil.sample_site(gil.sites[0])[3] != acc.switch_number:
                counts["kept, GIL taken since"] += 1
        return out

    monkeypatch.setattr(sampler, "_holders_over_tick", noted)
    monkeypatch.setattr(capture_lines.FrameLines, "update", checked)
    summary, _ = record_code(tmp_path, python, SPINNING_LINES, duration=2.0)
    assert summary["stacks"]["by"] == "gilviz"
    assert counts["ticks with holders"] > 0 and counts["kept"] > 0, counts
    assert counts["kept, same as read"] + counts["kept, GIL taken since"] == counts["kept"], counts


def _assert_hot_and_waiting_lines(summary, named=True):
    """named: the threads' names, which py-spy gives on 3.9 to 3.13 (else they are the OS's)."""
    lines = summary["lines"]
    assert lines, summary["stacks"]
    assert set(lines[0]) >= {"file", "line", "function", "held_s", "waited_s", "native_s", "blocked_s"}
    held = max(lines, key=lambda r: r["held_s"])
    waited = max(lines, key=lambda r: r["waited_s"])
    assert (held["function"].rpartition(".")[2], held["line"]) == ("spin", HOT), lines[:4]
    assert held["threads"] == ["spinner"] or not named
    assert (waited["function"].rpartition(".")[2], waited["line"]) == ("read", WAIT), lines[:4]
    assert waited["threads"] == ["reader"] or not named
    # the spinner holds the GIL most of the run; the reader's line waits more than it holds
    assert held["held_s"] > 1.0 and waited["waited_s"] > waited["held_s"], (held, waited)


def _row(tid, dt, line, *, held=0, waiting=0, native=0, sleep=0):
    running = dt - waiting - native - sleep
    return ThreadTick(tid, 0, running, native, waiting, 0, sleep, 0, 0, 0, held, running + native, line)


def test_time_per_line_is_scaled_from_the_stamped_ticks():
    sums = LineSums()
    sums.add_line(Line(0, 1, "/w/a.py", 3, "spin"))
    sums.add_line(Line(0, 2, "/w/a.py", 9, "read"))
    # thread 1: 100 ticks of 10 ms holding the GIL, one in 10 stamped (line 1)
    # thread 2: 100 ticks, half waiting half asleep, one in 4 stamped (line 2)
    for i in range(100):
        sums.add_tick(10_000, [_row(1, 10_000, 1 if i % 10 == 0 else 0, held=10_000),
                               _row(2, 10_000, 2 if i % 4 == 0 else 0, waiting=5_000, sleep=5_000)])
    spin, read = sums.figures()
    assert (spin.line, spin.held_s, spin.readings) == (3, pytest.approx(1.0), 10)
    assert (read.line, read.waited_s, read.blocked_s, read.held_s) == (9, pytest.approx(0.5), pytest.approx(0.5), 0)
    assert sums.readings_per_s() == pytest.approx((10 + 25) / 2.0)


def test_a_reading_is_stamped_on_the_threads_next_tick_once_and_never_when_stale():
    from gilviz.capture.lines import LineTable, parse_pyspy_line

    assert parse_pyspy_line("spin (convoy.py:13)") == ("convoy.py", 13, "spin")
    assert parse_pyspy_line("Foo.<lambda> (my (odd) dir/x.py:9)") == ("my (odd) dir/x.py", 9, "Foo.<lambda>")
    assert parse_pyspy_line("no line here") is None and parse_pyspy_line("f (x.py:?)") is None
    now = [0]
    table = LineTable(lambda: now[0], 0)
    table.seen_pyspy(1_000, [(7, "spin (convoy.py:13)"), (8, "read (convoy.py:16)"), (None, "x (y.py:1)")])
    lines = table.drain()
    assert [(r.id, r.file, r.line, r.function) for r in lines] == [(1, "convoy.py", 13, "spin"), (2, "convoy.py", 16, "read")]
    rows = [_row(7, 5_000, 0), _row(8, 5_000, 0), _row(9, 5_000, 0)]
    stamped = table.stamp(rows, t_us=5_000, tick_us=5_000)
    assert [r.line for r in stamped] == [1, 2, 0]
    assert [r.line for r in table.stamp(rows, t_us=10_000, tick_us=5_000)] == [0, 0, 0]  # once only
    table.seen(1_000, [(7, 1)])
    assert table.stamp(rows, t_us=100_000, tick_us=5_000)[0].line == 0  # 99 ms old: not this tick's


def test_a_stack_helper_that_ends_before_its_process_hands_the_lines_to_pyspy_and_says_so():
    import os
    import signal
    import subprocess
    import time

    from conftest import python_or_skip
    from gilviz.capture.lines import LineTable
    from gilviz.stream import Notice

    python = python_or_skip("3.14")
    target = subprocess.Popen([python, "-c", "import time\nwhile True: time.sleep(0.01)"])
    table = LineTable(lambda: 0, time.monotonic_ns())
    try:
        time.sleep(0.3)
        table.start_helper(target.pid, 5_000_000)
        helper = table.helpers[target.pid]
        os.kill(helper.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while target.pid in table.helpers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert target.pid not in table.helpers  # so the sampler's py-spy reads its lines again
        notices = [r for r in table.drain() if isinstance(r, Notice)]
        assert len(notices) == 1 and f"pid {target.pid}" in notices[0].text and "py-spy" in notices[0].text, notices
    finally:
        table.stop()
        target.kill()
        target.wait()


LATE_THREAD = """
import threading, time
def sleeper():
    time.sleep(100)
def nested():
    sleeper()
threading.Thread(target=nested, name="early", daemon=True).start()
time.sleep(1.0)
threading.Thread(target=sleeper, name="late", daemon=True).start()
time.sleep(100)
"""


@pytest.mark.parametrize("version, by", [("3.10", "gilviz"), ("3.15", "gilviz"), ("3.15", "_remote_debugging")])
def test_whole_stacks_are_read_with_the_lines_and_pyspy_only_names_new_threads(tmp_path, monkeypatch, version, by):
    """Whole stacks are read at the stack rate where the lines are (from the target's memory, or
    by the helper where gilviz does not know a 3.14+ build's frames); py-spy (a dump: a new
    process, milliseconds of CPU) is left to name threads: when one is new, and every 10 s for
    renames. The old pace (a dump a second) would dump again in the last seconds."""
    import time

    from conftest import python_or_skip
    from gilviz.capture import stacks
    from gilviz.probes import frames

    python = python_or_skip(version)
    if by == "_remote_debugging":
        monkeypatch.delitem(frames.LAYOUTS, (3, 15))
    dumps: list[float] = []
    dump = stacks.PySpy.dump

    def counted(self, pid, timeout=5.0):
        dumps.append(time.monotonic())
        return dump(self, pid, timeout)

    monkeypatch.setattr(stacks.PySpy, "dump", counted)
    start = time.monotonic()
    summary, rec = record_code(tmp_path, python, LATE_THREAD, duration=6.0)
    assert summary["stacks"]["by"] == by and not rec.notices, rec.notices
    names = {t.tid: t.name for t in rec.threads.values()}
    assert sorted(names.values()) == ["MainThread", "early", "late"], names
    early, late = (next(tid for tid, name in names.items() if name == which) for which in ("early", "late"))
    assert dumps and all(t - start < 4.5 for t in dumps), [round(t - start, 2) for t in dumps]
    ours = [s for s in rec.stacks if s.pid == rec.header.pid]
    # py-spy's first dump (at 0.2 s) may come before the stacks can be read otherwise (the reader
    # starts once the interpreter has thread states, at a refresh): it is kept; none after.
    first = next((i for i, s in enumerate(ours) if s.by == by), len(ours))
    assert ours[first:] and all(s.by == by for s in ours[first:]), [(s.t, s.by) for s in ours]
    assert all(s.by == "py-spy" for s in ours[:first]), [(s.t, s.by) for s in ours]
    sleep_line = LATE_THREAD.splitlines().index("    time.sleep(100)") + 1
    entries = {e.tid: e for s in ours[-2:] for e in s.threads}
    assert entries[early].frames[:2] == [f"sleeper (<string>:{sleep_line})", f"nested (<string>:{sleep_line + 2})"]
    assert entries[late].frames[0] == f"sleeper (<string>:{sleep_line})" and entries[late].name == "late"
    assert not entries[late].active and not entries[late].owns_gil  # asleep
    assert len(ours) - first > 3


def test_without_pyspy_the_stacks_and_lines_are_still_read(tmp_path, monkeypatch):
    from conftest import python_or_skip
    from gilviz.capture import stacks

    monkeypatch.setattr(stacks, "find_pyspy", lambda: None)  # as on a machine without py-spy
    summary, rec = record_code(tmp_path, python_or_skip("3.12"), CONVOY, duration=2.0)
    assert summary["stacks"]["by"] == "gilviz"
    _assert_hot_and_waiting_lines(summary, named=False)
    spinning = [e for s in rec.stacks for e in s.threads if e.frames and e.frames[0] == f"spin (<string>:{HOT})"]
    assert spinning and any(e.owns_gil and e.active for e in spinning), spinning[:3]


def test_whole_stacks_are_read_for_so_many_threads_at_once_and_the_others_in_turn():
    """A stack read is about 15 us a thread: with a thousand threads moving, the reads of one
    moment are capped, and the threads left out are read first the next time; a thread that
    has not moved since its last read keeps that stack, which is still its stack."""
    from gilviz.capture.lines import MAX_STACK_READS, FrameLines, LineTable

    class Reader:
        reads: list[int] = []

        def stack(self, tstate, limit):
            self.reads.append(tstate)
            return [("w.py", tstate, "f")]

    n = MAX_STACK_READS * 2 + 10
    lines = FrameLines(Reader(), LineTable(lambda: 0, 0))  # type: ignore[arg-type]
    lines.tstates = {tid: tid for tid in range(1, n + 1)}
    rows = [_row(tid, 5000, 0) for tid in range(1, n + 1)]
    seen: set[int] = set()
    for _ in range(3):
        Reader.reads.clear()
        entries = lines.stack_entries(rows, {}, 5000, 12)
        assert len(Reader.reads) <= MAX_STACK_READS and set(Reader.reads).isdisjoint(seen)
        seen.update(Reader.reads)
        assert {e.tid for e in entries} == seen  # every thread read so far, none not yet read
        assert all(e.frames == [f"f (w.py:{e.tid})"] for e in entries)
    assert seen == set(range(1, n + 1))
    lines.stirred.update({5, 6})  # two moved since
    Reader.reads.clear()
    assert len(lines.stack_entries(rows, {}, 5000, 12)) == n and sorted(Reader.reads) == [5, 6]


def test_a_stacks_files_are_shown_from_their_package_root_as_py_spy_shows_them():
    from gilviz.capture.lines import short_file

    assert short_file("/usr/lib/python3.12/threading.py") == "threading.py"
    assert short_file("/root/.pyenv/versions/3.11.7/lib/python3.11/concurrent/futures/thread.py") == \
        "concurrent/futures/thread.py"
    assert short_file("/venv/lib/python3.12/site-packages/numpy/linalg/linalg.py") == "numpy/linalg/linalg.py"
    assert short_file("/usr/lib/python3/dist-packages/yaml/reader.py") == "yaml/reader.py"
    assert short_file("/home/me/work/app.py") == "app.py"
    assert short_file("<string>") == "<string>"
