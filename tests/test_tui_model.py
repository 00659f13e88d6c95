"""The live view's model and navigation, without an app (no Textual needed)."""

from __future__ import annotations

import subprocess
import sys
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


def test_long_history_prefix_sums_and_forgetting():
    h = History(max_thread_ticks=1000)
    h.add(header())
    states = ["running", "waiting", "sleep"]
    for i in range(2000):
        h.add_tick(Tick((i + 1) * DT, DT, [make_thread_tick(1, DT, states[i % 3])], [], []))
    assert h.base > 0  # the oldest ticks were let go
    s = h.threads[1]
    assert s.ticks == len(s.codes) <= 2000
    # sums over a long range match a direct count
    t1 = h.t_last
    t0 = h.t_start + 100 * DT
    st = h.thread_stats(s, t0, t1)
    assert st.running == pytest.approx(1 / 3, abs=0.01) and st.waiting == pytest.approx(1 / 3, abs=0.01)
    # a one-second cell over the kept history still shows a state
    c = (t1 - 1) // 1_000_000
    assert h.thread_cells(s, 1_000_000, c, c)[0] & STATE_MASK in (RUNNING, WAITING, SLEEP)


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
