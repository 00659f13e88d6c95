"""What sampling costs: achieved rates, the sampler's CPU, and the observer effect.

For 4, 64 and 512 pure-Python threads: the workload's throughput while `gilviz record`
samples it, divided by its throughput alone; the same ratio for `py-spy record` at
100 Hz; gilviz's achieved tick and GIL sample rates and its CPU per second of wall time.

    python bench/bench_sampler.py [--seconds 5] [--repeat 2] [--threads 4 64 512]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOAD = os.path.join(HERE, "workload_threads.py")


def _throughput(stdout: str) -> float:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            return data["units"] / data["elapsed"]
    raise RuntimeError(f"no result in workload output: {stdout[-300:]!r}")


def alone(n: int, seconds: float) -> float:
    out = subprocess.run([sys.executable, WORKLOAD, str(n), str(seconds)], capture_output=True, text=True, check=True)
    return _throughput(out.stdout)


def under_gilviz(n: int, seconds: float) -> tuple[float, dict]:
    from gilviz.collect import load
    from gilviz.report import summarize

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.gilviz")
        subprocess.run([sys.executable, "-m", "gilviz", "record", "-o", path, WORKLOAD, str(n), str(seconds)],
                       capture_output=True, text=True, check=True)
        rec = load(path)
        stdout = "".join(o.data for o in rec.output if o.stream == "out")
        return _throughput(stdout), summarize(rec)


def under_pyspy(n: int, seconds: float) -> float:
    from gilviz.probes.pyspy import find_pyspy

    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([find_pyspy(), "record", "-r", "100", "-o", os.path.join(tmp, "p.svg"), "--",
                              sys.executable, WORKLOAD, str(n), str(seconds)],
                             capture_output=True, text=True, check=True)
        return _throughput(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=5, help="runs of each kind, interleaved (medians are printed)")
    ap.add_argument("--threads", type=int, nargs="+", default=[4, 64, 512])
    args = ap.parse_args()
    print(f"{'threads':>7} {'ticks/s':>8} {'GIL/s':>7} {'sampler CPU':>11} {'gilviz ratio':>12} {'py-spy ratio':>12}"
          f"  {'alone: spread of runs':>22}")
    for n in args.threads:
        base, gv, spy, ticks, gil, cpu = [], [], [], [], [], []
        for _ in range(args.repeat):
            base.append(alone(n, args.seconds))
            t, summary = under_gilviz(n, args.seconds)
            gv.append(t)
            ticks.append(summary["tick_hz"])
            gil.append(summary["gil_sample_hz"])
            cpu.append(summary["sampler"]["overhead"])
            spy.append(under_pyspy(n, args.seconds))
        b = statistics.median(base)
        print(f"{n:>7} {statistics.median(ticks):>8.0f} {statistics.median(gil):>7.0f} "
              f"{statistics.median(cpu):>10.1%} {statistics.median(gv) / b:>12.3f} {statistics.median(spy) / b:>12.3f}"
              f"  {min(base) / b:>10.3f} .. {max(base) / b:.3f}", flush=True)
    print("ratio: the workload's throughput with the sampler attached / alone (median of runs);"
          " py-spy: `py-spy record -r 100` (it pauses the target for each sample)")


if __name__ == "__main__":
    main()
