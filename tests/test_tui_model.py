"""The live view's model and navigation, without an app (no Textual needed)."""

from __future__ import annotations

import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from gilviz.collect import load
from gilviz.stream import End, GilTick, Header, Process, Thread, Tick
from gilviz.recording import read
from gilviz.timeline.store import (CODE_NAMES, GONE, HELD_BIT, OCCUPIED, OTHERS, RUNNING, SLEEP, STATE_MASK, WAITING,
                              History, core_share, make_thread_tick)
from gilviz.sources import Feed, RecordsSource, ReplaySource
from gilviz.timeline.view import View, build_rows

FIXTURE = Path(__file__).parent / "data" / "threads.gilviz"
DT = 5000


def header(cpus: int = 2, pid: int = 100) -> Header:
    return Header(command="demo.py", cpus=cpus, pid=pid, python_version="3.12.0")


def feed(h: History, n: int, states: dict[int, str], t0: int = 0, cpu_of=None, gils=None) -> None:
    for i in range(n):
        t = t0 + (i + 1) * DT
        threads = [make_thread_tick(tid, DT, state, cpu=(cpu_of or {}).get(tid, 0)) for tid, state in states.items()]
        h.add_tick(Tick(t, DT, threads, gils or [], []))


def names(cells: bytes) -> list[str]:
    return [CODE_NAMES[c & STATE_MASK] for c in cells]


def test_cells_sum_every_tick_and_mark_the_gil():
    h = History()
    h.add(header())
    h.add(Thread(0, 1, 100, "a"))
    feed(h, 4, {1: "running"})
    feed(h, 4, {1: "waiting"}, t0=4 * DT)
    s = h.threads[1]
    # 10 ms cells hold two ticks each: running, running, waiting, waiting
    cells = h.thread_cells(s, 10_000, 0, 3)
    assert names(cells) == ["running", "running", "waiting", "waiting"]
    assert cells[0] & HELD_BIT and not cells[3] & HELD_BIT
    # a 40 ms cell holds all 8 ticks: 4 running, 4 waiting -> a tie goes to the first state
    mixed = h.thread_cells(s, 20_000, 0, 1)
    assert names(mixed) == ["running", "waiting"]
    # 1 ms cells are finer than the 5 ms ticks: each shows the tick that covers it
    fine = h.thread_cells(s, 1_000, 0, 9)
    assert names(fine) == ["running"] * 10


def test_majority_by_time_not_by_label():
    h = History()
    h.add(header())
    # one tick mostly sleeping, a little running: the cell is sleep, and not held
    h.add_tick(Tick(DT, DT, [make_thread_tick(1, DT, "sleep")], [], []))
    from gilviz.stream import ThreadTick

    h.add_tick(Tick(2 * DT, DT, [ThreadTick(1, 0, 2000, 0, 0, 0, 3000, 0, 0, 0, 2000, 2000)], [], []))
    (cell,) = h.thread_cells(h.threads[1], 10_000, 0, 0)
    assert cell & STATE_MASK == SLEEP and not cell & HELD_BIT
    st = h.thread_stats(h.threads[1], 0, 2 * DT)
    assert st.running == pytest.approx(0.2, abs=0.01)
    assert st.blocked == pytest.approx(0.8, abs=0.01) and st.blocked_by == "sleep"


def test_gone_threads_and_gaps():
    h = History()
    h.add(header())
    feed(h, 2, {1: "running", 2: "sleep"})
    feed(h, 2, {1: "running"}, t0=2 * DT)  # thread 2 is gone
    s2 = h.threads[2]
    assert names(h.thread_cells(s2, 5_000, 0, 3)) == ["sleep", "sleep", "gone", "gone"]
    assert h.thread_stats(s2, 0, 4 * DT).state == "gone"
    assert h.thread_stats(h.threads[1], 0, 4 * DT).state == "running"


def test_cores_show_the_thread_with_most_time_and_other_processes():
    h = History()
    h.add(header(cpus=2))
    for tid in (1, 2):
        h.add(Thread(0, tid, 100, f"t{tid}"))
    feed(h, 10, {1: "running", 2: "sleep"}, cpu_of={1: 0, 2: 1})
    # a load reading: core 1 was busy 40 ms of the 50 with something else
    h.add_tick(Tick(11 * DT, DT, [make_thread_tick(1, DT, "running", cpu=0), make_thread_tick(2, DT, "sleep", cpu=1)],
                    [], [0, 0]))
    feed(h, 9, {1: "running", 2: "sleep"}, t0=11 * DT, cpu_of={1: 0, 2: 1})
    h.add_tick(Tick(21 * DT, DT, [make_thread_tick(1, DT, "running", cpu=0), make_thread_tick(2, DT, "sleep", cpu=1)],
                    [], [50_000, 40_000]))
    core0 = h.core_cells(h.cores[0], 50_000, 1, 1)
    assert core0 == [(OCCUPIED, h.threads[1].serial + 1)]
    (kind, _), = h.core_cells(h.cores[1], 50_000, 1, 1)
    assert kind == OTHERS
    target, other = core_share(h, h.cores[1], 11 * DT, 21 * DT)
    assert target == 0 and other == pytest.approx(0.8, abs=0.02)


def test_gil_cells_holder_and_rates():
    h = History()
    h.add(header())
    for tid in (1, 2):
        h.add(Thread(0, tid, 100, f"t{tid}"))
    for i in range(4):
        holder = 1 if i < 2 else 2
        states = {1: "running" if holder == 1 else "waiting", 2: "running" if holder == 2 else "waiting"}
        feed(h, 1, states, t0=i * DT, gils=[GilTick(100, 50, 50, 40, 1 if i == 2 else 0)])
    cells = h.gil_cells(h.gils[100], 10_000, 0, 1)
    assert [c[1] for c in cells] == [h.threads[1].serial + 1, h.threads[2].serial + 1]
    assert cells[0][2] == pytest.approx(1.0) and cells[0][3] == pytest.approx(0.8)
    assert cells[1][4] == pytest.approx(100.0)  # one hand-off in 10 ms
    stats = h.gil_stats(100, 0, 4 * DT)
    assert stats["held"] == pytest.approx(1.0) and stats["handoffs_per_s"] == pytest.approx(50.0)


def test_each_subinterpreter_gil_gets_a_row_with_its_holder():
    h = History()
    h.add(header())
    h.add(Process(pid=100, gil="located", gil_found_by="debug offsets", interpreters=[1, 2]))
    for tid, name in ((1, "MainThread"), (2, "interp-1"), (3, "interp-2")):
        h.add(Thread(0, tid, 100, name))
    gils = [GilTick(100, 10, 0, 0, 0), GilTick(100, 10, 10, 0, 0, 1, 2), GilTick(100, 10, 9, 0, 0, 2, 3)]
    feed(h, 4, {1: "sleep", 2: "running", 3: "running"}, gils=gils)
    rows = build_rows(h, {}, View())
    assert [(r.kind, r.interp) for r in rows[:3]] == [("proc", 0), ("gil", 1), ("gil", 2)]
    # the interpreters' GILs are held at once, each by its own thread; the main GIL is free
    one = h.gil_cells(h.interp_gils[100, 1], 10_000, 0, 1)
    two = h.gil_cells(h.interp_gils[100, 2], 10_000, 0, 1)
    assert [c[1] for c in one] == [h.threads[2].serial + 1] * 2
    assert [c[1] for c in two] == [h.threads[3].serial + 1] * 2
    assert [c[2] for c in two] == [pytest.approx(0.9)] * 2
    assert [c[1] for c in h.gil_cells(h.gils[100], 10_000, 0, 1)] == [0, 0]


def test_long_history_block_sums_and_forgetting():
    h = History(max_thread_ticks=1000)
    h.add(header())
    states = ["running", "waiting", "sleep"]
    for i in range(2000):
        h.add_tick(Tick((i + 1) * DT, DT, [make_thread_tick(1, DT, states[i % 3])], [], []))
    s = h.threads[1]
    assert s.ticks == len(s.codes) <= 1000  # bounded
    # sums over a long range match a direct count
    t1 = h.t_last
    t0 = h.t_start + 100 * DT
    st = h.thread_stats(s, t0, t1)
    assert st.running == pytest.approx(1 / 3, abs=0.01) and st.waiting == pytest.approx(1 / 3, abs=0.01)
    # a one-second cell over the kept history still shows a state
    c = (t1 - 1) // 1_000_000
    assert h.thread_cells(s, 1_000_000, c, c)[0] & STATE_MASK in (RUNNING, WAITING, SLEEP)


def test_old_time_is_kept_coarser_within_the_bound_and_still_reads_right():
    """An hour-long run in a bounded store: old ticks merge into longer ones, the recent ones
    stay as they came, and every figure of old time is still the one recorded."""
    cap = 6_000
    h = History(max_thread_ticks=cap)
    h.add(header())
    h.add(Process(pid=100, python="3.12.0", gil="located", switch_interval_us=5000))
    for tid, name in ((1, "sleeper"), (2, "worker")):
        h.add(Thread(0, tid, 100, name))
    n = 60_000  # 5 minutes of 5 ms ticks, 2 threads: 20 times the bound
    for i in range(n):
        t = (i + 1) * DT
        first_minute = t <= 60_000_000
        # the worker: running for the first minute, then running one tick in four, waiting between
        worker = "running" if first_minute or i % 4 == 0 else "waiting"
        sleeper = "sleep" if first_minute else "io"
        gil = GilTick(100, 10, 10 if worker == "running" else 9, 0 if first_minute else 10, 1, 0, 2)
        h.add_tick(Tick(t, DT, [make_thread_tick(1, DT, sleeper), make_thread_tick(2, DT, worker, cpu=1)], [gil],
                        [DT * 2, DT * 2] if i % 10 == 9 else []))
        assert sum(s.ticks for s in h.order) <= cap + 2  # never over the bound (a tick's threads at most)
    worker, sleeper = h.threads[2], h.threads[1]
    # the block sums kept up to date merge after merge are those a full count gives
    for series in h.order:
        kept = array("q", series.blocks)
        series.rebuild_blocks(h.dts, series.start - h.base)
        assert kept == series.blocks
    # the whole run is still there, from its first tick; each tick's midpoint where it is
    assert h.t_start == 0 and h.t_last == n * DT
    assert h.mids == array("q", [t - d // 2 for t, d in zip(h.times, h.dts)]) and len(h.mids) == len(h.times)
    # old time is coarser, recent time is at full detail
    assert max(h.dts) >= 100_000 and all(d == DT for d in h.dts[-200:])
    # figures over old time and over the whole run are what was recorded
    first = h.thread_stats(worker, 0, 60_000_000)
    assert first.running == pytest.approx(1.0, abs=0.01) and first.life == pytest.approx(60e6, rel=0.01)
    later = h.thread_stats(worker, 60_000_000, n * DT)
    assert later.running == pytest.approx(0.25, abs=0.02) and later.waiting == pytest.approx(0.75, abs=0.02)
    whole = h.thread_stats(worker, 0, n * DT)
    assert whole.running == pytest.approx((60 + 240 * 0.25) / 300, abs=0.02)
    assert whole.cpu_s == pytest.approx(60 + 240 * 0.25, rel=0.02)
    assert h.thread_stats(sleeper, 0, 60_000_000).blocked_by == "sleep"
    assert h.thread_stats(sleeper, 0, n * DT).blocked == pytest.approx(1.0, abs=0.01)
    gil = h.gil_stats(100, 0, 60_000_000)
    assert gil["held"] == pytest.approx(1.0) and gil["contended"] == 0
    assert h.gil_stats(100, 60_000_000, n * DT)["contended"] == pytest.approx(1.0)
    assert h.gil_stats(100, 0, n * DT)["handoffs_per_s"] == pytest.approx(200, rel=0.02)
    # scrolling back: one-second cells of the first minute show what happened then
    assert set(names(h.thread_cells(sleeper, 1_000_000, 0, 58))) == {"sleep"}
    assert set(names(h.thread_cells(sleeper, 1_000_000, 62, 120))) == {"io"}
    assert set(names(h.thread_cells(worker, 1_000_000, 0, 58))) == {"running"}
    assert set(names(h.thread_cells(worker, 1_000_000, 62, 120))) == {"waiting"}
    core = h.cores[1]
    assert core_share(h, core, 0, 60_000_000)[0] == pytest.approx(1.0, abs=0.01)
    # zoomed in on old time, a cell shows the longer tick that covers it; on recent time, each tick
    assert set(names(h.thread_cells(worker, 1_000, 10_000, 10_050))) == {"running"}
    recent = names(h.thread_cells(worker, DT, n - 8, n - 1))
    assert recent.count("running") == 2 and recent.count("waiting") == 6


def test_fixture_reads_and_matches_the_report():
    from gilviz.collect import load
    from gilviz.report import summarize

    h = History()
    h.extend(read(FIXTURE))
    summary = summarize(load(FIXTURE))
    assert h.ended and h.describe_end() == "the target exited"
    for th in summary["threads"]:
        st = h.thread_stats(h.threads[th["tid"]], h.t_start, h.t_last)
        # the same measured shares, within the view's quantization
        assert st.running == pytest.approx(th["running"], abs=0.02)
        assert st.waiting == pytest.approx(th["waiting"], abs=0.02)
        assert st.blocked == pytest.approx(th["blocked"], abs=0.02)


def test_view_navigation():
    h = History()
    h.add(header())
    feed(h, 400, {1: "running"})  # 2 s
    v = View()
    assert v.window(h, 400) == (0, 399)  # shorter than the lanes: time 0 on the left, never before
    assert v.following and v.window(h, 100) == ((h.t_last - 1) // 10_000 - 99, (h.t_last - 1) // 10_000)
    v.scroll(h, -50)
    assert v.paused and v.end_t == h.t_last - 50 * 10_000
    v.scroll(h, -10_000)
    assert v.end_t == h.t_start + v.zoom  # clamped at the start
    v.zoom_by(h, 1, 100)
    assert v.zoom == 20_000
    v.go_start(h, 100)
    assert v.end_t == h.t_start + 100 * v.zoom
    assert v.fit(h, 80) and v.zoom == 25_000  # 2 s in 80 cells, from time 0
    assert v.window(h, 80) == (0, 79) and v.end_t == h.t_last
    assert not v.fit(h, 80)  # fits already
    v.zoom_by(h, -1, 80)
    assert v.zoom == 20_000  # the keys step through their own zooms again
    v.follow()
    assert v.following and not v.paused
    rows = build_rows(h, {}, v)
    assert [r.kind for r in rows] == ["proc", "thread"]
    v.grouped = False
    assert [r.kind for r in build_rows(h, {}, v)] == ["thread"]


def test_feed_coalesces_and_drops_stale_generations():
    wakes = []
    f = Feed(lambda: wakes.append(1))
    gen = f.next_generation()
    for i in range(5):
        f.push(gen, {"k": "x", "i": i})
    assert len(wakes) == 1 and [r["i"] for r in f.take()] == list(range(5))
    f.push(gen - 1, {"k": "old"})
    assert f.take() == []


def test_replay_source_plays_everything_at_speed_zero():
    got = []
    ReplaySource(str(FIXTURE), speed=0).run(got.append)
    assert isinstance(got[0], Header) and isinstance(got[-1], End)
    assert sum(isinstance(r, Tick) for r in got) == len(load(FIXTURE).ticks)
    records = [{"k": "header", "format": 1}, {"k": "end", "reason": "stopped"}]
    got = []
    RecordsSource(records).run(got.append)
    assert [type(r) for r in got] == [Header, End] and got[1].reason == "stopped"


def test_model_imports_no_textual():
    code = ("import sys, gilviz.timeline.store, gilviz.timeline.view, gilviz.sources, gilviz.cli.live; "
            "assert 'textual' not in sys.modules, 'textual imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_thread_before_and_after_its_life_is_gone_and_drawn_blank():
    from gilviz.tui.theme import GLYPH_LIST

    h = History()
    h.add(header())
    feed(h, 2, {1: "running"})
    feed(h, 2, {1: "running", 2: "sleep"}, t0=2 * DT)
    feed(h, 2, {1: "running"}, t0=4 * DT)
    cells = h.thread_cells(h.threads[2], DT, 0, 5)
    assert names(cells) == ["gone", "gone", "sleep", "sleep", "gone", "gone"]
    assert CODE_NAMES[GONE] == "gone" and GLYPH_LIST[GONE] == " "


def test_entry_points_refuse_bad_input_before_the_screen_opens(tmp_path):
    from gilviz.errors import UserError
    from gilviz.cli.live import TUI_COMMANDS

    assert set(TUI_COMMANDS) == {"run", "attach", "replay", "compare"}
    with pytest.raises(UserError, match="no script at nope.py"):
        TUI_COMMANDS["run"](["nope.py"])
    with pytest.raises(UserError, match="--rate must be a number above 0"):
        TUI_COMMANDS["run"](["--rate", "0", "x.py"])
    with pytest.raises(UserError, match="attach needs a process id"):
        TUI_COMMANDS["attach"](["abc"])
    with pytest.raises(UserError, match="no process 999999999"):
        TUI_COMMANDS["attach"](["999999999"])  # gone: said before the screen opens
    with pytest.raises(UserError, match="no recording at"):
        TUI_COMMANDS["replay"]([str(tmp_path / "missing.gilviz")])
    bad = tmp_path / "bad.gilviz"
    bad.write_bytes(b"not a recording\n")
    with pytest.raises(UserError, match="not a gilviz recording"):
        TUI_COMMANDS["replay"]([str(bad)])
    with pytest.raises(UserError, match="--speed"):
        TUI_COMMANDS["replay"]([str(FIXTURE), "--speed", "-1"])


def test_merging_keeps_every_threads_totals_with_uneven_ticks_and_threads_that_come_and_go():
    import random

    rng = random.Random(7)
    h = History(max_thread_ticks=5_000)
    h.add(header())
    exact: dict[int, list[int]] = {}  # tid -> [running us, life us]
    t = 0
    for i in range(40_000):
        dt = rng.randint(4_000, 6_000)
        t += dt
        rows = []
        for tid in (1, 2, 3):
            if tid == 2 and not 5_000 <= i < 30_000:  # born late, gone early
                continue
            if tid == 3 and i >= 12_000:  # gone early
                continue
            run = rng.randint(0, dt)
            rows.append(make_thread_tick(tid, dt, "waiting", cpu=tid % 2)._replace(running=run, waiting=dt - run,
                                                                               held=run, oncpu=run))
            acc = exact.setdefault(tid, [0, 0])
            acc[0] += run
            acc[1] += dt
        h.add_tick(Tick(t, dt, rows, [], []))
    assert max(h.dts) >= 100_000  # merged
    for series in h.order:
        kept = array("q", series.blocks)
        series.rebuild_blocks(h.dts, series.start - h.base)
        assert kept == series.blocks, series.name
        off = series.start - h.base
        for _ in range(50):  # any range through the block sums: what adding up every tick gives
            la = rng.randrange(series.ticks)
            lb = rng.randrange(la, series.ticks + 1)
            assert series.sums(la, lb, h.dts, off) == series._block_sums(la, lb, h.dts, off), (la, lb)
        for la in range(0, series.ticks - 2, 7):  # (two ticks: a cell of the default zoom)
            assert series.sums(la, la + 2, h.dts, off) == series._block_sums(la, la + 2, h.dts, off), la
        st = h.thread_stats(series, 0, t)
        run_us, life_us = exact[series.tid]
        assert st.life == pytest.approx(life_us, rel=0.01), series.name
        assert st.running == pytest.approx(run_us / life_us, abs=0.01), series.name
        assert st.cpu_s == pytest.approx(run_us / 1e6, rel=0.02), series.name


def test_time_per_line_by_the_second_then_by_the_minute():
    """The lines pane's sums: each second's, merged into minutes past the last ten minutes, and
    totals that stay what was recorded."""
    from gilviz.stream import Line
    from gilviz.timeline import store

    h = History()
    h.add(Header(command="synthetic", cpus=2, pid=1, python_version="3.14.0"))
    h.add(Line(0, 1, "/w/a.py", 3, "spin"))
    h.add(Line(0, 2, "/w/a.py", 9, "read"))
    dt = 100_000  # 10 ticks a second, 15 minutes
    for i in range(15 * 60 * 10):
        t = (i + 1) * dt
        spin = make_thread_tick(10, dt, "running", cpu=0)._replace(line=1)
        read = make_thread_tick(11, dt, "waiting" if i % 2 else "sleep", cpu=1)._replace(line=2 if i % 3 == 0 else 0)
        h.add(Tick(t, dt, [spin, read], [], []))
    assert len(h.line_buckets) == store.LINE_SECONDS_KEPT and h.line_minutes
    whole, rate, (start, end) = h.line_figures(0, h.t_last)
    assert (start, end) == (0, h.t_last)
    by_line = {f.line: f for f in whole}
    assert by_line[3].held_s == pytest.approx(900) and by_line[3].waited_s == 0  # running holds the GIL
    # the reader, read one tick in three, waits half its life and sleeps the other half: 450 s each
    assert by_line[9].waited_s == pytest.approx(450, rel=0.01) and by_line[9].blocked_s == pytest.approx(450, rel=0.01)
    # a recent span is summed by its seconds, an old one by its minutes
    recent, _, (a, b) = h.line_figures(800_000_000, 805_000_000)
    assert (a, b) == (800_000_000, 806_000_000)
    assert {f.line: round(f.blocked_s + f.waited_s) for f in recent}[9] == 6
    old, _, (a, b) = h.line_figures(65_000_000, 70_000_000)
    assert (a, b) == (60_000_000, 71_000_000)  # from the start of its minute
    # the sums of seconds already over are kept and extended as the run goes on: the same figures as summed afresh
    for i in range(9000, 9000 + 25):
        h.add(Tick((i + 1) * dt, dt, [make_thread_tick(10, dt, "running", cpu=0)._replace(line=1)], [], []))
        kept = h.line_figures(0, h.t_last)
        saved, h._line_spans = h._line_spans, {}
        assert kept == h.line_figures(0, h.t_last)
        h._line_spans = saved
    # the table's line: the last line each thread was found on
    assert h.line_at(10, h.t_last).startswith("spin (a.py:3)") and h.line_at(11, h.t_last).startswith("read (a.py:9)")


def test_stack_dumps_are_kept_within_a_bound_and_share_their_texts():
    """py-spy's dumps of many threads, several a second, held all an hour, outgrew the history
    itself: the store keeps the latest up to a count of thread entries, each text once."""
    import tracemalloc

    from gilviz.stream import Stack, StackEntry
    from gilviz.timeline import store as store_module

    model = History()

    def dump(k: int) -> Stack:  # 64 threads on a handful of lines, each text a fresh string as decoded
        return Stack(k * 200_000, 1, [StackEntry(100 + i, f"worker-{i}", f"work (app.py:{10 + (i + k) % 7})", False,
                                                 True, [f"work (app.py:{10 + (i + k) % 7})", "run (threading.py:1010)"])
                                      for i in range(64)])

    tracemalloc.start()
    try:
        for k in range(4000):
            model.add(dump(k))
        full, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = sum(len(s.threads) for s in model.stacks)
    assert kept <= store_module.MAX_STACK_ENTRIES and len(model.stacks) < 4000
    assert full / kept < 250  # bytes an entry, its texts shared (about 180; with copies of them, about 370)
    latest = model.stack_at(100, 3999 * 200_000)
    assert latest is not None and latest[0] == 3999 * 200_000 and latest[1].line == f"work (app.py:{10 + 3999 % 7})"
    assert model.stack_at(100, 0)[0] == model.stacks[0].t > 0  # the oldest kept, for a click long ago


def test_cells_cached_before_a_merge_are_those_a_fresh_count_gives():
    """A merge of old ticks keeps the finished cells after the merged stretch: they must be the
    cells the merged history gives when counted again."""
    h = History(max_thread_ticks=3_000)
    h.add(header())
    h.add(Process(pid=100, python="3.12.0", gil="located", switch_interval_us=5000))
    for tid in (1, 2):
        h.add(Thread(0, tid, 100, f"t{tid}"))
    kinds = ("running", "waiting", "sleep", "io")
    zooms = (DT, 50_000, 1_000_000)
    for i in range(12_000):
        t = (i + 1) * DT
        h.add_tick(Tick(t, DT, [make_thread_tick(1, DT, kinds[(i // 7) % 4]), make_thread_tick(2, DT, kinds[(i // 3) % 4])],
                        [GilTick(100, 10, 5, 2, 1)], []))
        if i % 250 == 249:  # the screen reads the newest cells now and then, at several zooms
            for zoom in zooms:
                c1 = (t - 1) // zoom
                for s in h.order:
                    h.thread_cells(s, zoom, max(0, c1 - 150), c1)
                h.gil_cells(h.gils[100], zoom, max(0, c1 - 150), c1)
    t = h.t_last
    cached = {(s.tid, z): h.thread_cells(s, z, 0, (t - 1) // z) for s in h.order for z in zooms}
    gil_cached = {z: h.gil_cells(h.gils[100], z, 0, (t - 1) // z) for z in zooms}
    assert max(h.dts) > DT  # merges happened
    h.clear_caches()
    assert cached == {(s.tid, z): h.thread_cells(s, z, 0, (t - 1) // z) for s in h.order for z in zooms}
    assert gil_cached == {z: h.gil_cells(h.gils[100], z, 0, (t - 1) // z) for z in zooms}


def test_time_on_a_cpu_that_no_gil_sample_split_is_marked_unsplit():
    """The state rules count a thread's time on a CPU as running where no sample of its process's
    GIL split it (not located yet, lost, or not sampled in that tick): Python or C, unknown which.
    The model keeps those stretches per process, so that the lanes draw them apart from running."""
    from gilviz.timeline.present import figures

    h = History()
    h.add(header())
    h.add(Process(0, 100, python="3.12.0", gil="not located"))
    h.add(Process(0, 200, python="3.13.0", gil="no GIL"))  # free-threaded: running is any Python
    h.add(Process(0, 300, python=None, gil="not python"))
    for tid, pid in ((1, 100), (2, 200), (3, 300), (4, 100)):
        h.add(Thread(0, tid, pid, f"t{tid}"))
    sampled = [GilTick(100, 50, 50, 0, 0)]
    feed(h, 2, {1: "running", 2: "running", 3: "native", 4: "sleep"})  # 0..10 ms: the GIL not located yet
    h.add(Process(10_000, 100, python="3.12.0", gil="located"))
    feed(h, 4, {1: "running", 2: "running", 3: "native"}, t0=10_000, gils=sampled)  # 10..30: split
    # 30..35: located, not sampled (its row without samples; a subinterpreter's GIL's samples split nothing)
    feed(h, 1, {1: "running", 2: "running", 3: "native"}, t0=30_000,
         gils=[GilTick(100, 0, 0, 0, 0), GilTick(100, 40, 40, 0, 0, 1)])
    feed(h, 3, {1: "running", 2: "running", 3: "native"}, t0=35_000, gils=sampled)  # 35..50: split
    assert h.unsplit == {100: [[0, 10_000], [30_000, 35_000]]}
    # per cell, 2 where all its ticks were unsplit, 1 where some: 5 ms cells, the first two and the
    # seventh; 10 ms cells, the first and (one tick of two) the fourth
    assert h._unsplit_spans(100, 5_000, 0, 9)[0] == bytes([2, 2, 0, 0, 0, 0, 2, 0, 0, 0])
    assert h._unsplit_spans(100, 10_000, 0, 4)[0] == bytes([2, 0, 0, 1, 0])
    assert h._unsplit_spans(100, 5_000, 2, 5) is None  # nothing in the window: nothing to mark
    assert h._unsplit_spans(200, 5_000, 0, 9) is None and h._unsplit_spans(300, 5_000, 0, 9) is None
    # what its lane draws apart: the running cells among those (here all of them), none of a sleeper's
    assert h.unsplit_running_cells(h.threads[1], 10_000, 0, 4) == bytes([1, 0, 0, 1, 0])
    assert h.unsplit_running_cells(h.threads[4], 10_000, 0, 4) is None
    assert h.unsplit_running_cells(h.threads[3], 10_000, 0, 4) is None  # (not Python: native)
    # 20 ms cells: the first is half unsplit, drawn so (as a cell is drawn held at half); the second
    # a quarter: drawn running, as most of it was split
    assert h._unsplit_spans(100, 20_000, 0, 2)[0] == bytes([1, 1, 0])
    assert h.unsplit_running_cells(h.threads[1], 20_000, 0, 2) == bytes([1, 0, 0])
    assert h.unsplit_in(100, 0, 50_000) and not h.unsplit_in(100, 10_000, 30_000)
    st = h.thread_stats(h.threads[1], 10_000, 35_000)  # 4 ticks split, the last one not
    assert st.unsplit == pytest.approx(0.2) and st.unsplit_now and st.state == "running"
    assert h.thread_stats(h.threads[1], 0, 50_000).unsplit == pytest.approx(0.3)
    st = h.thread_stats(h.threads[1], 35_000, 50_000)
    assert not st.unsplit and not st.unsplit_now
    assert not h.thread_stats(h.threads[2], 0, 50_000).unsplit  # no GIL to split by: running is Python
    view = View()
    view.zoom = 5_000
    view.end_t = 50_000
    assert figures(h, view, 10, 10).unsplit_shown
    view.end_t = 30_000
    assert not figures(h, view, 4, 10).unsplit_shown  # 10..30 ms: every tick split
    # a process that ended is not marked past its end; a flapping one stays bounded, marked no less
    from gilviz.stream import ProcessEnd
    from gilviz.timeline import store

    h.add(ProcessEnd(50_000, 100))
    feed(h, 2, {1: "running"}, t0=50_000)
    assert h.unsplit[100][-1] == [30_000, 35_000]
    h2 = History()
    h2.add(header())
    h2.add(Process(0, 100, python="3.12.0", gil="located"))
    h2.add(Thread(0, 1, 100, "t1"))
    for i in range(2 * store.MAX_UNSPLIT_RANGES + 10):
        feed(h2, 1, {1: "running"}, t0=i * DT, gils=sampled if i % 2 else [])
    ranges = h2.unsplit[100]
    assert len(ranges) <= store.MAX_UNSPLIT_RANGES
    for i in range(0, 2 * store.MAX_UNSPLIT_RANGES + 10, 2):  # every unsampled tick still inside one
        assert any(a <= i * DT and (i + 1) * DT <= b for a, b in ranges), i
