"""Each built-in scenario, recorded for a couple of seconds: the measured states show its point."""

import pytest

from conftest import assert_native_once_the_gil_is_read, find_python, python_or_skip, threads_named
from gilviz.cli.options import build_command
from gilviz.errors import UserError
from gilviz.collect import load
from gilviz.report import summarize
from gilviz.scenarios import SCENARIOS, option_error
from gilviz.session import Settings, record_to_file
from gilviz.target import query_interpreter


def record_scenario(tmp_path, *target, python=None, duration=2.0):
    import sys

    interp = query_interpreter(python or sys.executable)
    path = tmp_path / "scenario.gilviz"
    record_to_file(str(path), Settings(duration_s=duration), command=build_command(list(target), interp), interp=interp)
    rec = load(str(path))
    return summarize(rec), rec


def test_cpu_threads(tmp_path):
    summary, _ = record_scenario(tmp_path, "cpu-threads", "--threads", "3")
    assert summary["target"]["scenario"] == "cpu-threads"
    assert summary["gil"]["held"] > 0.9
    spinners = threads_named(summary, "cpu-")
    assert len(spinners) == 3
    for t in spinners:  # each waits for the GIL while another holds it (and on a busy machine for a core too)
        assert t["waiting"] > 0.25 and 0.45 < t["waiting"] + t["runnable"] < 0.9, t
    assert sum(t["running"] for t in spinners) < 1.1  # about one core's worth, never more
    assert summary["throughput"]["unit"] == "loops" and summary["throughput"]["per_s"] > 0


def test_cpu_processes(tmp_path):
    summary, rec = record_scenario(tmp_path, "cpu-processes", "--processes", "2")
    root = summary["target"]["pid"]
    workers = {g["pid"] for g in summary["gils"] if g["pid"] != root and g.get("held", 0) > 0.7}
    assert len(workers) >= 2, summary["gils"]
    # each process holds its own GIL at the same time as the other
    both = [t for t in rec.ticks if sum(1 for g in t.gils if g.pid in workers and g.held * 2 > g.samples) >= 2]
    assert len(both) > 0.5 * len(rec.ticks)
    busy = [t for t in summary["threads"] if t["pid"] in workers and t["running"] > 0.1]
    assert len(busy) >= 2
    for t in busy:  # never waiting for a GIL of their own: on a core, or waiting for one
        assert t["waiting"] < 0.05 and t["running"] + t["runnable"] > 0.9, t
    # where the machine gave them more than a core (a busy one may not), they are seen on two at once
    if sum(t["running"] for t in busy) > 1.3:
        tids = {t["tid"] for t in busy}
        apart = [t for t in rec.ticks if len({th.cpu for th in t.threads if th.tid in tids and th.running > 0}) >= 2]
        assert len(apart) >= 10


def test_io_threads(tmp_path):
    summary, _ = record_scenario(tmp_path, "io-threads", "--threads", "8")
    root = summary["target"]["pid"]
    workers = [t for t in threads_named(summary, "io-") if t["pid"] == root]
    assert len(workers) == 8, workers
    for t in workers:
        assert t["blocked"] > 0.8, t
        assert t["blocked_by"]["io"] + t["blocked_by"]["sleep"] > 0.8, t
    assert summary["gil"]["held"] < 0.3
    assert summary["throughput"]["per_s"] > 50  # many requests in flight


def test_convoy(tmp_path):
    summary, _ = record_scenario(tmp_path, "convoy", "--ramp", "0.7", "--cpu-threads", "2", duration=2.2)
    (io_thread,) = [t for t in summary["threads"] if t["name"] == "io"]
    assert io_thread["waiting"] > 0.15, io_thread  # each wake-up waits for the GIL
    rates = summary["result"]
    alone = rates["round trips/s with 0 cpu threads"]
    # CPU threads slow the I/O thread's round trips (beside two CPU hogs, where they hardly get a
    # core, not at every count: 10,002 alone, 187 with 1, 4,326 with 2)
    loaded = min(rates["round trips/s with 1 cpu thread"], rates["round trips/s with 2 cpu threads"])
    assert alone > 3 * loaded, rates


def test_race_loses_updates(tmp_path):
    summary, _ = record_scenario(tmp_path, "race", "--threads", "4")
    assert summary["result"]["lost"] > 0
    assert summary["result"]["actual"] + summary["result"]["lost"] == summary["result"]["expected"]
    adders = threads_named(summary, "adder-")
    assert len(adders) == 4
    for t in adders:  # they interleave: each holds the GIL in turn
        assert 0.1 < t["gil_held"] < 0.5, t
        # and waits for it the rest, or for a core (0.31 waiting, the rest runnable, beside two CPU hogs)
        assert t["waiting"] > 0.2 and t["waiting"] + t["runnable"] > 0.4, t


def test_lock_fixes_the_race(tmp_path):
    summary, _ = record_scenario(tmp_path, "lock", "--threads", "4")
    assert summary["result"]["lost"] == 0
    adders = threads_named(summary, "adder-")
    assert len(adders) == 4
    # blocked on the lock, a state of its own (how much depends on how often the GIL changes
    # hands inside the critical section, so on the machine's load: seen 0.003 to 0.2, and none
    # beside two CPU hogs), wherever the adders found it taken (they count the times)
    waits = summary["result"]["lock waits"]
    if waits < 100:
        pytest.skip(f"the adders found the lock taken {waits} times: too few to be seen blocked on it")
    assert sum(t["blocked_by"]["lock"] for t in adders) > 0, waits


def test_native_release(tmp_path):
    summary, rec = record_scenario(tmp_path, "native-release", "--threads", "2")
    workers = threads_named(summary, "hash-")
    assert len(workers) == 2
    for t in workers:  # their time on a core is native (how much they get is the machine's)
        on_cpu = t["cpu_s"] / t["lifetime_s"]
        assert t["native"] > 0.6 * on_cpu and t["native"] > t["running"] + t["waiting"], t
    assert_native_once_the_gil_is_read(rec, [t["tid"] for t in workers])  # (all of it, from the GIL read on)
    # where the machine gave them more than a core (a busy one may not), they are seen on two at once
    if sum(t["native"] for t in workers) > 1.3:
        tids = {t["tid"] for t in workers}
        apart = [t for t in rec.ticks
                 if len({th.cpu for th in t.threads if th.tid in tids and th.native * 2 >= t.dt}) == 2]
        assert len(apart) >= 10


def test_asyncio(tmp_path):
    summary, _ = record_scenario(tmp_path, "asyncio")
    (loop,) = [t for t in summary["threads"] if t["name"] == "event-loop"]
    pool = [t for t in summary["threads"] if t["name"].startswith("pool")]
    # the loop is the busy one (5 times any pool thread's CPU on an idle machine; under 2 with both
    # cores kept busy by other work, where the loop gets less of one)
    assert loop["cpu_s"] > 1.5 * max(t["cpu_s"] for t in pool)
    assert pool and all(t["blocked_by"]["io"] > 0.7 for t in pool), pool


def test_pools(tmp_path):
    summary, _ = record_scenario(tmp_path, "pools", "--phase", "0.9", duration=2.0)
    root = summary["target"]["pid"]
    pool_threads = [t for t in threads_named(summary, "pool-thread") if t["pid"] == root]
    busy = [t for t in pool_threads if t["gil_held"] > 0.15]
    assert len(busy) >= 2, pool_threads  # threads taking turns on the GIL
    # worker processes each with a GIL of its own, held while they work (0.96 to 0.98 of their lives
    # on an idle machine; 0.29 and 0.40 beside two CPU hogs, waiting for work the parent hands out)
    processes = [g for g in summary["gils"] if g["pid"] != root and g.get("held", 0) > 0.15]
    assert len(processes) >= 2, summary["gils"]


def test_many_threads(tmp_path):
    summary, _ = record_scenario(tmp_path, "many-threads")
    sleepers = threads_named(summary, "sleeper-")
    assert len(sleepers) == 100
    assert all(t["blocked_by"]["sleep"] > 0.9 for t in sleepers)
    assert summary["tick_hz"] > 100  # 200 asked: a busy machine may give the sampler less


def test_switch_interval(tmp_path):
    summary, rec = record_scenario(tmp_path, "switch-interval", "--interval", "1,20", "--step", "0.9", duration=1.8)
    root = summary["target"]["pid"]
    changes = sorted((p.t, p.switch_interval_us) for p in rec.proc_history if p.pid == root)
    assert {interval for _, interval in changes} >= {1000, 20000}, changes
    rates = {}
    for interval in (1000, 20000):
        spans = [(t, next((t2 for t2, _ in changes if t2 > t), float("inf"))) for t, i in changes if i == interval]
        ticks = [tick for tick in rec.ticks if any(a + 100_000 <= tick.t < b for a, b in spans)]
        switches = sum(g.switches for tick in ticks for g in tick.gils if g.pid == root)
        rates[interval] = switches / (sum(t.dt for t in ticks) / 1e6)
    # (seen 10x on an idle machine, 3.6x with another core busy, 1.6x beside two CPU hogs: waiters
    # take the GIL when they get a core)
    assert rates[1000] > rates[20000], rates


@pytest.mark.parametrize("version", ["3.12", "3.13", "3.14", "3.15"])
def test_subinterpreters(tmp_path, version):
    python = python_or_skip(version)
    summary, rec = record_scenario(tmp_path, "subinterpreters", "--interpreters", "2", python=python)
    workers = threads_named(summary, "interp-")
    assert len(workers) == 2
    for t in workers:  # each holds a GIL of its own, at the same time as the other
        assert t["gil_held"] > 0.5, (t, rec.proc_history)
        assert t["running"] > 2 * t["native"], t
    # one GIL per interpreter that has its own, each held by its own thread, both at once
    root = summary["target"]["pid"]
    own = [g for g in summary["gils"] if g["pid"] == root and g["interp"]]
    assert len(own) == 2 and all(g["held"] > 0.5 for g in own), summary["gils"]
    assert all(g["label"] == f"pid {root} interpreter {g['interp']}" for g in own)
    holders = {g.interp: g.holder for tick in rec.ticks for g in tick.gils if g.interp and g.holder}
    assert sorted(holders.values()) == sorted(t["tid"] for t in workers), holders
    both = sum(1 for tick in rec.ticks if sum(1 for g in tick.gils if g.interp and g.held * 2 > g.samples) == 2)
    assert both > 0.5 * len(rec.ticks)


def test_scenarios_that_cannot_run_here_say_why():
    path = find_python("3.11") or find_python("3.10") or find_python("3.9")
    if path is None:
        pytest.skip("no CPython older than 3.12 on PATH or in pyenv's or uv's folders")
    old = query_interpreter(path)
    with pytest.raises(UserError, match="needs CPython 3.12 or later.*--python 3.12"):
        build_command(["subinterpreters"], old)
    if not old.free_threaded:
        with pytest.raises(UserError, match="free-threaded.*3.13t"):
            build_command(["free-threaded"], old)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_scenarios_options_are_checked_before_it_starts(name):
    """By the workload's own parser, loaded here: a wrong option is said in one line before
    anything runs, where the workload would print it among its output and exit 2."""
    import os
    import sys

    from gilviz.scenarios import WORKLOADS_DIR

    def workloads_modules():
        return {name for name, m in list(sys.modules.items())
                if os.path.dirname(getattr(m, "__file__", None) or "") == WORKLOADS_DIR}

    before, path = workloads_modules(), list(sys.path)
    assert option_error(name, []) is None
    said = option_error(name, ["--no-such-option", "3"])
    assert said == f"{name}: unrecognized arguments: --no-such-option 3; its options: `gilviz run {name} --help`"
    assert workloads_modules() == before and sys.path == path  # (_common and the like not left in gilviz's)
