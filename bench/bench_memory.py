"""Memory over long runs: the live view's history and `gilviz report`, each next to its goal.

    python bench/bench_memory.py [--threads 64] [--minutes 60] [--report-minutes 1 4]

1. The live view's history (gilviz/timeline/store.py) fed an hour of 200 ticks a second of
   `--threads` busy threads, as fast as it takes them: its process's memory every 5 minutes
   of run time, the longest pause a merge of old ticks made, and what the whole run still
   shows. Goal: under 250 MB after an hour of 64 busy threads, with the app around it (the
   app's own share is measured by `python bench/bench_tui.py --seconds 600`, which prints
   the UI process's memory).
2. `gilviz report` of recordings of 100 threads for each of `--report-minutes`, written here:
   its peak memory (the same whatever the length). Goal: under 200 MB for an hour of 64 threads.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gilviz.recording import RecordingWriter  # noqa: E402
from gilviz.stream import End, GilTick, Header, Process, Thread, ThreadTick, Tick, header_fields  # noqa: E402
from gilviz.timeline.store import History, make_thread_tick  # noqa: E402

DT = 5000  # us: 200 ticks a second
STATES = ("running", "waiting", "waiting", "runnable")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def history(threads: int, minutes: float) -> None:
    h = History()
    h.add(Header(command="synthetic", cpus=2, pid=1, python_version="3.12.0"))
    h.add(Process(pid=1, python="3.12.0", gil="located", switch_interval_us=5000))
    rows = [[make_thread_tick(100 + k, DT, STATES[(k + j) % 4], cpu=k % 2) for k in range(threads)] for j in range(8)]
    ticks = int(minutes * 60 * 1e6 / DT)
    every = int(5 * 60 * 1e6 / DT)
    print(f"1. the live view's history: {threads} busy threads, {minutes:.0f} min at 200 ticks/s")
    print(f"   {'run time':>8} {'memory':>8} {'ticks kept':>10} {'at full detail':>14} {'longest pause':>13}")
    start = time.perf_counter()
    worst = 0.0
    for i in range(ticks):
        a = time.perf_counter()
        h.add_tick_raw((i + 1) * DT, DT, rows[i % 8], [(1, 10, 10, 9, 1, 0, 100 + i % threads)],
                       [2 * DT, 2 * DT] if i % 10 == 9 else [])
        worst = max(worst, time.perf_counter() - a)
        if (i + 1) % every == 0:
            full = sum(1 for d in h.dts if d < 50_000)
            print(f"   {(i + 1) * DT / 60e6:>5.0f} min {rss_mb():>5.0f} MB {len(h.times):>10,} "
                  f"{full * DT / 60e6:>10.1f} min {worst * 1000:>10.0f} ms", flush=True)
            worst = 0.0
    s = h.order[1]
    whole = h.thread_stats(s, 0, h.t_last)
    print(f"   whole run still there: from {h.t_start / 1e6:.0f} s to {h.t_last / 60e6:.0f} min; "
          f"{s.name} running {whole.running:.1%} over it (fed: 25.0%); ingest {ticks / (time.perf_counter() - start):,.0f} ticks/s")
    print("   goal: the live view under 250 MB after an hour of 64 busy threads (this is its history; "
          "the app adds its own, see bench_tui.py)")


def write_recording(path: str, threads: int, minutes: float) -> None:
    w = RecordingWriter(path)
    w.write(Header(command="synthetic", cpus=2, pid=1, python_version="3.12.0", tick_hz=200, fields=header_fields()))
    w.write(Process(pid=1, python="3.12.0", gil="located", switch_interval_us=5000))
    for k in range(threads):
        w.write(Thread(0, 100 + k, 1, f"t{k}"))
    for i in range(int(minutes * 60 * 1e6 / DT)):
        run = 100 + i % threads
        rows = [ThreadTick(100 + k, k % 2, DT if 100 + k == run else 0, 0, 0 if 100 + k == run else DT, 0, 0, 0, 0, 0,
                           DT if 100 + k == run else 0, DT if 100 + k == run else 0) for k in range(threads)]
        w.write(Tick((i + 1) * DT, DT, rows, [GilTick(1, 10, 10, 10, 1, 0, run)], [DT, DT] if i % 10 == 9 else []))
    w.write(End(int(minutes * 60e6), "duration"))
    w.close()


# the report's own peak (VmHWM): a child's ru_maxrss would count the pages of the bench it was forked from
REPORT_AND_PEAK = """
import sys
from gilviz.cli import main
try:
    main(["report", sys.argv[1]])
finally:
    print(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")), file=sys.stderr)
"""


def report(minutes_list: list[float], threads: int = 100) -> None:
    print(f"2. gilviz report: recordings of {threads} threads at 200 ticks/s")
    print(f"   {'length':>8} {'file':>8} {'time':>7} {'peak memory':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in minutes_list:
            path = os.path.join(tmp, f"r{minutes}.gilviz")
            write_recording(path, threads, minutes)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", REPORT_AND_PEAK, path], capture_output=True, text=True)
            took = time.perf_counter() - t
            assert out.returncode == 0, out.stderr
            peak = int(out.stderr.split()[-2]) / 1024
            print(f"   {minutes:>4.0f} min {os.path.getsize(path) / 1e6:>6.1f} MB {took:>6.1f} s {peak:>8.0f} MB",
                  flush=True)
    print("   goal: under 200 MB for an hour of 64 threads; the peak does not grow with the length")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--report-minutes", type=float, nargs="+", default=[1.0, 4.0])
    args = ap.parse_args()
    history(args.threads, args.minutes)
    report(args.report_minutes)


if __name__ == "__main__":
    main()
