"""Memory that does not grow with the length of a run: the report reads a recording in one pass
and keeps sums only (the live view's bound is in test_tui_model.py)."""

from __future__ import annotations

import tracemalloc

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
