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
from gilviz.probes.threads import ThreadReading
from gilviz.stream import ThreadTick

DATA = json.loads(gzip.open(Path(__file__).parent / "data" / "readings.json.gz", "rt").read())
NAMES = {int(tid): name for tid, name in DATA["names"].items()}


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
    equals what schedstat reported, give or take what is still pending at the end."""
    for name, calls in by_thread.items():
        ticks = replay_thread(calls)
        reported = (calls[-1]["reading"][2] - calls[0]["before"]["on_ns"]) // 1000
        if calls[0]["first"]:
            reported = calls[-1]["reading"][2] // 1000
        placed = sum(t.oncpu for t in ticks)
        assert abs(placed - reported) <= MAX_PENDING_US + len(ticks), (name, placed, reported)


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
