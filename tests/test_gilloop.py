"""The C loop that samples GILs between ticks (gilviz/_gilloop.c), against memory laid out here
and against the Python loop on a real child interpreter; its reading of every thread at a tick,
against the Python reading of the same threads. Skipped where there is no C compiler."""

import ctypes
import os
import shutil
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import python_or_skip, read_syscalls, ready_child, record_code
from test_sampling import CPU_THREADS
from gilviz import sampler
from gilviz.native import COMPILED_VERSION
from gilviz.probes import threads
from gilviz.probes.gil import GLIBC_2_41, GLIBC_BEFORE_2_41, GilLayout

try:
    from gilviz import _gilloop
except ImportError:
    if shutil.which("cc") or shutil.which("gcc"):  # it could have been built: the sources run here without it
        raise ImportError("gilviz/_gilloop.c is not built beside the sources tested: pip install -e '.[test]'")
    pytest.skip("no C compiler: the C loop is not built and gilviz samples in Python", allow_module_level=True)
if getattr(_gilloop, "VERSION", None) != COMPILED_VERSION:  # (gilviz would not use it: native.py)
    raise ImportError("gilviz/_gilloop is a build of other sources than these: pip install -e '.[test]'")


def gil_bytes(layout: GilLayout, holder: int, locked: int, switch: int, waiters: int) -> bytes:
    out = bytearray(layout.size)
    struct.pack_into("<QQI4xQ", out, layout.shift, 5000, holder, locked, switch)
    struct.pack_into("<I", out, layout.cond + layout.condvar.wrefs, waiters << 3)
    return bytes(out)


@pytest.mark.parametrize("layout", [GilLayout(GLIBC_BEFORE_2_41), GilLayout(GLIBC_2_41), GilLayout(GLIBC_2_41, 8)])
def test_it_reads_each_field_where_the_layout_puts_it(layout):
    buf = ctypes.create_string_buffer(gil_bytes(layout, holder=0xDEAD, locked=1, switch=77, waiters=2), layout.size)
    site = (os.open("/proc/self/mem", os.O_RDONLY), ctypes.addressof(buf), layout.shift, layout.condvar.wrefs)
    try:
        start = time.monotonic_ns()
        next_ns, wake_ups, ((samples, held, contended, switch, holders, error, last),), _ = _gilloop.sample(
            [site], 1_000_000, start, start + 20_000_000)
        assert 10 <= wake_ups <= 21 and samples == wake_ups and next_ns >= start + 20_000_000
        assert (held, contended, switch, holders, error, last) == (samples, samples, 77, ((0xDEAD, samples),), 0,
                                                                   (0xDEAD, 0xDEAD, 0, (0xDEAD,)))
        ctypes.memmove(buf, gil_bytes(layout, holder=0xBEEF, locked=0, switch=78, waiters=0), layout.size)
        start = time.monotonic_ns()
        _, _, ((samples, held, contended, switch, holders, error, last),), _ = _gilloop.sample(
            [site], 1_000_000, start, start + 5_000_000)
        # (its last holder is read whether it is held or not: whose lines may have moved)
        assert samples > 0 and (held, contended, switch, holders, error, last) == (0, 0, 78, (), 0,
                                                                                   (0xBEEF, 0xBEEF, 0, (0xBEEF,)))
    finally:
        os.close(site[0])


def test_asked_to_it_wakes_for_the_tick_and_samples_there_without_counting_that_wake_up():
    """A call with no sample due before the tick: asked to, it sleeps till the tick's time and samples
    there (the threads read next are read beside it); that wake-up, the tick's, is not one of its own,
    and the next sample is due a period after the tick's, not at once."""
    layout = GilLayout(GLIBC_2_41)
    buf = ctypes.create_string_buffer(gil_bytes(layout, holder=0x2000, locked=1, switch=2, waiters=0), layout.size)
    site = (os.open("/proc/self/mem", os.O_RDONLY), ctypes.addressof(buf), layout.shift, layout.condvar.wrefs)
    try:
        for at_until in (False, True):
            until = time.monotonic_ns() + 20_000_000
            next_ns, wake_ups, ((samples, held, _, switch, _, error, turns),), at_tick = _gilloop.sample(
                [site], 5_000_000, until, until, at_until)
            assert wake_ups == 0 and error == 0
            if at_until:
                assert time.monotonic_ns() >= until and at_tick and next_ns == until + 5_000_000
                assert (samples, held, switch, turns) == (1, 1, 2, (0x2000, 0x2000, 0, (0x2000,)))
            else:
                assert time.monotonic_ns() < until and not at_tick and next_ns == until
                assert (samples, switch, turns) == (0, None, None)
    finally:
        os.close(site[0])


def test_it_counts_every_change_of_last_holder_it_reads_and_keeps_each_holder():
    """The GIL handed from thread to thread (another thread writes the struct) while the loop samples:
    each change it reads is counted, each holder kept, the first and the latest told apart."""
    layout = GilLayout(GLIBC_2_41)
    holders = [0x1000 * k for k in (1, 2, 1, 3, 3, 2)]
    buf = ctypes.create_string_buffer(gil_bytes(layout, holder=holders[0], locked=1, switch=0, waiters=0), layout.size)
    site = (os.open("/proc/self/mem", os.O_RDONLY), ctypes.addressof(buf), layout.shift, layout.condvar.wrefs)

    def hand_over():
        for k, holder in enumerate(holders[1:], 1):
            time.sleep(0.05)
            ctypes.memmove(buf, gil_bytes(layout, holder=holder, locked=1, switch=k, waiters=0), layout.size)

    try:
        writer = threading.Thread(target=hand_over)
        start = time.monotonic_ns()
        writer.start()
        _, _, ((samples, *_, turns),), _ = _gilloop.sample([site], 1_000_000, start, start + 400_000_000)
        writer.join()
        first, last, changes, kept = turns
        assert (first, last) == (holders[0], holders[-1]) and samples > 10
        # 1 -> 2 -> 1 -> 3 -> 2: 4 changes (fewer only where the loop missed one, kept waiting 50 ms
        # for a CPU), never more; every holder it kept it found by a change, but the first
        assert len(set(kept)) - 1 <= changes <= 4 and set(kept) <= set(holders), (changes, kept)
        assert {holders[0], holders[-1]} <= set(kept)
    finally:
        os.close(site[0])


def test_a_thread_asking_for_the_gil_by_its_own_flags_makes_a_sample_contended():
    """3.15+: a thread spinning for the GIL is in no sleeper count, but its gil_requested is set."""
    layout = GilLayout(GLIBC_2_41)
    gil = ctypes.create_string_buffer(gil_bytes(layout, holder=0xBEEF, locked=1, switch=5, waiters=0), layout.size)
    flags = (ctypes.c_int32 * 6)(1, 1, 0, 0, 0, 0)  # (holds_gil, gil_requested) of three threads
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    pair = [ctypes.addressof(flags) + 8 * i for i in range(3)]

    def contended(addresses):
        start = time.monotonic_ns()
        _, _, ((samples, _, contended, *_),), _ = _gilloop.sample(
            [(fd, ctypes.addressof(gil), layout.shift, layout.condvar.wrefs, addresses)], 1_000_000, start,
            start + 5_000_000)
        assert samples > 0
        return contended / samples

    try:
        assert contended(pair) == 0.0  # the holder asks (it did before it got it); no one else does
        flags[5] = 1
        assert contended(pair) == 1.0  # the third asks and does not hold it
        assert contended(pair[:2]) == 0.0  # (not watched)
        assert contended([8, *pair]) == 0.0  # a flag that cannot be read: no word, as in Python
        with pytest.raises(ValueError):
            contended(pair * 3)
    finally:
        os.close(fd)


def test_a_site_that_cannot_be_read_says_why_and_ends_the_loop_early():
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        start = time.monotonic_ns()
        _, wake_ups, ((samples, *_, error, last),), at_tick = _gilloop.sample([(fd, 8, 0, 36)], 1_000_000, start,
                                                                     start + 1_000_000_000)
        assert samples == 0 and error != 0 and wake_ups == 0 and last is None and not at_tick
        assert time.monotonic_ns() - start < 500_000_000  # not the whole second
    finally:
        os.close(fd)


def test_the_sampler_uses_it_and_measures_what_the_python_loop_does(tmp_path, monkeypatch):
    python = python_or_skip("3.12")
    calls = []

    class Counting:
        @staticmethod
        def sample(*args):
            out = _gilloop.sample(*args)
            calls.append(out[1] + out[3])  # (its wake-ups' samples and the tick's)
            return out

    monkeypatch.setattr(sampler, "_gilloop", Counting)
    (tmp_path / "c").mkdir()
    in_c, _ = record_code(tmp_path / "c", python, CPU_THREADS.format(n=2))
    monkeypatch.setattr(sampler, "_gilloop", None)
    monkeypatch.setattr(threads, "_gilloop", None)
    (tmp_path / "py").mkdir()
    in_python, _ = record_code(tmp_path / "py", python, CPU_THREADS.format(n=2))
    assert sum(calls) > 0.9 * in_c["gil_sample_hz"] * in_c["duration_s"]  # (the rest: before the GIL was found)
    for summary in (in_c, in_python):
        gil = summary["gil"]
        # (hand-offs: about one a switch interval, 5 ms, idle; 43 and 32 a second seen beside two
        # CPU hogs, where the holder keeps the GIL while it waits for a core; contended: the waiter
        # asleep on the GIL, more than half the samples idle, 0.21 beside two hogs, where it often
        # waits for a core instead)
        assert gil["held"] > 0.9 and gil["contended"] > 0.1 and gil["handoffs_per_s"] > 25, gil
        assert summary["gil_sample_hz"] > 500, summary["gil_sample_hz"]
        spinners = [t for t in summary["threads"] if t["name"].startswith("cpu-")]
        # (between them they hold it; each its turns, not always half: beside two CPU hogs one kept
        # it 0.70 of the run, off its core while holding it half the time, the other 0.30)
        assert len(spinners) == 2 and sum(t["gil_held"] for t in spinners) > 0.85, spinners
        assert all(t["gil_held"] > 0.1 for t in spinners), spinners


SLEEPERS = ("import sys, threading, time\n"
            "lock = threading.Lock(); lock.acquire()\n"
            "for _ in range(12): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "threading.Thread(target=lock.acquire, daemon=True).start()\n"
            "time.sleep(0.2); sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline()\n"
            "for _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
            "time.sleep(0.2); sys.stdout.write('more\\n'); sys.stdout.flush(); time.sleep(60)\n")


def wait_until_asleep(pid: int) -> None:
    """Until no thread of the process is running or runnable (at most 5 s)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rpartition(")")[2].split()[0])
        if "R" not in states:
            return
        time.sleep(0.01)
    raise AssertionError(f"a thread of {pid} still runs")


def test_reading_threads_in_c_gives_what_python_gives_with_the_same_reads(monkeypatch):
    """Threads asleep (nothing moves between two reads): the C and the Python reading of them
    must agree field for field, skip the same idle threads at each sparseness, and so make the
    same number of reads; a thread that comes is read by both at the next read."""
    child = subprocess.Popen([sys.executable, "-c", SLEEPERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        wait_until_asleep(child.pid)  # (its main thread runs on a moment after it said so)
        probes = {"c": threads.ThreadProbe(child.pid), "python": threads.ThreadProbe(child.pid)}
        reads_made = {"c": [], "python": []}
        seen = {"c": [], "python": []}

        def read(way: str):
            monkeypatch.setattr(threads, "_gilloop", _gilloop if way == "c" else None)
            before = read_syscalls()
            readings, gone = probes[way].read()
            reads_made[way].append(read_syscalls() - before)
            seen[way].append(sorted(readings))
            return readings

        for sparseness in (1, 2):
            for way in probes:
                probes[way].sparseness = sparseness
            for _ in range(40):  # past every step of the idle table
                for way in probes:
                    read(way)
        assert len(seen["c"][0]) == 14  # 12 sleepers, the lock waiter, the main thread
        assert seen["c"] == seen["python"]
        assert all(not r.moved for r in seen["c"][-1]) and all(r.moved for r in seen["c"][0])
        assert {threads.classify_syscall(r.syscall) for r in seen["c"][0]} >= {"sleep", "lock"}
        assert reads_made["c"] == reads_made["python"]
        # the reads fell as the threads were taken as idle (the count of threads is read each time)
        assert reads_made["c"][-1] < reads_made["c"][0] / 4, reads_made["c"]
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "more\n"
        assert len(read("c")) == len(read("python")) == 17
        for probe in probes.values():
            probe.close()
    finally:
        child.kill()
        child.wait()


def test_reading_threads_in_c_follows_a_thread_that_runs_and_leaves_out_one_that_ended():
    code = ("import sys, threading, time\n"
            "def spin():\n"
            "    while True: pass\n"
            "threading.Thread(target=spin, daemon=True).start()\n"
            "def brief():\n"
            "    end = time.time() + 0.3\n"
            "    while time.time() < end: time.sleep(0.001)\n"
            "threading.Thread(target=brief).start()\n"
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)\n")
    with ready_child(code) as child:
        probe = threads.ThreadProbe(child.pid)
        first, _ = probe.read()
        assert len(first) == 3
        for _ in range(20):
            time.sleep(0.02)
            readings, _ = probe.read(list_threads=False)
        spinner = max((r for r in readings if r.tid != child.pid), key=lambda r: r.on_ns).tid
        by_tid = {r.tid: r for r in readings}
        assert by_tid[spinner].on_ns > next(r for r in first if r.tid == spinner).on_ns
        assert by_tid[spinner].cpu >= 0 and by_tid[spinner].state in "RS"
        time.sleep(0.4)  # the brief one (read at every read: it moved) ends: its files fail to read, it is left out
        readings, _ = probe.read(list_threads=False)
        assert len(readings) == 2 and {r.tid for r in readings} == {child.pid, spinner}
        probe.close()


def test_reading_threads_in_c_refuses_what_it_cannot_read():
    with pytest.raises(ValueError):
        _gilloop.read_threads([], 1, (), 0, 1, 2, threads.ThreadReading)
    with pytest.raises(ValueError):
        _gilloop.read_threads([], 1, (1,), 0, 1, 2, dict)
    with pytest.raises(AttributeError):
        _gilloop.read_threads([object()], 1, (1,), 0, 1, 2, threads.ThreadReading)
    with pytest.raises(TypeError):
        _gilloop.read_threads([], 1, (1,), 0, 1, 2, threads.ThreadReading, set(), (b"202 ",), 8)
    with pytest.raises(ValueError):
        _gilloop.read_threads([], 1, (1,), 0, 1, 2, threads.ThreadReading, set(), ("202 ",), 0)


STAT = "{tid} (worker (x)) {state} 1 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 3 0 100 0 0 " + " ".join(["0"] * 14) + " {cpu} 0 0 0 0 0\n"


def test_reading_threads_in_c_gives_what_python_gives_on_every_branch(tmp_path):
    """Files written here, the same for both: a new thread, one unchanged then idle, one on a CPU
    briefly (no stat read but one read in two), one on a CPU a long while (stat read), one
    whose syscall file fails after its schedstat moved, one with no syscall file, a name with
    ')' in it. Both readers must return the same readings and leave every thread the same."""
    from gilviz.probes.threads import IDLE_STEPS, STAT_AFTER_NS, ThreadProbe, ThreadReading, _OpenThread, _READ_EVERY

    names = ["new", "idle", "brief", "busy", "failing", "no_syscall"]
    files = {}
    for name in names:
        for kind in ("schedstat", "syscall", "stat"):
            files[name, kind] = tmp_path / f"{name}.{kind}"

    def write(name, on, runq, slices, syscall="202 0x7f00 0x80 0x0\n", state="S", cpu=1):
        files[name, "schedstat"].write_text(f"{on} {runq} {slices}\n")
        files[name, "syscall"].write_text(syscall)
        files[name, "stat"].write_text(STAT.format(tid=100 + names.index(name), state=state, cpu=cpu))

    def open_threads():
        out = []
        for i, name in enumerate(names):
            th = _OpenThread.__new__(_OpenThread)
            th.tid, th.last, th.unchanged = 100 + i, None, 0
            th.sched, th.stat = (os.open(files[name, k], os.O_RDONLY) for k in ("schedstat", "stat"))
            th.sys = -1 if name == "no_syscall" else os.open(files[name, "syscall"], os.O_RDONLY)
            out.append(th)
        return out

    for name in names:
        write(name, 1_000_000, 10, 5)
    in_c, in_python = open_threads(), open_threads()
    probe = ThreadProbe(os.getpid())
    probe._threads = {th.tid: th for th in in_python}
    on = {name: 1_000_000 for name in names}
    for read in range(1, 3 * IDLE_STEPS[0][0]):
        for sparseness in (1, 2):
            if read > 1:  # what each thread did since the last read
                on["brief"] += 200_000  # under STAT_AFTER_NS: its core is what it was, but one read in two
                write("brief", on["brief"], 10, 5 + read, state="R", cpu=read % 2,
                      syscall="running\n" if read % 3 else "202 0x7f00 0x80 0x0\n")
                on["busy"] += STAT_AFTER_NS + 1
                write("busy", on["busy"], 20 + read, 5 + read, syscall="running\n", state="R", cpu=read % 2)
                on["no_syscall"] += 50_000
                write("no_syscall", on["no_syscall"], 10, 5 + read, state="R", cpu=0)
                on["failing"] += 10
                write("failing", on["failing"], 10, 5 + read)
            if read == 5 and sparseness == 1:  # its syscall file fails after its schedstat moved
                for ths in (in_c, in_python):
                    th = next(t for t in ths if t.tid == 100 + names.index("failing"))
                    os.close(th.sys)
                    th.sys = os.open(tmp_path, os.O_RDONLY)  # a folder: reading it fails
            probe._reads = read * 2 + sparseness
            probe.sparseness = sparseness
            read_every, idle_from = _READ_EVERY[sparseness]
            got_c = _gilloop.read_threads(in_c, probe._reads, read_every, idle_from, STAT_AFTER_NS, IDLE_STEPS[-1][1],
                                          ThreadReading)
            got_python = probe._read_in_python([th.tid for th in in_python], read_every, idle_from)
            assert got_c == got_python, (read, sparseness)
            assert [(th.last, th.unchanged) for th in in_c] == [(th.last, th.unchanged) for th in in_python], read
            assert all(type(r) is ThreadReading and hash(r) == hash(tuple(r)) for r in got_c)
    by_tid = {r.tid: r for r in got_c}
    failing = next(th for th in in_c if th.tid == 100 + names.index("failing"))
    assert 100 + names.index("failing") not in by_tid and failing.unchanged == 0  # left out, and taken as moving
    assert by_tid[100 + names.index("idle")].moved is False
    assert next(th for th in in_c if th.tid == 100 + names.index("idle")).unchanged > IDLE_STEPS[0][0]  # skipped reads
    assert by_tid[100 + names.index("no_syscall")].syscall == "running"
    for ths in (in_c, in_python):
        for th in ths:
            th.close()


@pytest.mark.parametrize("where", ["C", "Python"])
def test_a_parked_thread_that_moved_and_stopped_has_its_syscall_file_read_once_still(tmp_path, monkeypatch, where):
    """A thread asleep in the wait followed (take_gil's) takes the GIL and blocks elsewhere (a
    join) between the tick's last GIL sample and its read: the samples have not seen it hold the
    GIL, so it is still parked, and its syscall text is carried over at the read that finds it
    moved. It then moves no more: the read that finds it still reads its file, and says it moved
    into the new wait (else it would be taken as waiting for the GIL to the end of the run)."""
    from gilviz.probes import threads as threads_module
    from gilviz.probes.threads import WAITS_READ_EVERY, ThreadProbe, _OpenThread

    if where == "Python":
        monkeypatch.setattr(threads_module, "_gilloop", None)
    elif threads_module._gilloop is None:
        pytest.skip("gilviz/_gilloop.c is not built here")
    waiting, joining = "202 0x7f40 0x189 0x0 0x0\n", "202 0x55d0 0x189 0x0 0x0\n"
    paths = {kind: tmp_path / f"100.{kind}" for kind in ("schedstat", "syscall", "stat")}

    def write(on, syscall):
        paths["schedstat"].write_text(f"{on} 10 {on // 1000}\n")
        paths["syscall"].write_text(syscall)
        paths["stat"].write_text(STAT.format(tid=100, state="S", cpu=0))

    write(1_000_000, waiting)
    th = _OpenThread.__new__(_OpenThread)
    th.tid, th.last, th.unchanged = 100, None, 0
    th.sched, th.stat, th.sys = (os.open(paths[k], os.O_RDONLY) for k in ("schedstat", "stat", "syscall"))
    probe = ThreadProbe(os.getpid())
    probe._threads = {100: th}
    probe.waits = ("202 0x7f40 ",)
    probe._reads = 0  # (its reads: 1, then 2, which 100 + 2 does not make a read in WAITS_READ_EVERY)
    assert (100 + 2) % WAITS_READ_EVERY
    [first], _ = probe.read(list_threads=False)
    assert first.syscall == waiting and probe.parked == {100}
    write(1_050_000, joining)  # took the GIL, ran a moment, now asleep in the join
    [moved], _ = probe.read(list_threads=False)
    assert moved.moved and moved.syscall == waiting and probe.carried == {100}  # (carried over: not read)
    [still], _ = probe.read(list_threads=False)
    assert still.moved and still.syscall == joining and 100 not in probe.parked and not probe.carried
    assert th.last == still and th.unchanged == 0
    [after], _ = probe.read(list_threads=False)
    assert not after.moved and after.syscall == joining  # asleep in the join: read as it was
    write(1_100_000, waiting)  # in the GIL's wait again, moving there: parked, carried, read when still
    probe.read(list_threads=False)
    write(1_150_000, waiting)
    probe.read(list_threads=False)
    assert probe.parked == {100}
    [again], _ = probe.read(list_threads=False)  # still, in the same wait: nothing new to say
    assert not again.moved and again.syscall == waiting and not probe.carried
    th.close()


def test_a_thread_in_a_wait_followed_has_its_syscall_file_read_again_only_once_taken_out_or_in_turn(tmp_path):
    """Files written here: a thread whose syscall file says it waits on the word followed, then
    says otherwise at every other read (caught on a CPU), and one waiting on another word. The
    first is parked from its first read; while it is, what its file says is not read (but one read
    in WAITS_READ_EVERY, which takes it out when it says otherwise), and once the caller takes it
    out it is read at once. C and Python give the same readings and leave the same set."""
    from gilviz.probes.threads import (IDLE_STEPS, STAT_AFTER_NS, WAITS_READ_EVERY, ThreadProbe, ThreadReading,
                                       _OpenThread, _READ_EVERY)

    waiting, elsewhere = "202 0x7f40 0x189 0x0 0x0\n", "202 0x7f48 0x80 0x0 0x0\n"
    paths = {(tid, kind): tmp_path / f"{tid}.{kind}" for tid in (100, 101) for kind in ("schedstat", "syscall", "stat")}

    def write(tid, on, syscall):
        paths[tid, "schedstat"].write_text(f"{on} 10 {on // 1000}\n")
        paths[tid, "syscall"].write_text(syscall)
        paths[tid, "stat"].write_text(STAT.format(tid=tid, state="S", cpu=0))

    def open_threads():
        out = []
        for tid in (100, 101):
            th = _OpenThread.__new__(_OpenThread)
            th.tid, th.last, th.unchanged = tid, None, 0
            th.sched, th.stat, th.sys = (os.open(paths[tid, k], os.O_RDONLY) for k in ("schedstat", "stat", "syscall"))
            out.append(th)
        return out

    for tid in (100, 101):
        write(tid, 0, elsewhere)
    in_c, in_python = open_threads(), open_threads()
    probe = ThreadProbe(os.getpid())
    probe._threads = {th.tid: th for th in in_python}
    probe.waits = ("202 0x7f40 ",)
    parked_c: set[int] = set()
    carried_c: set[int] = set()
    read_every, idle_from = _READ_EVERY[1]
    kept = fresh = 0
    for read in range(1, 4 * WAITS_READ_EVERY):
        on = read * 50_000  # (each moves at every read, a moment at a time)
        says = waiting if read % 2 else "running\n"
        write(100, on, says)
        write(101, on, elsewhere)
        if read == 2 * WAITS_READ_EVERY + 3:  # the caller knows it may have left the wait (it held the GIL)
            parked_c.discard(100)
            probe.parked.discard(100)
        was_parked = 100 in parked_c
        probe._reads = read
        got_c = _gilloop.read_threads(in_c, read, read_every, idle_from, STAT_AFTER_NS, IDLE_STEPS[-1][1], ThreadReading,
                                      parked_c, probe.waits, WAITS_READ_EVERY, carried_c)
        got_python = probe._read_in_python([100, 101], read_every, idle_from)
        assert got_c == got_python and parked_c == probe.parked and carried_c == probe.carried, read
        assert [(th.last, th.unchanged) for th in in_c] == [(th.last, th.unchanged) for th in in_python], read
        waiter, other = got_c
        assert waiter.moved and other.moved and other.syscall == elsewhere and 101 not in parked_c
        if was_parked and (read + 100) % WAITS_READ_EVERY:
            kept += 1
            assert waiter.syscall == waiting and 100 in parked_c, read  # not read: what it last said stands
        else:
            fresh += 1
            assert waiter.syscall == says and (100 in parked_c) == (says == waiting), read
    assert kept > fresh > 2, (kept, fresh)
    for th in in_c + in_python:
        th.close()


# ------------------------------------------------------------------ the state rules in C
GIL_AT = 0x7F00_0000_1000  # a GIL's futex range, the runtime's, and elsewhere
GIL_RANGES = ((GIL_AT, GIL_AT + 0x100),)
RUNTIME = (0x7F00_0000_0000, 0x7F00_0010_0000)
SYSCALLS = [
    "running", "", f"202 {GIL_AT + 0x40:#x} 0x189 0x0 0x0 0x0 0x0 0x7ffc 0x7f00",  # the GIL's condvar
    f"202 {RUNTIME[0] + 0x9000:#x} 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x7f00",  # a lock inside _PyRuntime
    "202 0x55d0c0a8 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x7f00", "202", "230 0x1 0x0 0x7ffc 0x0 0x0 0x0 0x7ffc 0x7f00",
    "7 0x7ffc 0x0 0x3e8 0x0 0x0 0x0 0x7ffc 0x7f00", "7 0x7ffc 0x2 0x3e8 0x0 0x0 0x0 0x7ffc 0x7f00", "7 0x7ffc",
    "0 0x3 0x7ffc 0x1000 0x0 0x0 0x0 0x7ffc 0x7f00", "449 0x7ffc 0x2 0x0", "999 0x0 0x0", "-1 0x7ffc 0x7f00",
    "202 0xzz 0x80", "x 0x1", "23 0x0 0x0",
]
CALLS = ["running", "gil", "sleep", "io", "lock", "other"]


def _python_tick(r, mem, dt, held_frac, gil_state, gil_samples, has_gil, located):
    """sampler._process_tick's body for a thread already known and seen (the reference); None
    where the C leaves the reading to it (a GIL wait that may locate the GIL, text it parses otherwise)."""
    from gilviz.capture import states

    if not r.moved and mem.call != "running":
        return states.unchanged(r, mem, dt, held_frac)
    call = mem.call
    if r.moved:
        try:
            call = threads.classify_syscall(r.syscall, GIL_RANGES if has_gil else ())
        except (ValueError, IndexError):
            return None
        if has_gil and call == "gil":
            if not located:
                return None
            mem.in_runtime = False
        elif has_gil and call == "lock":
            parts = r.syscall.split()
            if len(parts) < 2:
                return None
            mem.in_runtime = RUNTIME[0] <= int(parts[1], 16) < RUNTIME[1]
    return states.classify(r, mem, dt, held_frac, call, first=False, gil=gil_state, gil_samples=gil_samples)


def test_the_state_rules_in_c_are_the_rules_in_python_on_any_reading():
    """Random readings and memories of every kind, against capture/states.py: the same tick, to the
    microsecond, and the same memory after, float for float; what the C leaves to Python, untouched."""
    import copy
    import random

    from gilviz.capture import states
    from gilviz.stream import ThreadTick

    assert states.tick_threads is not None
    rng = random.Random(12)
    taken = left = 0
    for case in range(20_000):
        dt = rng.choice([1, 4_000, 5_000, 5_123, 20_000, 45_000])
        on0 = rng.randrange(0, 10**12)
        mem = states.ThreadMemory(
            on_ns=on0, runq_ns=rng.randrange(0, 10**10), call=rng.choice(CALLS), off_kind=rng.choice(CALLS[1:]),
            in_runtime=rng.random() < 0.5, spinning_for_gil=rng.random() < 0.3,
            pending_on=rng.randrange(-states.UNREPORTED_ON_US, states.MAX_PENDING_US + 1),
            pending_rq=rng.choice([0, rng.randrange(-3000, 3000), rng.randrange(-states.RUNQ_AHEAD_US, 0),
                                   rng.randrange(0, states.MAX_PENDING_US + 1)]),
            slices=rng.choice([0, rng.randrange(1, 10**6)]),
            held_unmatched=rng.choice([0, rng.randrange(0, states.MAX_PENDING_US + 1)]),
            held_share=rng.choice([0.0, 1e-7, rng.random()]),
            quiet_us=rng.choice([0, rng.randrange(0, 2 * states.UNREPORTED_ON_US)]),
            fill_us=rng.choice([0, rng.randrange(0, 2 * dt + 1)]), taken_back_us=rng.choice([0, 7]))
        moved = rng.random() < 0.8
        step_on = rng.choice([0, rng.randrange(0, 2 * dt * 1000), rng.randrange(-5000, 5000)]) if moved else 0
        reading = threads.ThreadReading(
            tid=100 + case % 7, state=rng.choice("RSD"), cpu=rng.choice([-1, 0, 1]), on_ns=on0 + step_on,
            runq_ns=mem.runq_ns + (rng.choice([0, rng.randrange(0, dt * 1000), rng.randrange(0, 50 * 10**6)])
                                   if moved else 0),
            slices=mem.slices + (rng.choice([0, rng.randrange(0, 50)]) if moved else 0), syscall=rng.choice(SYSCALLS),
            moved=moved)
        held_frac = rng.choice([0.0, 0.0, 1.0, rng.random(), 0.5])
        gil_state = rng.choice(["located", "not python", "not located", "no GIL", "not sampled"])
        has_gil = gil_state != "not python" and rng.random() < 0.9
        located = gil_state == "located"
        gil_samples = rng.choice([0, 1, 9, 40])
        mem_c, mem_py = copy.copy(mem), copy.copy(mem)
        ticks: list = []
        lines = rng.choice([None, {}, {reading.tid: 7}, {reading.tid + 1: 9}])  # the lines read from memory
        done = states.tick_threads(
            [reading], 0, ticks, {reading.tid: mem_c}, {reading.tid}, {reading.tid: held_frac} if held_frac else {},
            dt, gil_state, gil_samples, GIL_RANGES if has_gil else (), has_gil, located, RUNTIME if has_gil else None,
            ThreadTick, threads.SYSCALL_KINDS, threads.NFDS_ARG, *([lines] if lines is not None or case % 2 else []))
        want = _python_tick(reading, mem_py, dt, held_frac, gil_state, gil_samples, has_gil, located)
        if want is not None and lines:
            want = want._replace(line=lines.get(reading.tid, 0))
        if done == 0:  # left to Python: nothing done
            left += 1
            assert ticks == [] and mem_c == mem, (case, reading)
            continue
        taken += 1
        assert done == 1 and want is not None, (case, reading)
        assert ticks == [want] and type(ticks[0]) is ThreadTick, (case, reading, mem)
        assert mem_c == mem_py, (case, reading, mem)
    assert taken > 15_000 and left > 500  # (both ways are exercised)


def test_the_state_rules_in_c_stop_at_a_thread_python_must_take_and_go_on_after_it():
    from gilviz.capture import states
    from gilviz.stream import ThreadTick

    def reading(tid, moved=True, syscall="running"):
        return threads.ThreadReading(tid, "R", 0, 10**9, 0, 5, syscall, moved)

    known = {1: states.ThreadMemory(on_ns=10**9 - 10**6, call="running"), 3: states.ThreadMemory(call="sleep"),
             4: states.ThreadMemory(on_ns=10**9 - 10**6, call="running")}
    readings = [reading(1), reading(2), reading(3, moved=False), reading(4, syscall=f"202 {GIL_AT:#x} 0x80"),
                reading(1)]
    args = ({1, 3, 4}, {}, 5000, "not located", 0, GIL_RANGES, True, False, RUNTIME, ThreadTick,
            threads.SYSCALL_KINDS, threads.NFDS_ARG)
    ticks: list = []
    assert states.tick_threads(readings, 0, ticks, known, *args) == 1  # thread 2: not known
    assert states.tick_threads(readings, 2, ticks, known, *args) == 3  # a GIL wait on a GIL not located
    assert states.tick_threads(readings, 4, ticks, known, *args) == 5
    assert [t.tid for t in ticks] == [1, 3, 1] and ticks[1].sleep == 5000
    assert states.tick_threads(readings, 0, [], known, {4}, *args[1:]) == 0  # not seen before
