"""The presenters (gilviz/timeline/present.py): what a view shows beside its cells, without an app."""

from gilviz.stream import End, GilTick, Header, Process, Progress, Stack, StackEntry, Stats, Thread, Tick
from gilviz.timeline import present
from gilviz.timeline.store import History, make_thread_tick
from gilviz.timeline.view import View

DT = 5000


def run(ticks=200, ended=True):
    h = History()
    h.add(Header(command="spin.py", cpus=2, pid=10, python_version="3.14.0"))
    h.add(Process(pid=10, python="3.14.0", gil="located", gil_found_by="debug offsets", switch_interval_us=5000))
    h.add(Thread(0, 11, 10, "spin-1"))
    h.add(Thread(0, 12, 10, "spin-2"))
    for i in range(ticks):
        holder = 11 if (i // 2) % 2 == 0 else 12
        threads = [make_thread_tick(11, DT, "running" if holder == 11 else "waiting", cpu=0),
                   make_thread_tick(12, DT, "running" if holder == 12 else "waiting", cpu=1)]
        h.add(Tick((i + 1) * DT, DT, threads, [GilTick(10, 10, 10, 9, 1 if i % 2 else 0, 0, holder)],
                   [DT * 2, DT * 2] if i % 10 == 9 else []))
    h.add(Stats(ticks * DT, 0.11, 2400.0, 2400.0))
    h.add(Stack(500_000, 10, [StackEntry(11, "spin-1", "spin (spin.py:5)", True, True,
                                         ["spin (spin.py:5)", "run (threading.py:1)"])]))
    h.add(Progress(100_000, 10, "loops"))
    h.add(Progress(ticks * DT, 110, "loops", result={"lost": 0}))
    if ended:
        h.add(End(ticks * DT, "exited", 0, sampler_wall_s=1.0))
    return h


LIVE = present.SourceFacts("spin.py", live=True)


def text(spans):
    return "".join(t for t, _ in spans)


def test_header_says_as_much_as_fits():
    h = run(ended=False)
    wide, lines = present.header(h, View(), LIVE, 0.05, 200)
    assert lines == 1
    assert text(wide).startswith("● LIVE 1.0 s │ spin.py │ CPython 3.14.0 · GIL on (debug offsets), switch 5 ms")
    assert "GIL 2.4k/s" in text(wide) and "CPU: sampler 11%, view 5%" in text(wide)
    narrow, lines = present.header(h, View(), LIVE, 0.05, 60)
    assert lines == 2 and len(text(narrow)) <= 120 and "(debug offsets)" not in text(narrow)
    ended, _ = present.header(run(), View(), LIVE, None, 200)
    assert text(ended).startswith("■ ENDED (the target exited)") and ended[0][1] == "bold"
    replay, _ = present.header(run(ended=False), View(paused=True), present.SourceFacts("r.gilviz", False, 2.0), None, 200)
    assert text(replay).startswith("❚❚ PAUSED") and "r.gilviz: spin.py" in text(replay)
    # wide, one line, shortened as needed; where even the shortest is too long, two lines in full
    long = run(ended=False)
    long.add(End(200 * DT, "exited", 3, sampler_wall_s=1.0))
    long.header.command = "cpu-threads --threads 4 --size 50000"
    shapes = set()
    for width in range(70, 240):
        spans, lines = present.header(long, View(), LIVE, 0.2, width)
        assert len(text(spans)) <= lines * width
        assert lines == 1 or width < 118 or "CPython 3.14.0" in text(spans), (width, text(spans))
        shapes.add(lines)
    assert shapes == {1, 2}
    # zoomed in to where one step of a replay is several cells, the clock says which step
    fine, _ = present.header(run(ended=False), View(paused=True, zoom=1_000), present.SourceFacts("r.gilviz", False), None, 200)
    assert text(fine).startswith("❚❚ PAUSED 1.000 s"), text(fine)


def test_figures_of_the_time_shown():
    h = run()
    f = present.figures(h, View(), 100, 20)
    assert [r.kind for r in f.rows] == ["proc", "thread", "thread"]
    assert [row[0].name for row in f.table_rows] == ["spin-1", "spin-2"]
    spin1 = f.table_rows[0][1]
    assert abs(spin1.running - 0.5) < 0.02 and abs(spin1.waiting - 0.5) < 0.02
    assert f.table_rows[0][2] == "spin (spin.py:5)"  # the line it was on, from the last stack at or before
    assert f.gil_pid == 10 and f.gil_labels == ["GIL held by", "held 100%", "contended 90%", "hand-offs 100/s"]
    assert f.gil_figures["handoff_scale"] >= 100
    assert f.core_labels[0].split() == ["cpu0", "50%"]  # spin-1 ran on it half the time; nothing else did
    short = present.figures(h, View(), 100, 14)
    assert short.gil_labels[0] == "GIL holder" and short.gil_labels[3].endswith("swaps/s")


def test_info_explains_the_selection_or_the_scenario():
    h = run()
    view = View(selected=11)
    spans, stack_line = present.info(h, view, 100, LIVE, None)
    body = text(spans)
    assert body.startswith("A spin-1  tid 11 · pid 10\n") and "stack at 0.50 s (held the GIL):" in body
    assert "  run (threading.py:1)\n" in body and stack_line == "A spin-1: spin (spin.py:5) ← run (threading.py:1)"
    assert "work: 110 loops (111/s)" in body and "result: lost 0" in body and "The run ended: the target exited." in body

    class Scenario:
        name, summary, look_for = "cpu-threads", "one thread runs Python at a time", "the GIL changing hands"

    spans, stack_line = present.info(h, View(), 100, LIVE, Scenario())
    assert text(spans).startswith("cpu-threads: one thread runs Python at a time\nLook for: the GIL changing hands")
    assert stack_line == ""


def test_a_busy_machine_is_said_and_gilviz_itself_is_not_counted():
    h = run()
    quiet = present.Figures(others_cores=0.3, wanting_cores=0.5)
    assert present.outcome(h, quiet, own_cores=0.15).warning == ""  # 0.3 - 0.11 sampler - 0.15 view
    busy = present.Figures(others_cores=1.2, wanting_cores=0.5)
    warning = present.outcome(h, busy, own_cores=0.15).warning
    assert warning.startswith("⚠ other processes took 0.5 of a core while the target waited for one")
    idle = present.Figures(others_cores=1.2, wanting_cores=0.0)  # others busy, but the target wanted nothing
    assert present.outcome(h, idle).warning == ""


def test_results_read_as_their_scenario_means_them():
    line, big, caption = present.result_text({"expected": 200, "actual": 150, "lost": 50}, final=True)
    assert (line, big, caption) == ("lost 50 of 200 updates (25%)", "50", "updates lost, of 200 (25%)")
    line, big, caption = present.result_text({"round trips/s with 0 cpu threads": 2400.0,
                                              "round trips/s with 2 cpu threads": 300.0}, final=False)
    assert line.endswith("so far") and big == "8.0x"
    assert caption == "round trips/s with 0 cpu threads (2,400) over round trips/s with 2 cpu threads (300)"
    assert present.result_text({"async": 10, "blocking": 2}, final=True) == ("async: 10; blocking: 2", None, "")


def test_the_sentence_printed_after_the_screen_says_each_thing_once():
    lost = present.Outcome("work: 200 increments (100/s)", *present.result_text(
        {"expected": 200, "actual": 150, "lost": 50}, final=True))
    assert lost.sentence == "lost 50 of 200 updates (25%) · work: 200 increments (100/s)"
    ratio = present.Outcome("work: 9 round trips", *present.result_text(
        {"a/s": 2400.0, "b/s": 300.0, "c/s": 30.0}, final=True))
    assert ratio.sentence == "a/s (2,400) over c/s (30): 80.0x · a/s: 2,400; b/s: 300; c/s: 30 · work: 9 round trips"
    assert present.Outcome("work: 3 loops").sentence == "work: 3 loops"
