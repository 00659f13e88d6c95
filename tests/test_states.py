"""The state rules (capture/states.py), on readings recorded from a real run and on made ones.

tests/data/readings.json.gz holds every input the rules were given on CPython 3.12 (two
threads spinning in Python, one hashing beside them, one starting late and ending early, the
main thread joining), and what they returned; remake it with tests/data/record_readings.py.
"""

import gzip
import json
from collections import defaultdict
from pathlib import Path

import pytest

from gilviz.capture import states
from gilviz.capture.states import MAX_PENDING_US, ThreadMemory, classify, place_cpu_time
from gilviz.probes.threads import STOPPED_SYSCALL, ThreadReading, classify_syscall
from gilviz.stream import ThreadTick

DATA = json.loads(gzip.open(Path(__file__).parent / "data" / "readings.json.gz", "rt").read())
NAMES = {int(tid): name for tid, name in DATA["names"].items()}
SCHEDULER_TICK_US = 4000  # of the kernel the readings come from (HZ=250)
UNREPORTED_ON_US_AT_MOST = SCHEDULER_TICK_US + 800


@pytest.fixture(autouse=True)
def recorded_kernel(monkeypatch):
    """The rules as on the kernel the readings were recorded on, whatever this one's HZ."""
    monkeypatch.setattr(states, "UNREPORTED_ON_US", UNREPORTED_ON_US_AT_MOST)


def replay_thread(calls):
    """Feeds one thread's recorded inputs to the rules, from the memory it started with."""
    first = calls[0]["before"]
    mem = ThreadMemory(on_ns=first["on_ns"], runq_ns=first["runq_ns"], call=first["call"], slices=first["slices"])
    out = []
    for c in calls:
        state, cpu, on_ns, runq_ns, slices, syscall, moved = c["reading"]
        r = ThreadReading(c["tid"], state, cpu, on_ns, runq_ns, slices, syscall, moved)
        out.append(classify(r, mem, c["dt"], c["held_frac"], c["call"], first=c["first"], gil=c["gil"],
                            gil_samples=c["gil_samples"]))
    return out


@pytest.fixture(scope="module")
def by_thread():
    calls = defaultdict(list)
    for c in DATA["calls"]:
        calls[NAMES[c["tid"]]].append(c)
    return calls


def shares(ticks):
    life = sum(sum(t[2:10]) for t in ticks)
    return {name: sum(getattr(t, name) for t in ticks) / life
            for name in ("running", "native", "waiting", "runnable", "lock", "held", "oncpu")}


def test_the_rules_are_a_function_of_their_inputs_and_the_threads_memory(by_thread):
    for name, calls in by_thread.items():
        assert [list(t)[:12] for t in replay_thread(calls)] == [c["out"][:12] for c in calls], name  # line: not theirs


def test_every_tick_adds_up_to_its_length(by_thread):
    for name, calls in by_thread.items():
        for c, t in zip(calls, replay_thread(calls)):
            assert sum(t[2:10]) == c["dt"], (name, t)
            assert t.oncpu == t.running + t.native + (t.oncpu - t.running - t.native)
            assert 0 <= t.running <= t.oncpu <= c["dt"]


def test_gil_overhead_of_spinners_is_waiting_not_native(by_thread):
    """Two threads spinning in Python: what they spend on a CPU without the GIL is GIL overhead."""
    for name in ("spin-0", "spin-1"):
        s = shares(replay_thread(by_thread[name]))
        assert s["native"] < 0.03, (name, s)
        assert s["waiting"] > 0.3 and s["held"] > 0.2, (name, s)
        assert s["oncpu"] - s["running"] > 0.02, (name, s)  # there was on-CPU time without the GIL to place


def test_hashing_on_a_cpu_without_the_gil_is_native(by_thread):
    s = shares(replay_thread(by_thread["hasher"]))
    assert s["native"] > 0.1 and s["native"] > 0.8 * (s["oncpu"] - s["running"]), s


def test_schedstat_lag_is_carried_over_not_lost(by_thread):
    """CPU time reported a tick late is placed in the next ticks: over the run, the time placed
    equals what schedstat reported, give or take what is still pending at the end, and the CPU time
    placed ahead that the kernel never reported (at most UNREPORTED_ON_US at each wake-up)."""
    for name, calls in by_thread.items():
        ticks = replay_thread(calls)
        reported = (calls[-1]["reading"][2] - calls[0]["before"]["on_ns"]) // 1000
        if calls[0]["first"]:
            reported = calls[-1]["reading"][2] // 1000
        placed = sum(t.oncpu for t in ticks)
        # (the ticks in which it left a CPU for a syscall, or got one after a wait)
        ends = sum(1 for c in calls if c["before"]["call"] == "running" != c["call"]
                   or c["reading"][3] > c["before"]["runq_ns"])
        assert -MAX_PENDING_US - len(ticks) <= placed - reported <= ends * states.UNREPORTED_ON_US + len(ticks), \
            (name, placed, reported, ends)


def test_a_thread_born_inside_a_tick_counts_from_its_birth(by_thread):
    calls = by_thread["brief"]
    assert calls[0]["first"] and calls[0]["before"]["on_ns"] == 0
    t = replay_thread(calls)[0]
    assert t.oncpu <= calls[0]["dt"] and t.oncpu == min(calls[0]["dt"], calls[0]["reading"][2] // 1000)


# ----------------------------------------------------------------- made readings
def reading(on_ms, runq_ms=0, slices=1, syscall="running", state="R", moved=True):
    return ThreadReading(1, state, 0, int(on_ms * 1e6), int(runq_ms * 1e6), slices, syscall, moved)


def test_cpu_time_reported_late_is_placed_where_it_was_spent():
    """A thread on a CPU for three ticks, then asleep: the kernel adds its time only at its own
    4 ms ticks (0, 8, 12 ms reported), and the last 3 ms when it goes to sleep."""
    mem = ThreadMemory(call="running")
    ticks = [classify(reading(0, moved=False), mem, 5000, 1.0, "running"),
             classify(reading(8), mem, 5000, 1.0, "running"),
             classify(reading(12), mem, 5000, 1.0, "running"),
             classify(reading(15, syscall="230 0x1", state="S"), mem, 5000, 0.0, "sleep")]
    assert [t.oncpu for t in ticks] == [5000, 5000, 5000, 0]  # busy all along, as it was
    assert ticks[-1].sleep == 5000
    assert sum(t.oncpu for t in ticks) == 15000 and mem.pending_on == 0  # exactly what was reported


def test_a_thread_runnable_for_a_long_wait_for_a_cpu_is_runnable_not_on_one():
    """A busy machine: a thread preempted in Python, runnable with no core for 40 ms, reports nothing
    until it gets one; then it reports the whole wait. Only its first tick (in which a thread on a
    CPU could leave as much unreported) is taken for CPU time, and the next reading gives it back;
    the rest is runnable as it happens, and once the kernel has reported the wait nothing is
    carried on."""
    mem = ThreadMemory(on_ns=10**7, call="running", held_share=0.1)
    ticks, taken_back = [], []
    for _ in range(8):
        ticks.append(classify(reading(10, moved=False), mem, 5000, 0.0, "running"))
        taken_back.append(mem.taken_back_us)
    ticks.append(classify(reading(10.02, runq_ms=40, syscall="202 0x7f 0x80", state="S"), mem, 5000, 0.0, "gil"))
    assert ticks[0].oncpu == 5000 and taken_back[1] == 5000 and sum(taken_back) == 5000, (ticks, taken_back)
    assert sum(t.oncpu for t in ticks) == 5000 + 20, ticks  # (and 20 us it ran before the GIL wait)
    assert all(t.runnable == 5000 for t in ticks[1:8]), ticks  # seen as it happens
    assert (mem.pending_on, mem.pending_rq) == (0, 0)
    # its next turn: every microsecond the kernel reports is placed, none paid to the wait
    t = classify(reading(14.02, runq_ms=40), mem, 5000, 0.8, "running")
    assert t.oncpu == 4000 and t.running == 4000


def test_a_new_thread_queued_for_its_first_cpu_is_runnable_not_on_one():
    """A busy machine: a thread just started waits 200 ms for its first CPU. It has never been on
    one (schedstat 0 0 0), its state is R, it is in no syscall: every tick of that is a wait for a
    CPU (it was drawn as 200 ms on one, in C code, beside the thread holding the GIL). Then it
    gets one: the wait the kernel reports now is placed already, its CPU time is placed."""
    mem = ThreadMemory()
    ticks = [classify(reading(0, slices=0), mem, 5000, 0.0, "running", first=True)]
    ticks += [classify(reading(0, slices=0, moved=False), mem, 5000, 0.0, "running") for _ in range(40)]
    assert all(t.runnable == 5000 and t.oncpu == 0 for t in ticks), ticks
    assert mem.fill_us == 0 and mem.taken_back_us == 0  # (nothing placed on a CPU to give back)
    t = classify(reading(4, runq_ms=205, slices=3), mem, 5000, 1.0, "running")
    assert t.runnable == 0 and t.running == 5000 and mem.pending_rq == 0, t
    # a thread read for the first time after it had run (attached to): its reading says nothing of
    # this tick's slices, and its time on a CPU is placed as before
    mem = ThreadMemory()
    t = classify(reading(3, slices=2), mem, 5000, 1.0, "running", first=True)
    assert t.oncpu == 5000 and t.runnable == 0, t


def test_a_thread_that_slept_between_two_readings_is_not_taken_for_waiting_for_a_cpu():
    """An idle machine: a thread runs 9.5 ms and sleeps 0.5 ms, over and over, read every 5 ms, so
    it is runnable at every reading. Its CPU time comes at the scheduler's 4 ms ticks and when it
    goes to sleep; each time it wakes it gets a CPU at once (no wait reported, one more slice)."""
    mem = ThreadMemory(on_ns=10**7, call="running", slices=1)
    ticks, on_us = [], 0.0
    for i in range(1, 2001):  # 10 s
        t = i * 5.0  # ms
        cycle, into = divmod(t, 10.0)
        ran = cycle * 9.5 + min(into, 9.5)  # its CPU time so far, ms
        since_report = into % 4.0 if into < 9.5 else 0.0  # (a sleep reports it all)
        on_us = (ran - since_report) * 1000
        ticks.append(classify(ThreadReading(1, "R", 0, 10**7 + int(on_us * 1000), 0, 1 + int(cycle) + 1, "running\n",
                                            True), mem, 5000, 0.95, "running"))
    assert sum(t.runnable for t in ticks) == 0 and mem.pending_rq == 0
    # (its sleeps, between two readings that find it runnable, are not seen: they count as CPU time)
    assert sum(t.oncpu for t in ticks) >= on_us - UNREPORTED_ON_US_AT_MOST


def test_a_wait_for_a_cpu_placed_ahead_and_not_reported_is_dropped_when_it_gets_one():
    """Runnable with no CPU time reported for 20 ms (placed as a wait for a CPU), but the kernel
    reports 5 ms of wait when it gets one (it slept in between, and woke runnable): the rest is
    not taken out of the waits it reports later."""
    mem = ThreadMemory(on_ns=10**7, call="running", slices=1)
    ticks = [classify(reading(10, moved=False), mem, 5000, 0.0, "running") for _ in range(4)]
    assert sum(t.runnable for t in ticks) == 20_000
    classify(reading(12, runq_ms=5, slices=2), mem, 5000, 1.0, "running")
    t = classify(reading(15, runq_ms=7, slices=3), mem, 5000, 1.0, "running")  # preempted 2 ms
    assert t.runnable == 2000 and t.oncpu == 3000


def test_the_next_reading_says_whether_a_gap_taken_for_cpu_time_was_a_wait_for_a_cpu():
    """A busy machine: a thread runs 1 ms and is preempted. Its tick's gap is taken for CPU time (a
    thread on a CPU leaves as much unreported); nothing reported and no CPU got by the next reading,
    and that gap is given back as a wait (the sampler sets the tick right before it goes out)."""
    mem = ThreadMemory(on_ns=10**7, call="running", slices=1)
    t = classify(reading(11), mem, 5000, 0.0, "running")
    assert t.oncpu == 5000 and mem.fill_us == 4000 and mem.taken_back_us == 0
    t = classify(reading(11, moved=False), mem, 5000, 0.0, "running")
    assert t.runnable == 5000 and mem.taken_back_us == 4000 and mem.fill_us == 0
    t = classify(reading(11, moved=False), mem, 5000, 0.0, "running")
    assert t.runnable == 5000 and mem.taken_back_us == 0
    # it gets a CPU: the kernel reports the wait (14 ms), all of it placed already
    t = classify(reading(13, runq_ms=14, slices=2), mem, 5000, 0.0, "running")
    assert t.runnable == 0 and t.oncpu == 5000 and mem.pending_rq == 0
    # a gap taken for CPU time, then a wait reported at the next reading: what it covers is given back
    mem = ThreadMemory(on_ns=10**7, call="running", slices=1)
    classify(reading(11), mem, 5000, 0.0, "running")
    classify(reading(12, runq_ms=4, slices=2), mem, 5000, 0.0, "running")
    assert mem.taken_back_us == 3000  # (1 ms of it it ran, reported now)
    # the same in a tick it got a CPU in (switched in, ran 1 ms, preempted)
    mem = ThreadMemory(on_ns=10**7, call="running", slices=1)
    classify(reading(11, slices=2), mem, 5000, 0.0, "running")
    classify(reading(11, moved=False, slices=2), mem, 5000, 0.0, "running")
    assert mem.taken_back_us == 4000


def test_a_short_tick_with_nothing_reported_after_a_sleep_is_no_wait_for_a_cpu():
    """Ran 4 ms, then 2 more, slept 2.5 ms, woke and ran on; a late tick is followed by a short
    one (1.5 ms) in which no scheduler tick came: too short to say it was not on a CPU."""
    mem = ThreadMemory(on_ns=10**7, call="running", slices=1)
    ticks = [classify(reading(14), mem, 5000, 1.0, "running"),
             classify(reading(16, slices=2), mem, 5000, 1.0, "running")]
    assert mem.taken_back_us == 0
    ticks.append(classify(reading(16, slices=2, moved=False), mem, 1500, 1.0, "running"))
    assert mem.taken_back_us == 0 and all(t.runnable == 0 for t in ticks), ticks


def test_cpu_time_placed_ahead_and_never_reported_is_dropped_when_it_sleeps():
    """Runnable at both ends of a tick (placed on a CPU), but the kernel says it ran 1 ms and then
    slept: what was placed ahead is not taken out of its next run."""
    mem = ThreadMemory(on_ns=10**7, call="running", held_share=0.5)
    classify(reading(11), mem, 5000, 0.5, "running")
    assert mem.pending_on == -4000  # placed ahead of the kernel's report
    classify(reading(11, syscall="230 0x1", state="S"), mem, 5000, 0.0, "sleep")
    assert mem.pending_on == 0
    t = classify(reading(15), mem, 5000, 1.0, "running")  # woke and ran 4 ms
    assert t.oncpu == 4000 and t.running == 4000 and t.runnable == 0


def test_a_thread_on_a_cpu_whose_time_comes_at_scheduler_ticks_is_never_runnable():
    """Busy all along, its time reported in 4 ms steps read at 5 ms ticks."""
    mem = ThreadMemory(on_ns=10**7, call="running")
    ticks = []
    for i in range(1, 41):
        reported_ms = 10 + (i * 5 // 4) * 4  # what the kernel has added by the i-th reading
        ticks.append(classify(reading(reported_ms), mem, 5000, 1.0, "running"))
    assert all(t.oncpu == 5000 and t.runnable == 0 for t in ticks), ticks


def test_the_scheduler_tick_is_the_kernels():
    """Taken from the coarse clock's resolution (a container has no /boot), it is 1/CONFIG_HZ."""
    from gilviz.probes.threads import coarse_tick_us, configured_tick_us, scheduler_tick_us

    configured = configured_tick_us()
    if configured is None:
        pytest.skip("this kernel publishes no build configuration to compare with")
    assert coarse_tick_us() == configured
    assert scheduler_tick_us() in (configured, 1_000_000)  # (a second: some CPUs stop their tick)


def test_place_cpu_time_keeps_what_does_not_fit():
    mem = ThreadMemory()
    on, runq = place_cpu_time(mem, 9000, 0, 5000, busy=False)
    assert (on, runq, mem.pending_on) == (5000, 0, 4000)
    on, runq = place_cpu_time(mem, 0, 0, 5000, busy=False)
    assert (on, mem.pending_on) == (4000, 0)


def test_a_futex_on_the_gil_is_waiting_and_any_other_is_a_lock():
    mem = ThreadMemory(on_ns=10**6, call="running")
    t = classify(reading(1, syscall="202 0x7f 0x80", state="S"), mem, 5000, 0.0, "gil")
    assert t.waiting == 5000 and t.lock == 0
    mem = ThreadMemory(on_ns=10**6, call="running")
    t = classify(reading(1, syscall="202 0x7f 0x80", state="S"), mem, 5000, 0.0, "lock")
    assert t.lock == 5000 and t.waiting == 0


def test_without_a_located_gil_time_on_a_cpu_is_running_and_outside_python_native():
    for gil, field in (("no GIL", "running"), ("not located", "running"), ("not python", "native")):
        mem = ThreadMemory(on_ns=0, call="running")
        t = classify(reading(5), mem, 5000, 0.0, "running", gil=gil)
        assert getattr(t, field) == 5000 and t.held == 0, gil


def test_a_thread_asleep_all_tick_keeps_its_reason():
    mem = ThreadMemory(on_ns=10**6, call="sleep")
    t = classify(reading(1, syscall="230 0x1", state="S", moved=False), mem, 5000, 0.0, "sleep")
    assert t == ThreadTick(1, 0, 0, 0, 0, 0, 5000, 0, 0, 0, 0, 0)
    assert states.unchanged(reading(1, moved=False), ThreadMemory(call="gil"), 5000, 0.0).waiting == 5000


def test_a_thread_read_as_stopped_in_a_gil_wait_is_blocked_until_read_in_the_wait_again():
    gil = ((0x7F00, 0x7F10),)
    mem = ThreadMemory(on_ns=10**6, call="gil")
    stopped = reading(1.02, syscall=STOPPED_SYSCALL, state="T")  # (woken to stop)
    t = classify(stopped, mem, 5000, 0.0, classify_syscall(stopped.syscall, gil))
    assert t.waiting + t.other == 5000 and t.other > 2000  # (the tick before it stopped: half each, the rules guess)
    t = classify(stopped._replace(moved=False), mem, 5000, 0.0, classify_syscall(stopped.syscall, gil))
    assert t.other == 5000
    continued = reading(1.04, syscall="202 0x7f04 0x80", state="S")
    t = classify(continued, mem, 5000, 0.0, classify_syscall(continued.syscall, gil))
    assert t.waiting + t.other == 5000 and t.waiting > 2000
    t = classify(continued._replace(moved=False), mem, 5000, 0.0, classify_syscall(continued.syscall, gil))
    assert t.waiting == 5000
