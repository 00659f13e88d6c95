"""Memory that does not grow with the length of a run: the report reads a recording in one pass
and keeps sums only (the live view's bound is in test_tui_model.py)."""

from __future__ import annotations

import tracemalloc

import pytest

from gilviz.collect import replay_file
from gilviz.recording import RecordingWriter
from gilviz.report import Report, summarize_file
from gilviz.stream import End, GilTick, Header, Process, Stack, StackEntry, Thread, ThreadTick, Tick, header_fields


def write_run(path, ticks: int, threads: int = 50) -> None:
    w = RecordingWriter(str(path))
    w.write(Header(command="synthetic", cpus=2, pid=1, python_version="3.12.0", tick_hz=200, fields=header_fields()))
    w.write(Process(pid=1, python="3.12.0", gil="located", switch_interval_us=5000))
    for k in range(threads):
        w.write(Thread(0, 100 + k, 1, f"t{k}"))
    dt = 5000
    for i in range(ticks):
        running = 100 + i % threads
        rows = [ThreadTick(100 + k, k % 2, dt if 100 + k == running else 0, 0, 0 if 100 + k == running else dt,
                           0, 0, 0, 0, 0, dt if 100 + k == running else 0, dt if 100 + k == running else 0)
                for k in range(threads)]
        w.write(Tick((i + 1) * dt, dt, rows, [GilTick(1, 10, 10, 10, 1, 0, running)], [dt, dt] if i % 10 == 9 else []))
        if i % 200 == 0:
            w.write(Stack((i + 1) * dt, 1, [StackEntry(running, f"t{running - 100}", "spin (x.py:3)", True)]))
    w.write(End(ticks * dt, "duration"))
    w.close()


def peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_report_memory_does_not_grow_with_the_recording(tmp_path):
    short, long = tmp_path / "short.gilviz", tmp_path / "long.gilviz"
    write_run(short, 1_000)
    write_run(long, 8_000)
    small = peak_while(lambda: replay_file(str(short), Report()))
    large = peak_while(lambda: replay_file(str(long), Report()))
    assert large < 1.2 * small + 200_000, (small, large)  # eight times the run, the same memory
    summary = summarize_file(str(long))
    assert summary["duration_s"] == 40.0 and len(summary["threads"]) == 50
    assert all(abs(th["running"] - 1 / 50) < 0.001 for th in summary["threads"])


# ------------------------------------------------------------------ one budget for the whole sampler
def test_the_budget_slows_gil_sampling_then_stacks_then_idle_reads_then_the_ticks_and_comes_back():
    from gilviz.capture.budget import ADAPT_EVERY_NS, GIL_HZ_FLOOR, STACKS_HZ_FLOOR, Budget
    from gilviz.probes.threads import SPARSENESS

    cpu = [0.0]
    budget = Budget(5_000_000, 10_000, 0.15, lambda: cpu[0], 0, stacks_hz=5.0)
    now, stats = 0, []

    def interval(share: float):
        nonlocal now
        now += ADAPT_EVERY_NS
        cpu[0] += share * ADAPT_EVERY_NS / 1e9
        stats.append(budget.adapt(now, 0, now // 1000, 0))

    seen = []
    for _ in range(12):  # twice the budget: GIL sampling falls to its floor first, then py-spy's rate...
        interval(0.30)
        seen.append((budget.period, round(budget.stacks_hz, 3), budget.tick_ns, budget.sparseness))
    assert budget.period == int(1e9 / GIL_HZ_FLOOR)
    floor_at = next(i for i, s in enumerate(seen) if s[1] == STACKS_HZ_FLOOR)
    assert all(s[2] == 5_000_000 and s[3] == 1 for s in seen[: floor_at + 1]), seen  # the rest untouched until then
    assert seen[floor_at - 1][0] == int(1e9 / GIL_HZ_FLOOR) and seen[floor_at - 1][1] > STACKS_HZ_FLOOR, seen
    sparse_at = next(i for i, s in enumerate(seen) if s[3] > 1)  # ...then idle threads are read more sparsely...
    assert sparse_at > floor_at and seen[sparse_at][2] == 5_000_000, seen
    assert budget.sparseness == SPARSENESS[-1] and stats[-1].idle_read_every > 8
    assert budget.tick_ns > 5_000_000  # ...then the ticks lengthen, and py-spy's rate with them
    assert budget.stacks_hz < STACKS_HZ_FLOOR and stats[-1].tick_hz_target < 200
    slowest = budget.tick_ns
    back = []
    for _ in range(60):  # well under it: the ticks come back to the rate asked, then idle reads, py-spy, GIL sampling
        interval(0.05)
        back.append((budget.tick_ns, budget.sparseness, budget.stacks_hz))
    assert budget.tick_ns == 5_000_000 < slowest and budget.stacks_hz == 5.0 and budget.sparseness == 1
    dense_at = next(i for i, b in enumerate(back) if b[1] == 1)
    assert all(b[0] == 5_000_000 for b in back[dense_at:]) and back[dense_at - 1][0] == 5_000_000, back
    assert back[dense_at - 1][2] < 5.0 and stats[-1].idle_read_every is None
    assert budget.period < int(1e9 / GIL_HZ_FLOOR)


def test_far_over_the_budget_every_rate_slows_at_once():
    """A thousand threads starting cost two or three times the budget: one lever a half second,
    in turn, kept the sampler over it for five seconds."""
    from gilviz.capture.budget import ADAPT_EVERY_NS, FAR, Budget
    from gilviz.probes.threads import SPARSENESS

    cpu = [0.0]
    budget = Budget(5_000_000, 10_000, 0.15, lambda: cpu[0], 0, stacks_hz=5.0)
    def levers():
        return budget.period, budget.stacks_share, budget.sparseness, budget.tick_ns

    before = levers()
    cpu[0] += 1.01 * FAR * 0.15 * ADAPT_EVERY_NS / 1e9
    budget.adapt(ADAPT_EVERY_NS, 0, 0, 0)
    after = levers()
    assert after[0] > before[0] and after[1] < before[1] and after[3] > before[3], (before, after)
    assert after[2] == SPARSENESS[1], (before, after)
    # just under FAR times over: one lever moves, the first that can (GIL sampling at its floor)
    budget.period = budget.max_period
    after = levers()
    cpu[0] += 0.99 * FAR * 0.15 * ADAPT_EVERY_NS / 1e9
    budget.adapt(2 * ADAPT_EVERY_NS, 0, 0, 0)
    assert [a != b for a, b in zip(after, levers())] == [False, True, False, False], (after, levers())


def test_threads_asleep_are_read_less_often_and_a_new_thread_is_seen_at_the_next_read():
    from conftest import ready_child
    from gilviz.probes.threads import IDLE_STEPS, ThreadProbe

    code = ("import threading, time, sys\n"
            "for _ in range(20): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
            "sys.stdin.readline()\n"
            "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "sys.stdout.write('more\\n'); sys.stdout.flush(); time.sleep(60)\n")
    with ready_child(code) as child:
        probe = ThreadProbe(child.pid)
        readings, _ = probe.read()
        assert len(readings) == 21
        from conftest import read_syscalls

        counting = -read_syscalls()
        counting += read_syscalls()  # the reads the counting itself makes
        # asleep all along: each thread read about once in 8 reads, once in 16 over budget, the first at
        # every read (it says a stop); the reads counted are the kernel's, in C or in Python alike (the
        # look at the thread count is no read)
        for sparseness, every in ((1, 8), (2, 16)):
            probe.sparseness = sparseness
            for _ in range(IDLE_STEPS[0][0] + every):
                probe.read()
            before = read_syscalls()
            for _ in range(every):
                readings, _ = probe.read()
            reads = read_syscalls() - before - counting
            assert len(readings) == 21 and every <= reads <= 21 + every, (sparseness, reads)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "more\n"
        readings, _ = probe.read()
        assert len(readings) == 22  # seen at the very next read
        probe.close()


def test_children_are_found_among_the_ids_given_out_since_the_last_look(monkeypatch):
    """Walking every process of the machine is done every few seconds; in between, only the ids the
    kernel gave out since the last look are looked at (none while it gives out none), a child born
    meanwhile is found among them, and an id given out before its process was listed is looked at
    once more."""
    import subprocess
    import sys

    import psutil

    from gilviz.capture import processes
    from gilviz.capture.processes import NEW_IDS_MAX, ProcessTable, last_pid

    before = last_pid()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert before is not None and last_pid() != before  # the kernel's own counter moved

    code = ("import subprocess, sys, time\n"
            "for _ in range(2):\n"
            "    sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
            "    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "    sys.stdout.write('%d\\n' % p.pid); sys.stdout.flush()\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    walks, looked_at = [], []
    real_children, real_parent = psutil.Process.children, processes.parent_if_process

    def walking(self, *args, **kwargs):
        walks.append(self.pid)
        return real_children(self, *args, **kwargs)

    def looking(pid):
        looked_at.append(pid)
        return None if pid in hidden else real_parent(pid)

    monkeypatch.setattr(psutil.Process, "children", walking)
    monkeypatch.setattr(processes, "parent_if_process", looking)
    hidden: set[int] = set()
    table = ProcessTable(child.pid, lambda rec: None, lambda: 0)
    try:
        table.add(child.pid, 0)
        assert child.stdout.readline() == "ready\n"
        table.find_children()
        table.find_children()
        assert len(walks) == 1  # the first look walks them all; then ids given out since, if any
        table.find_children()  # (the ids that were no process at the last look: once more)
        start = last_pid()
        looked_at.clear()
        for _ in range(3):
            table.find_children()
        assert len(walks) == 1 and (looked_at == [] or last_pid() != start)  # nothing, while no id is given out
        child.stdin.write("\n")
        child.stdin.flush()
        first = int(child.stdout.readline())
        table.find_children()
        many = last_pid() - start > NEW_IDS_MAX  # (a machine busy giving out ids: then they are all walked)
        assert first in table.by_pid and (first in looked_at or many)
        assert len(walks) == 1 or many
        # a child whose id was given out before it was listed: found at the next look
        assert child.stdout.readline() == "ready\n"
        child.stdin.write("\n")
        child.stdin.flush()
        second = int(child.stdout.readline())
        hidden.add(second)
        table.find_children()
        assert second not in table.by_pid and second in looked_at
        hidden.clear()
        table.find_children()
        assert second in table.by_pid
        monkeypatch.setattr(processes, "CHILDREN_LOOK_EVERY_S", 0.0)
        walked = len(walks)
        table.find_children()
        assert len(walks) == walked + 1  # one every few seconds, whatever the counter says
    finally:
        table.close()
        for proc in real_children(psutil.Process(child.pid), recursive=True):
            proc.kill()
        child.kill()
        child.wait()


# ------------------------------------------------------------------ the sampling thread on one core
def _two_cores_or_skip() -> list[int]:
    import os

    import pytest

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("one core allowed: the sampler has no core to choose")
    return cores[:2]


def _in_a_thread(fn):
    """fn's result, run in a thread of its own: what it pins is that thread's alone."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()  # (its exception re-raised here)


def test_the_sampling_thread_keeps_to_the_least_busy_core_moves_only_for_a_much_idler_one_and_starts_helpers_free():
    import os
    import threading

    from gilviz.capture.placement import CHOOSE_EVERY_US, FIRST_CHOICE_US, OneCore

    a, b = _two_cores_or_skip()
    allowed = os.sched_getaffinity(0)

    def load(busy_a: float, busy_b: float, span: int) -> list[int]:
        row = [0] * (max(a, b) + 1)
        row[a], row[b] = int(busy_a * span), int(busy_b * span)
        return row

    def run() -> list:
        seen = []
        core = OneCore()
        half = FIRST_CHOICE_US // 2
        core.consider(load(0.9, 0.1, half), half)  # too little seen yet to choose
        seen.append((core.core, os.sched_getaffinity(0)))
        core.consider(load(0.9, 0.1, half), half)
        seen.append((core.core, os.sched_getaffinity(0)))  # b, the idler
        core.consider(load(0.6, 0.8, CHOOSE_EVERY_US), CHOOSE_EVERY_US)  # a idler, but by less than enough
        seen.append((core.core, os.sched_getaffinity(0)))
        core.consider(load(0.1, 0.9, CHOOSE_EVERY_US // 2), CHOOSE_EVERY_US // 2)  # (not yet time to choose)
        seen.append((core.core, os.sched_getaffinity(0)))
        core.consider(load(0.1, 0.9, CHOOSE_EVERY_US // 2), CHOOSE_EVERY_US // 2)
        seen.append((core.core, os.sched_getaffinity(0)))  # a, much idler
        helper: list = []
        with core.unpinned():
            seen.append((core.core, os.sched_getaffinity(0)))
            t = threading.Thread(target=lambda: helper.append(os.sched_getaffinity(0)))
            t.start()
            t.join()
        seen.append((core.core, os.sched_getaffinity(0)))
        core.release()
        seen.append((core.core, os.sched_getaffinity(0)))
        return seen + helper

    seen = _in_a_thread(run)
    assert seen == [(None, allowed), (b, {b}), (b, {b}), (b, {b}), (a, {a}), (a, allowed), (a, {a}),
                    (None, allowed), allowed]
    assert os.sched_getaffinity(0) == allowed  # the test's own thread never moved


def test_what_others_leave_of_the_sampling_threads_core_is_its_load_less_the_threads_own_time():
    """Its own CPU is not others' (the sampler itself keeps its core 6 to 15 % busy); unpinned, the
    least busy core is the one counted (where the kernel wakes a thread when it can)."""
    import time

    from gilviz.capture.placement import FIRST_CHOICE_US, OneCore

    a, b = _two_cores_or_skip()

    def burn(us: int) -> int:
        start = time.thread_time_ns()
        while time.thread_time_ns() - start < us * 1000:
            pass
        return (time.thread_time_ns() - start) // 1000

    def load(busy_a: int, busy_b: int) -> list[int]:
        row = [0] * (max(a, b) + 1)
        row[a], row[b] = busy_a, busy_b
        return row

    def run() -> list:
        core = OneCore()
        shares = [core.others_share()]  # nothing read yet
        own = burn(20_000)
        core.consider(load(900_000, own + 50_000), FIRST_CHOICE_US)  # unpinned so far: b, the least busy, counted
        shares.append(core.others_share())
        assert core.core == b
        own = burn(20_000)
        core.consider(load(own + 300_000, own + 150_000), 1_000_000)  # its core only, now b
        # its core read as less busy than the thread alone kept it (/proc/stat counts in 10 ms steps):
        # it evens out with the readings before, over the interval
        own = burn(40_000)
        core.consider(load(200_000, own - 30_000), 1_000_000)
        shares.append(core.others_share())
        shares.append(core.others_share())  # (each interval once)
        burn(20_000)
        core.consider(load(200_000, 0), 1_000_000)  # an interval that read less than the thread's own: none
        shares.append(core.others_share())
        core.release()
        return shares

    shares = _in_a_thread(run)
    assert shares[0] is None and shares[3] is None and shares[4] == 0.0
    assert abs(shares[1] - 50_000 / FIRST_CHOICE_US) < 0.01, shares
    assert abs(shares[2] - 120_000 / 2_000_000) < 0.005, shares


def test_past_its_start_gil_sampling_goes_faster_only_while_its_core_has_room():
    """None asked, GIL sampling stays at its start where the sampler's core was busy with others (its
    wake-ups would take that core from the workload) however far under the budget it is, goes up
    where the core has room, and falls back to its start at once when the room is gone."""
    from gilviz.capture.budget import ADAPT_EVERY_NS, GIL_HZ_START, Budget

    cpu, room = [0.0], [False]
    budget = Budget(5_000_000, 10_000, 0.15, lambda: cpu[0], 0, others=lambda: 0.05 if room[0] else 0.3)
    start = int(1e9 / GIL_HZ_START)
    periods = []
    for k in range(30):
        room[0] = 10 <= k < 20
        # well under the budget, then near it (the rates kept where they are, but for the room's)
        cpu[0] += (0.01 if k < 20 else 0.13) * ADAPT_EVERY_NS / 1e9
        stats = budget.adapt((k + 1) * ADAPT_EVERY_NS, 0, 0, 0)
        assert stats.core_others == (0.05 if room[0] else 0.3)  # (shown: why the rate is where it is)
        periods.append(budget.period)
    assert periods[:10] == [start] * 10
    assert periods[10] < start and periods[19] == int(1e9 / 10_000), periods  # up to the most asked
    assert periods[20:] == [start] * 10
    # the start's rate is one got: where late wake-ups skip samples, more are asked, twice at most
    got = Budget(5_000_000, 10_000, 0.15, lambda: cpu[0], 0, others=lambda: 0.3)
    asked, samples, ticks = [], 0, 0
    kept = [0.8] * 10 + [0.4] * 10 + [1.0] * 10 + [0.3] * 5  # (the share of the samples asked got)
    for k, share in enumerate(kept):
        cpu[0] += 0.05 * ADAPT_EVERY_NS / 1e9
        samples += int(share * ADAPT_EVERY_NS / got.period)
        ticks += 100 if k < 30 else 30  # ...and at the end, a sampler kept off its core: its ticks late too
        got.adapt((k + 1) * ADAPT_EVERY_NS, samples, 0, ticks)
        asked.append(round(1e9 / got.period))
    assert abs(asked[9] - GIL_HZ_START / 0.8) < 30 and asked[19] == 2 * GIL_HZ_START, asked
    assert abs(asked[29] - GIL_HZ_START) < 20 and asked[34] == asked[29], asked  # (asking more would not help)
    # slow ticks read the cores less often than every interval: one with no reading keeps the last
    readings = iter([0.05, None] * 10)
    slow = Budget(5_000_000, 10_000, 0.15, lambda: cpu[0], 0, others=lambda: next(readings))
    for k in range(20):
        cpu[0] += 0.01 * ADAPT_EVERY_NS / 1e9
        slow.adapt((k + 1) * ADAPT_EVERY_NS, 0, 0, 0)
    assert slow.period == int(1e9 / 10_000)
    over = Budget(5_000_000, 10_000, 0.15, lambda: cpu[0], 0, others=lambda: None)  # (no reading: no room)
    cpu[0] += 0.6 * ADAPT_EVERY_NS / 1e9  # over the budget: it slows below its start all the same
    over.adapt(ADAPT_EVERY_NS, 0, 0, 0)
    assert over.period > start


def test_where_the_workload_keeps_every_core_busy_gil_sampling_stays_at_its_start(tmp_path):
    """A real run: the workload's threads spin for the GIL, and shells spin on every core beside them.
    Each half second's figures say how busy others kept the sampler's core, and where that was more
    than the room, the GIL rate got is no faster than the start's (asked none)."""
    import os
    import statistics

    import pytest
    from conftest import python_or_skip, record_code

    from gilviz.capture.budget import GIL_HZ_START, ROOM_SHARE, START_ASKED_MOST

    cores = _two_cores_or_skip() and os.sched_getaffinity(0)
    if len(cores) > 4:
        pytest.skip("spinning on every core of a machine this large is not a small test")
    python = python_or_skip("3.12")
    code = ("import subprocess, threading, time\n"
            # (at the lowest priority: the cores busy, the sampler not kept off them)
            f"shells = [subprocess.Popen(['nice', '-n', '19', 'sh', '-c', 'while :; do :; done']) for _ in range({len(cores)})]\n"
            "def spin():\n"
            "    end = time.time() + 4\n"
            "    while time.time() < end: pass\n"
            "threads = [threading.Thread(target=spin) for _ in range(2)]\n"
            "for t in threads: t.start()\n"
            "for t in threads: t.join()\n"
            "for sh in shells: sh.kill(); sh.wait()\n")
    _, rec = record_code(tmp_path, python, code)
    stats = [st for st in rec.stats if st.core_others is not None]
    assert len(stats) >= 2, rec.stats
    busy = [st for st in stats if st.core_others > ROOM_SHARE]
    assert len(busy) >= len(stats) // 2, [st.core_others for st in stats]  # (the shells saw to that)
    # (more asked where late wake-ups skip samples, the start's rate got, give or take a step)
    seen = [(st.core_others, st.gil_hz_target, st.gil_hz) for st in stats]
    assert all(st.gil_hz_target <= START_ASKED_MOST * GIL_HZ_START for st in busy), seen
    assert statistics.median(st.gil_hz for st in busy) <= 1.1 * GIL_HZ_START, seen


def test_a_run_samples_from_one_core_and_gives_its_thread_back_its_cores(tmp_path):
    """The thread that ran a session starts the next workload (gilviz compare, one run after the
    other): that workload may use every core."""
    import os
    import threading
    import time

    from conftest import python_or_skip, record_code

    _two_cores_or_skip()
    python = python_or_skip("3.12")
    allowed = os.sched_getaffinity(0)
    code = ("import os, threading, time\n"
            "def spin():\n"
            "    end = time.time() + 1.5\n"
            "    while time.time() < end: pass\n"
            "ts = [threading.Thread(target=spin) for _ in range(2)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n"
            "print(sorted(os.sched_getaffinity(0)))\n")
    masks: list = []
    ids: list = []
    runs: list = []

    def twice() -> None:
        ids.append(threading.get_native_id())
        for k in range(2):
            (tmp_path / str(k)).mkdir()
            runs.append(record_code(tmp_path / str(k), python, code))

    worker = threading.Thread(target=twice)
    worker.start()
    while worker.is_alive():
        if ids:
            try:
                masks.append(os.sched_getaffinity(ids[0]))
            except OSError:
                pass
        time.sleep(0.05)
    worker.join()
    assert len(runs) == 2
    singles = [m for m in masks if len(m) == 1]
    assert singles and all(m < allowed for m in singles), masks  # the sampling thread kept to one core
    for summary, rec in runs:
        printed = "".join(o.data for o in rec.output if o.stream == "out")
        assert printed.strip() == str(sorted(allowed)), printed  # each workload free to use every core


@pytest.mark.parametrize("phase", [0, 1])
def test_a_stopped_process_is_read_as_such_and_its_threads_stat_once_while_it_stays_stopped(phase):
    """A stopped thread's schedstat does not move: its first thread's stat says the process is
    stopped, each thread's stat is read once then, and not again while it does not move. (The
    probe reads a moving thread's stat one read in two when its time on a CPU is short: the
    stop is seen at an odd read and at an even one.)"""
    import signal
    import time

    from conftest import read_syscalls, ready_child
    from gilviz.probes.threads import STOPPED_SYSCALL, SYSCALL_KINDS, ThreadProbe

    [FUTEX] = [nr for nr, kind in SYSCALL_KINDS.items() if kind == "futex"]

    # (a timed wait a stop interrupts goes on in restart_syscall: it is read as the wait it was)
    code = ("import threading, time, sys\n"
            "for _ in range(10): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "for _ in range(10): threading.Thread(target=threading.Event().wait, args=(60,), daemon=True).start()\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)\n")
    with ready_child(code) as child:
        probe = ThreadProbe(child.pid)
        for _ in range(100):  # (until every thread is asleep)
            readings, _ = probe.read()
            if not any(r.syscall.startswith("running") for r in readings):
                break
            time.sleep(0.01)
        while (probe._reads + 1) % 2 != phase:  # (the read that sees the stop: one of each phase)
            readings, _ = probe.read()
        assert len(readings) == 21 and not any(r.syscall == STOPPED_SYSCALL for r in readings)
        asleep_in = {r.tid: r.syscall.split()[0] for r in readings}
        child.send_signal(signal.SIGSTOP)
        for _ in range(100):  # (until every thread has stopped)
            time.sleep(0.01)
            readings, _ = probe.read()
            if all(r.syscall == STOPPED_SYSCALL for r in readings):
                break
        assert all(r.syscall == STOPPED_SYSCALL and r.state == "T" and r.moved for r in readings), readings
        counting = -read_syscalls()
        counting += read_syscalls()
        for _ in range(2):
            before = read_syscalls()
            readings, _ = probe.read()
            reads = read_syscalls() - before - counting
            assert all(r.syscall == STOPPED_SYSCALL for r in readings)
            assert reads <= 21 + 1, reads  # their schedstat and the first thread's stat, no other stat
        child.send_signal(signal.SIGCONT)
        for _ in range(100):
            time.sleep(0.01)
            readings, _ = probe.read()
            if not any(r.syscall == STOPPED_SYSCALL for r in readings):
                break
        assert not probe.stopped and {r.tid: r.syscall.split()[0] for r in readings} == asleep_in
        assert sorted(asleep_in.values()).count(str(FUTEX)) >= 10, asleep_in
        probe.close()
