"""gilviz export: the Perfetto trace against the report's totals, the screen as SVG against the
app's own screenshot, the asciicast against the app's frames, and bad input."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from gilviz.collect import replay_file
from gilviz.export.perfetto import CORES_PID, GIL_TID, UNSPLIT_NAME, state_name
from gilviz.report import Report
from gilviz.stream import STATES, State, Tick

DATA = Path(__file__).parent / "data"
RACE = DATA / "race.gilviz"
COMPARE = DATA / "compare.gilviz"


def gilviz(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "gilviz", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def assert_user_error(result, *words):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gilviz: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def trace_events(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        trace = json.load(f)
    assert trace["displayTimeUnit"] == "ms" and "traceEvents" in trace
    events = trace["traceEvents"]
    for ev in events:  # the trace-event format's fields for each kind used
        assert ev["ph"] in ("X", "M", "C", "i"), ev
        assert isinstance(ev["pid"], int), ev
        if ev["ph"] == "X":
            assert isinstance(ev["ts"], int) and ev["dur"] > 0 and isinstance(ev["tid"], int), ev
        elif ev["ph"] == "M":
            assert ev["name"] in ("process_name", "thread_name", "process_sort_index", "thread_sort_index"), ev
        elif ev["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in ev["args"].values()), ev
        else:
            assert ev["s"] in ("t", "p", "g"), ev
    return events


def names_of(events, what):
    return {(ev["pid"], ev.get("tid")): ev["args"]["name"] for ev in events if ev["ph"] == "M" and ev["name"] == what}


def test_perfetto_trace_has_every_track_and_the_reports_totals(tmp_path):
    out = tmp_path / "race.trace.json"
    result = gilviz("export", RACE, "--format", "perfetto", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "ui.perfetto.dev" in result.stderr
    events = trace_events(out)
    report = replay_file(str(RACE), Report())
    pid = report.header.pid
    threads = names_of(events, "thread_name")
    processes = names_of(events, "process_name")
    # names: the target, its threads, the cores, the GIL
    assert processes[pid, None] == report.header.command
    for tid, th in report.threads.items():
        assert threads[pid, tid] == th.name or not th.name
    assert {threads[CORES_PID, cpu] for cpu in report.core_target} == {f"cpu{c}" for c in report.core_target}
    assert threads[pid, GIL_TID] == "GIL"
    # per thread, the time in each state equals the report's sums (exactly: the same microseconds)
    totals: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for ev in events:
        if ev["ph"] == "X" and ev["pid"] == pid and ev["tid"] != GIL_TID:
            totals[ev["tid"]][ev["name"]] += ev["dur"]
    assert set(totals) == set(report.per_thread)
    for tid, sums in report.per_thread.items():
        for i, state in enumerate(STATES, start=1):
            want = sums[i]
            got = totals[tid][state_name(state)] + (totals[tid][UNSPLIT_NAME] if state == State.RUNNING else 0)
            assert abs(got - want) <= max(1, 0.01 * sums[0]), (tid, state, want)
    # running where no GIL sample split it is named apart, as the report counts it (here none: its
    # ticks without a GIL sample had no thread on a CPU counted as running; test_faults has some)
    unsplit = sum(sums[UNSPLIT_NAME] for sums in totals.values())
    assert unsplit == report.unsplit.get(pid, 0), (unsplit, dict(report.unsplit))
    # the cores: which thread was on them, as long as the report says the target was
    on_cores = defaultdict(int)
    for ev in events:
        if ev["ph"] == "X" and ev["pid"] == CORES_PID:
            on_cores[ev["tid"]] += ev["dur"]
            assert ev["name"] in threads.values() and ev["args"]["tid"] in report.per_thread
    # a thread's time on a CPU is placed on the core it was last seen on, within its tick: all of
    # it, unless threads that moved between cores within a tick add up to more than the tick
    from gilviz.recording import read

    placed = defaultdict(int)
    ticks = [r for r in read(str(RACE)) if isinstance(r, Tick)]
    for tick in ticks:
        per_core = defaultdict(int)
        for th in tick.threads:
            if th.cpu >= 0:
                per_core[th.cpu] += th.oncpu
        for cpu, us in per_core.items():
            placed[cpu] += min(us, tick.dt)
    for cpu, us in report.core_target.items():
        assert on_cores[cpu] == placed[cpu] and us - placed[cpu] < 0.05 * us, (cpu, on_cores[cpu], placed[cpu], us)
    # the GIL: held as long as the report's held share says, by named holders
    gil = report.gil_totals[pid, 0]
    held = sum(ev["dur"] for ev in events if ev["ph"] == "X" and ev["tid"] == GIL_TID)
    sampled = sum(tick.dt for tick in ticks for g in tick.gils if g.pid == pid and g.samples)
    assert sampled > 0.9 * gil[0]  # a tick without a GIL sample is a gap in the track
    assert abs(held / sampled - gil[2] / gil[1]) < 0.01, (held, sampled, gil)
    holders = {ev["name"] for ev in events if ev["ph"] == "X" and ev["tid"] == GIL_TID}
    assert {"held by adder-1", "held by adder-2"} <= holders <= {f"held by {n}" for n in threads.values()}, holders
    counters = {ev["name"] for ev in events if ev["ph"] == "C"}
    assert {"GIL hand-offs/s", "GIL waiters (threads waiting, mean)", "work (increments)"} <= counters
    switches = sum(ev["args"]["value"] for ev in events if ev["name"] == "GIL hand-offs/s")
    assert switches > 0
    # the stacks read (by py-spy, in this recording), and how the run ended
    assert any(ev["ph"] == "i" and ev.get("cat") == "stack" and ev["args"]["read by"] == "py-spy" for ev in events)
    assert any(ev["ph"] == "i" and ev["name"].startswith("end: ") for ev in events)


def test_perfetto_trace_names_each_threads_line_slices_by_function(tmp_path):
    """Beside each thread's states, a track of the Python line it was on (a convoy on 3.14, read at the tick rate)."""
    out = tmp_path / "lines.json"
    result = gilviz("export", DATA / "lines.gilviz", "--format", "perfetto", "-o", out)
    assert result.returncode == 0, result.stderr
    events = trace_events(out)
    threads = {name: key for key, name in names_of(events, "thread_name").items()}
    for thread, function, line in (("spinner", "spin", 13), ("reader", "read", 16)):
        track = threads[f"{thread}: Python line"]
        slices = [ev for ev in events if ev["ph"] == "X" and (ev["pid"], ev["tid"]) == track]
        states = [ev for ev in events if ev["ph"] == "X" and (ev["pid"], ev["tid"]) == threads[thread]]
        life = max(ev["ts"] + ev["dur"] for ev in states) - min(ev["ts"] for ev in states)
        on_it = sum(ev["dur"] for ev in slices if ev["name"] == function and ev["args"]["line"] == line
                    and ev["args"]["file"].endswith("convoy.py"))
        assert on_it > 0.95 * life, (thread, on_it, life)
        assert len(slices) < 5  # a line that does not change is one slice, not one per tick


def test_perfetto_trace_of_a_comparison_holds_both_runs_gzipped(tmp_path):
    out = tmp_path / "both.trace.json.gz"
    result = gilviz("export", COMPARE, "--format", "perfetto", "-o", out)
    assert result.returncode == 0, result.stderr
    events = trace_events(out)
    processes = names_of(events, "process_name")
    labels = sorted(name.split(":")[0] for name in processes.values())
    assert any(label.startswith("A cpu-threads") for label in labels)
    assert any(label.startswith("B cpu-processes") for label in labels)
    # one cores' track per run, and the processes' GILs of the second run
    assert {pid for pid, _ in processes if pid >= CORES_PID - 1} == {CORES_PID, CORES_PID - 1}
    gils = {pid for ev in events if ev["ph"] == "X" and ev["tid"] == GIL_TID for pid in [ev["pid"]]}
    assert len(gils) >= 3  # the threads' one GIL, and a GIL in each of the two worker processes


def test_export_refuses_bad_input_with_one_line(tmp_path):
    assert_user_error(gilviz("export", RACE, "--format", "png"), "--format must be one of perfetto, svg, asciicast")
    assert_user_error(gilviz("export", RACE), "--format")
    assert_user_error(gilviz("export", tmp_path / "nope.gilviz", "--format", "perfetto"), "no recording at")
    junk = tmp_path / "junk.gilviz"
    junk.write_text("hello\n")
    assert_user_error(gilviz("export", junk, "--format", "perfetto", "-o", tmp_path / "x.json"))
    assert not (tmp_path / "x.json").exists()
    existing = tmp_path / "there.json"
    existing.write_text("keep me")
    assert_user_error(gilviz("export", RACE, "--format", "perfetto", "-o", existing), "exists", "--force")
    assert existing.read_text() == "keep me"
    assert_user_error(gilviz("export", RACE, "--format", "perfetto", "-o", tmp_path / "no" / "t.json"),
                      "cannot write")
    assert_user_error(gilviz("export", RACE, "--format", "svg", "--at", "99", "-o", tmp_path / "s.svg"),
                      "outside the run", "from 0 to")
    assert_user_error(gilviz("export", RACE, "--format", "svg", "--at", "-1", "-o", tmp_path / "s.svg"),
                      "outside the run")
    assert_user_error(gilviz("export", RACE, "--format", "svg", "--size", "big"), "--size takes columns x lines")
    assert_user_error(gilviz("export", RACE, "--format", "asciicast", "--speed", "0"), "--speed")
    assert_user_error(gilviz("export", RACE, "--format", "svg", "-o", tmp_path / "no" / "s.svg"), "no folder")
    assert not list(tmp_path.glob("*.svg"))


def test_export_never_writes_over_its_own_recording_nor_into_a_folder(tmp_path):
    recording = tmp_path / "race.gilviz"
    shutil.copy(RACE, recording)
    kept = recording.read_bytes()
    link = tmp_path / "link.gilviz"
    link.symlink_to(recording)
    for fmt in ("perfetto", "svg", "asciicast"):
        assert_user_error(gilviz("export", link, "--format", fmt, "-o", recording, "--force"),
                          "is the recording being exported", "-o another file")
        assert_user_error(gilviz("export", recording, "--format", fmt, "-o", tmp_path, "--force"), "is a folder")
    assert recording.read_bytes() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.gilviz", "race.gilviz"]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_an_export_cut_short_leaves_no_half_a_file_and_the_one_it_would_replace_whole(tmp_path, how):
    """A slow cast (a tenth of real time at 60 frames a second: minutes of frames), ended as it
    writes: nothing at -o but what was there, and after SIGTERM nothing of the export beside it."""
    out = tmp_path / "race.cast"
    out.write_text("keep me")
    export = subprocess.Popen([sys.executable, "-m", "gilviz", "export", str(RACE), "--format", "asciicast",
                               "--speed", "0.1", "--fps", "60", "-o", str(out), "--force"],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in tmp_path.glob(".race.cast.*.partial")):
            assert export.poll() is None and time.monotonic() < deadline, export.stderr and export.stderr.read()
            time.sleep(0.05)
        export.send_signal(getattr(signal, how))
        _, stderr = export.communicate(timeout=30)
    finally:
        export.kill()
    assert out.read_text() == "keep me"
    if how == "SIGTERM":  # as Ctrl-C: said in one line, and what it wrote is gone
        assert export.returncode == 130 and stderr.strip() == "gilviz: interrupted", (export.returncode, stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["race.cast"]


def test_perfetto_names_the_time_no_gil_reading_split_as_the_report_counts_it(tmp_path):
    """A run whose GIL gilviz stopped reading at 1 s (the fixture rewritten so): per thread, the
    slices "on a CPU (GIL not read)" are the report's unsplit running, to the microsecond, none
    before the loss, and with the running slices make the report's running."""
    from conftest import GIL_LOST_AT, gil_lost_records
    from gilviz.recording import RecordingWriter

    path = tmp_path / "lost.gilviz"
    writer = RecordingWriter(str(path))
    for rec in gil_lost_records():
        writer.write(rec)
    writer.close()
    out = tmp_path / "lost.trace.json"
    result = gilviz("export", path, "--format", "perfetto", "-o", out)
    assert result.returncode == 0, result.stderr
    report = replay_file(str(path), Report())
    pid = report.header.pid
    unsplit: dict[int, int] = defaultdict(int)
    running: dict[int, int] = defaultdict(int)
    for ev in trace_events(out):
        if ev["ph"] == "X" and ev["pid"] == pid and ev["tid"] != GIL_TID:
            if ev["name"] == UNSPLIT_NAME:
                unsplit[ev["tid"]] += ev["dur"]
                assert ev["ts"] >= GIL_LOST_AT - 20_000, ev  # (the tick it was lost in, at the earliest)
            elif ev["name"] == "running":
                running[ev["tid"]] += ev["dur"]
    assert sum(unsplit.values()) > 500_000 and sum(unsplit.values()) == report.unsplit[pid], (dict(unsplit), report.unsplit)
    for tid, sums in report.per_thread.items():
        assert unsplit[tid] == report.unsplit_by_thread.get(tid, 0), tid
        assert abs(running[tid] + unsplit[tid] - sums[1]) <= 1, tid


# ------------------------------------------------------------------ the screen: svg, asciicast
from gilviz.sources import RecordsSource  # noqa: E402


class HeldRecords(RecordsSource):
    """The records of a recording up to a moment, handed over at once and then held open (a
    replay that has got that far, not one that has ended): the app's own way in, apart from the
    exporter's staged sources."""

    def __init__(self, path: Path, until_us: int):
        from gilviz.recording import read

        records = []
        for rec in read(str(path)):
            if isinstance(rec, Tick) and rec.t > until_us:
                break
            records.append(rec)
        super().__init__(records, speed=0.0, label=path.name)
        self.speed = 1.0  # the header says what a replay at 1x says

    def run(self, emit):
        super().run(emit)
        with self._cond:
            while not self._stopped:
                self._cond.wait()


async def app_at(path: Path, seconds: float, size, what):
    from gilviz.tui.app import make_app

    source = HeldRecords(path, round(seconds * 1e6))
    app = make_app(source, show_ui_cost=False, toasts=False)
    async with app.run_test(size=size) as pilot:
        for _ in range(500):
            if source.done:
                break
            await pilot.pause(0.01)
        assert source.done
        await pilot.pause()
        app.refresh_now()
        await pilot.pause()
        return what(app)


def test_svg_at_a_time_is_the_apps_own_screenshot_then(tmp_path):
    import asyncio

    for at in (0.5, 0.77):
        out = tmp_path / f"race-{at}.svg"
        result = gilviz("export", RACE, "--format", "svg", "--at", at, "--size", "120x36", "-o", out)
        assert result.returncode == 0, result.stderr
        svg = out.read_text()
        assert svg.startswith("<svg") and f"{at:.1f}&#160;s" in svg
        own = asyncio.run(app_at(RACE, at, (120, 36), lambda app: app.export_screenshot()))
        assert svg == own
    # the end of the run, by default, in the light theme
    out = tmp_path / "end.svg"
    assert gilviz("export", RACE, "--format", "svg", "--theme", "light", "-o", out).returncode == 0
    assert "REPLAYED" in out.read_text() and out.read_text() != svg


def test_asciicast_is_v2_and_replays_to_the_apps_frames(tmp_path):
    import asyncio

    pyte = pytest.importorskip("pyte")
    out = tmp_path / "race.cast"
    result = gilviz("export", RACE, "--format", "asciicast", "--size", "100x30", "--fps", "5", "--speed", "1",
                    "-o", out)
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (100, 30)
    events = [json.loads(line) for line in lines[1:]]
    assert all(len(e) == 3 and e[1] == "o" and isinstance(e[2], str) for e in events)
    times = [e[0] for e in events]
    assert times == sorted(times) and times[0] == 0
    end_s = max(r.t for r in __import__("gilviz.recording", fromlist=["read"]).read(str(RACE))
                if isinstance(r, Tick)) / 1e6
    assert times[-1] >= end_s  # a frame every 0.2 s of a 1x replay, to the end

    def screen_after(t):
        screen = pyte.Screen(100, 30)
        stream = pyte.Stream(screen)
        for when, _, data in events:
            if when <= t + 1e-9:
                stream.feed(data)
        return [line.rstrip() for line in screen.display]

    for k in (0, 2, 4):  # frames at 0, 0.4 and 0.8 s: what the app draws at those moments
        t = k / 5
        own = asyncio.run(app_at(RACE, t, (100, 30), lambda app: [s.text.rstrip() for s in
                                                                    app.screen._compositor.render_strips()]))
        assert screen_after(t) == own, k
    last = screen_after(times[-1])
    assert "REPLAYED" in last[0] or "REPLAYED" in last[1]


def test_an_asciicast_shows_each_line_of_output_at_the_frame_of_its_time(tmp_path):
    """The live view writes its output pane at most twice a second of wall time; frames drawn for
    export must not depend on how fast they are drawn: each line is there at the first frame
    after it was printed, and two exports are the same."""
    pyte = pytest.importorskip("pyte")
    from gilviz.recording import RecordingWriter
    from gilviz.stream import End, GilTick, Header, Output, Process, Thread, ThreadTick, header_fields

    path = tmp_path / "chatty.gilviz"
    w = RecordingWriter(str(path))
    w.write(Header(command="chatty", cpus=2, pid=1, python_version="3.12.0", tick_hz=200, fields=header_fields()))
    w.write(Process(pid=1, python="3.12.0", gil="located", switch_interval_us=5000))
    w.write(Thread(0, 1, 1, "main"))
    dt = 5000
    for i in range(400):  # 2 s, a line every 0.1 s, half-way between two frames
        w.write(Tick((i + 1) * dt, dt, [ThreadTick(1, 0, dt, 0, 0, 0, 0, 0, 0, 0, dt, dt)], [GilTick(1, 10, 10, 0, 0, 0, 1)],
                     []))
        if i % 20 == 9:
            w.write(Output((i + 1) * dt, "out", f"printed at {(i + 1) * dt // 1000} ms\n"))
    w.write(End(400 * dt, "exited", exit_code=0))
    w.close()
    casts = []
    for k in (1, 2):
        out = tmp_path / f"chatty{k}.cast"
        result = gilviz("export", path, "--format", "asciicast", "--size", "120x48", "--fps", "10", "--speed", "1",
                        "-o", out)
        assert result.returncode == 0, result.stderr
        casts.append(out.read_text().splitlines())
    assert casts[0][1:] == casts[1][1:]  # (the header holds the time it was made)
    events = [json.loads(line) for line in casts[0][1:]]
    screen = pyte.Screen(120, 48)
    stream = pyte.Stream(screen)
    frames = 0
    for when, _, data in events:
        stream.feed(data)
        text = "\n".join(screen.display)
        printed = [ms for ms in range(50, 2000, 100) if f"printed at {ms} ms" in text]
        due = [ms for ms in range(50, 2000, 100) if ms <= round(when * 1000)]
        # the last line printed by this frame's time is on screen, and none printed after it
        assert (printed[-1:] == due[-1:]) and all(ms <= round(when * 1000) for ms in printed), (when, printed)
        frames += bool(printed)
    assert frames >= 15
