"""gilviz's cost next to the wake-up floor and the other samplers, and its observer effect.

For 2 and 8 threads spinning in pure Python, in interleaved rounds (9 by default):
- the workload alone, with, beside it, the floor: a C loop of clock_nanosleep (compiled here
  with cc; a ctypes loop where there is no compiler) waking as often as gilviz woke in the
  round before (its ticks, and its GIL samples between them: the Stats' wake_hz; the sample at
  a tick rides on the tick's wake-up), its CPU a second;
- the floor with the reads: the same C loop, reading each of the workload's threads' schedstat
  and syscall at every tick (at the wake-ups and ticks a second gilviz had in the round), the
  files any sampler that reads the threads from /proc reads at every tick (in a run of its own
  beside the workload: its throughput is not the baseline's);
- the workload under `gilviz record` (default settings: the lines read from the target's memory
  at every tick, py-spy naming the threads once a second, the GIL sampled at about 2 kHz, faster
  only where the sampler's core is otherwise idle): ticks/s, GIL samples/s, sampler CPU,
  throughput as a share of the median alone; and after its first second (the start: py-spy
  naming the threads, the line reader starting), from the recording's half-second figures, its
  CPU next to the floor's cost a wake-up times as many wake-ups;
- `gilviz record --stacks-rate 0 --gil-rate 2000`: gilviz's own sampling, without the lines nor
  py-spy (a dump is about 6 ms of CPU), at the goal's 2 kHz of GIL samples asked (a rate asked
  is sampled at whatever the core's load, as the budget allows), against the floor at as many
  wake-ups;
- the workload under `py-spy record` at 100 Hz and 1 kHz (--nonblocking): py-spy's CPU and the
  throughput share;
- where python3.15 is on PATH, the workload on 3.15 under CPython's own sampler
  (`python3.15 -m profiling.sampling attach -r 1khz -a`): its CPU (no throughput: another
  interpreter's speed is no baseline).
Medians with (min..max). Goals: gilviz at most 1.3x the floor, throughput at least 0.98 of alone.

    python bench/bench_floor.py [--threads 2 8] [--rounds 9] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STEADY_AFTER_US = 1_000_000  # past gilviz's start (py-spy naming the threads, the reader starting)
WORKLOAD = os.path.join(HERE, "workload_threads.py")
# The wake-up floor: a loop of clock_nanosleep, HZ wake-ups a second for SECONDS. With a PID and
# EVERY, the floor with the reads: at every EVERYth wake-up (a tick) each of its threads' schedstat
# and syscall, the two files a thread that moved is read by at every tick (its stat is read more
# seldom), from files kept open as gilviz keeps them; the task folder listed again every 16 ticks,
# as gilviz lists it. `floor HZ SECONDS [PID EVERY]`
FLOOR_C = r"""
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#define MAX_THREADS 4096
static int tids[MAX_THREADS], fds[MAX_THREADS][2], count;
static void list_threads(const char *task) {
    DIR *d = opendir(task);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && count < MAX_THREADS) {
        int tid = atoi(e->d_name), known = 0;
        if (tid <= 0) continue;
        for (int i = 0; i < count && !known; i++) known = tids[i] == tid;
        if (known) continue;
        char path[96];
        snprintf(path, sizeof path, "%s/%d/schedstat", task, tid);
        int a = open(path, O_RDONLY);
        snprintf(path, sizeof path, "%s/%d/syscall", task, tid);
        int b = open(path, O_RDONLY);
        if (a < 0 || b < 0) { if (a >= 0) close(a); if (b >= 0) close(b); continue; }
        tids[count] = tid; fds[count][0] = a; fds[count][1] = b; count++;
    }
    closedir(d);
}
int main(int argc, char **argv) {
    double hz = atof(argv[1]), seconds = atof(argv[2]);
    long every = argc > 4 ? atol(argv[4]) : 0, period = (long)(1e9 / hz), n = (long)(hz * seconds), ticks = 0;
    char task[64], buf[512];
    snprintf(task, sizeof task, "/proc/%s/task", argc > 3 ? argv[3] : "self");
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    for (long i = 0; i < n; i++) {
        t.tv_nsec += period;
        while (t.tv_nsec >= 1000000000L) { t.tv_nsec -= 1000000000L; t.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        if (!every || i % every) continue;
        if (ticks++ % 16 == 0) list_threads(task);
        for (int k = 0; k < count; k++) {
            if (pread(fds[k][0], buf, sizeof buf, 0) < 0) continue;  /* (ended: read no more) */
            pread(fds[k][1], buf, sizeof buf, 0);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%f\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    return 0;
}
"""
FLOOR_PY = """
import ctypes, resource, sys, time
libc = ctypes.CDLL(None)
class TS(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
hz, seconds = float(sys.argv[1]), float(sys.argv[2])
period, t = int(1e9 / hz), TS()
libc.clock_gettime(1, ctypes.byref(t))
for _ in range(int(hz * seconds)):
    t.ns += period
    if t.ns >= 1_000_000_000:
        t.s, t.ns = t.s + t.ns // 1_000_000_000, t.ns % 1_000_000_000
    libc.clock_nanosleep(1, 1, ctypes.byref(t), None)
ru = resource.getrusage(resource.RUSAGE_SELF)
print(ru.ru_utime + ru.ru_stime)
"""


def throughput(stdout: str) -> float:
    data = json.loads(next(line for line in reversed(stdout.strip().splitlines()) if line.startswith("{")))
    return data["units"] / data["elapsed"]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def floor_command(folder: str) -> tuple[list[str], str, bool]:
    """(the floor's command, what it is, whether it can read the threads too: only the C loop)"""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        src, exe = os.path.join(folder, "floor.c"), os.path.join(folder, "floor")
        with open(src, "w") as f:
            f.write(FLOOR_C)
        if subprocess.run([cc, "-O2", "-o", exe, src], capture_output=True).returncode == 0:
            return [exe], "a C loop of clock_nanosleep", True
    return ([sys.executable, "-c", FLOOR_PY], "a ctypes loop of clock_nanosleep (no C compiler: above the true floor)",
            False)


def alone_with_floor(n: int, seconds: float, floor: list[str], hz: float,
                     ticks: float | None = None) -> tuple[float, float]:
    """(the workload's throughput, the floor's CPU a second) in one run beside each other; with
    `ticks`, the floor reads the workload's threads that many times a second (the C loop only)."""
    work = subprocess.Popen([sys.executable, WORKLOAD, str(n), str(seconds)], stdout=subprocess.PIPE, text=True)
    reads = [str(work.pid), str(max(1, round(hz / ticks)))] if ticks else []
    fl = subprocess.run([*floor, str(hz), str(seconds), *reads], capture_output=True, text=True, check=True)
    out, _ = work.communicate()
    return throughput(out), float(fl.stdout) / seconds


def wake_ups(stats) -> float:
    """The sampler's wake-ups a second (a GIL sample at a tick rides on the tick's wake-up: the sum of
    ticks and GIL samples counts it twice)."""
    return stats.wake_hz if stats.wake_hz is not None else stats.gil_hz + stats.tick_hz


def under_gilviz(n: int, seconds: float, folder: str, *options: str) -> tuple[float, dict]:
    path = os.path.join(folder, "bench.gilviz")
    subprocess.run([sys.executable, "-m", "gilviz", "record", *options, "--force", "-o", path, WORKLOAD, str(n),
                    str(seconds)],
                   capture_output=True, text=True, check=True)
    report = json.loads(subprocess.run([sys.executable, "-m", "gilviz", "report", "--json", path],
                                       capture_output=True, text=True, check=True).stdout)
    from gilviz.collect import load

    rec = load(path)
    stdout = "".join(o.data for o in rec.output if o.stream == "out")
    steady = [st for st in rec.stats if st.t > STEADY_AFTER_US]  # (the budget's half-second figures)
    report["steady"] = ((sum(st.overhead for st in steady) / len(steady),
                         sum(wake_ups(st) for st in steady) / len(steady)) if steady else None)
    report["wake_hz"] = sum(map(wake_ups, rec.stats)) / len(rec.stats) if rec.stats else 0.0
    return throughput(stdout), report


def under_sampler(command: list[str], python: str, n: int, seconds: float) -> tuple[float, float]:
    """(the workload's throughput, the sampler's CPU a second): the sampler attaches by pid."""
    work = subprocess.Popen([python, WORKLOAD, str(n), str(seconds)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)
    before = children_cpu()
    subprocess.run([*command, str(work.pid)], capture_output=True, timeout=seconds + 30)
    cpu = children_cpu() - before  # only the sampler has been reaped since
    out, _ = work.communicate()
    return throughput(out), cpu / (seconds - 0.2)


def spread(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}..{format(max(values), fmt)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(HERE, ".."))
    from gilviz.probes.pyspy import find_pyspy

    pyspy = find_pyspy()
    py315 = shutil.which("python3.15")
    s = args.seconds
    with tempfile.TemporaryDirectory() as folder:
        floor, floor_kind, can_read = floor_command(folder)
        print(f"floor: {floor_kind}; {args.rounds} interleaved rounds of {s:.0f} s; medians (min..max)")
        for n in args.threads:
            f: dict[str, list[float]] = {k: [] for k in ("alone", "floor", "wakeups", "gv", "gv_cpu", "ticks", "gil",
                                                         "spy100", "spy100_cpu", "spy1k", "spy1k_cpu", "tachyon_cpu",
                                                         "own", "own_cpu", "own_wakeups", "steady_cpu",
                                                         "steady_wakeups", "reads_floor", "reads_wakeups",
                                                         "reads_ticks")}
            wakeups = 2200.0  # until gilviz's first round says
            for _ in range(args.rounds):
                t, fl = alone_with_floor(n, s, floor, wakeups)
                f["alone"].append(t)
                f["floor"].append(fl)
                f["wakeups"].append(wakeups)
                t, report = under_gilviz(n, s, folder)
                f["gv"].append(t)
                f["gv_cpu"].append(report["sampler"]["overhead"])
                f["ticks"].append(report["tick_hz"])
                f["gil"].append(report["gil_sample_hz"])
                if report["steady"] is not None:  # (CPU, wake-ups) a second
                    f["steady_cpu"].append(report["steady"][0])
                    f["steady_wakeups"].append(report["steady"][1])
                wakeups = report["wake_hz"]
                if can_read:  # (at this round's wake-ups and ticks, in a run of its own)
                    f["reads_floor"].append(alone_with_floor(n, s, floor, wakeups, report["tick_hz"])[1])
                    f["reads_wakeups"].append(wakeups)
                    f["reads_ticks"].append(report["tick_hz"])
                t, report = under_gilviz(n, s, folder, "--stacks-rate", "0", "--gil-rate", "2000")
                f["own"].append(t)
                f["own_cpu"].append(report["sampler"]["overhead"])
                f["own_wakeups"].append(report["wake_hz"])
                if pyspy:
                    for rate, key in ((100, "spy100"), (1000, "spy1k")):
                        t, cpu = under_sampler([pyspy, "record", "--nonblocking", "-r", str(rate), "-d", str(int(s)),
                                                "-o", os.path.join(folder, "p.txt"), "-f", "raw", "-p"],
                                               sys.executable, n, s)
                        f[key].append(t)
                        f[key + "_cpu"].append(cpu)
                if py315:
                    _, cpu = under_sampler([py315, "-m", "profiling.sampling", "attach", "-r", "1khz", "-a", "-d",
                                            str(int(s)), "--collapsed", "-o", os.path.join(folder, "t.txt")],
                                           py315, n, s)
                    f["tachyon_cpu"].append(cpu)
            base = statistics.median(f["alone"])
            floor_cpu = statistics.median(f["floor"])
            print(f"\n{n} threads spinning")
            print(f"  floor ({spread(f['wakeups'], '.0f')} wake-ups/s): CPU {spread([100 * x for x in f['floor']], '.1f')} %")
            print(f"  gilviz record: {spread(f['ticks'], '.0f')} ticks/s, {spread(f['gil'], '.0f')} GIL samples/s, "
                  f"CPU {spread([100 * x for x in f['gv_cpu']], '.1f')} % = "
                  f"{statistics.median(f['gv_cpu']) / floor_cpu:.2f}x the floor (goal: at most 1.3x); "
                  f"throughput {spread([x / base for x in f['gv']], '.3f')} of alone (goal: at least 0.98)")
            if f["steady_cpu"]:
                each = statistics.median(c / w for c, w in zip(f["floor"], f["wakeups"]))  # (the floor a wake-up)
                ratios = [cpu / (each * w) for cpu, w in zip(f["steady_cpu"], f["steady_wakeups"])]
                print(f"    after its first second (past its start): "
                      f"{spread(f['steady_wakeups'], '.0f')} wake-ups/s, CPU {spread([100 * x for x in f['steady_cpu']], '.1f')} % "
                      f"= {spread(ratios, '.2f')}x the floor at as many wake-ups ({1e6 * each:.1f} us each)")
            if f["reads_floor"]:
                each = statistics.median(c / w for c, w in zip(f["reads_floor"], f["reads_wakeups"]))
                margin = statistics.median(c / w for c, w in zip(f["floor"], f["wakeups"])) * statistics.median(
                    f["reads_wakeups"])  # (the wake-up floor's CPU at the reads' wake-ups)
                print(f"  floor with the reads (each thread's schedstat and syscall at "
                      f"{spread(f['reads_ticks'], '.0f')} ticks/s, {spread(f['reads_wakeups'], '.0f')} wake-ups/s): "
                      f"CPU {spread([100 * x for x in f['reads_floor']], '.1f')} %; gilviz "
                      f"{statistics.median(a / b for a, b in zip(f['gv_cpu'], f['reads_floor'])):.2f}x it"
                      + (f", after its first second {statistics.median(c / (each * w) for c, w in zip(f['steady_cpu'], f['steady_wakeups'])):.2f}x"
                         if f["steady_cpu"] else "")
                      + f"; 1.3x the wake-up floor at as many wake-ups is {130 * margin:.1f} %")
            own_floor = floor_cpu * statistics.median(f["own_wakeups"]) / statistics.median(f["wakeups"])
            print(f"  gilviz record --stacks-rate 0 --gil-rate 2000 (no lines, no py-spy): "
                  f"{spread(f['own_wakeups'], '.0f')} wake-ups/s, CPU {spread([100 * x for x in f['own_cpu']], '.1f')} % = "
                  f"{statistics.median(f['own_cpu']) / own_floor:.2f}x the floor at as many wake-ups; "
                  f"throughput {spread([x / base for x in f['own']], '.3f')} of alone")
            for key, label in (("spy100", "py-spy record 100 Hz"), ("spy1k", "py-spy record 1 kHz")):
                if f[key]:
                    print(f"  {label}: CPU {spread([100 * x for x in f[key + '_cpu']], '.1f')} %, "
                          f"throughput {spread([x / base for x in f[key]], '.3f')} of alone")
            if f["tachyon_cpu"]:
                print(f"  CPython 3.15's sampler 1 kHz (on a 3.15 workload): CPU {spread([100 * x for x in f['tachyon_cpu']], '.1f')} %")
            print(f"  alone: spread of runs {min(f['alone']) / base:.3f}..{max(f['alone']) / base:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
