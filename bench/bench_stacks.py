"""What the lines cost: stack readings achieved and the sampler's CPU, per interpreter family.

For each interpreter (3.9 to 3.15 read by gilviz from the target's memory; with `--pyspy`, also
with gilviz's reader refused as for a layout it does not know: then py-spy's dumps read 3.9 to
3.13, and a helper on the target's own `_remote_debugging` reads 3.14+): `gilviz record` of a
convoy (a spinning thread, a thread reading a socket)
with the lines read at the default rate, and with `--stacks-rate 0` (no stacks at all), in
interleaved rounds. Prints, as medians with their spread: stack readings a second per thread,
the sampler's CPU (its own, py-spy's and the helper's) with and without stacks, and so what the
stacks cost; the tick rate achieved under the budget (15 % of a core by default).

    python bench/bench_stacks.py [--pythons 3.12 3.14] [--rounds 5] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from test_lines import CONVOY  # noqa: E402
from bench_floor import spread  # noqa: E402


PYSPY_ONLY = ("import sys, runpy; import gilviz.probes.frames as f; f.LAYOUTS.clear(); "
              "sys.argv = ['gilviz', *sys.argv[1:]]; runpy.run_module('gilviz', run_name='__main__')")


def record(python: str, seconds: float, stacks: bool, folder: str, k: int, pyspy: bool = False) -> dict:
    path = os.path.join(folder, f"r{k}.gilviz")
    gilviz = [sys.executable, "-c", PYSPY_ONLY] if pyspy else [sys.executable, "-m", "gilviz"]
    args = [*gilviz, "record", "--python", python, "--duration", str(seconds), "-o", path]
    if not stacks:
        args += ["--stacks-rate", "0"]
    run = subprocess.run([*args, "-c", CONVOY], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip())
    out = subprocess.run([sys.executable, "-m", "gilviz", "report", "--json", path], capture_output=True, text=True)
    summary = json.loads(out.stdout)
    os.unlink(path)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pythons", nargs="+", default=["3.12", "3.14"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--pyspy", action="store_true",
                    help="also with gilviz's reader refused: py-spy's dumps (3.9 to 3.13) or the helper (3.14+)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        figures: dict[tuple[str, bool | str], list[dict]] = {}
        k = 0
        for _ in range(args.rounds):
            for python in args.pythons:
                for stacks in ((True, False, "py-spy") if args.pyspy else (True, False)):
                    k += 1
                    try:
                        figures.setdefault((python, stacks), []).append(
                            record(python, args.seconds, bool(stacks), folder, k, pyspy=stacks == "py-spy"))
                    except RuntimeError as e:
                        print(f"{python}: {e}", file=sys.stderr)
        for python in args.pythons:
            off = figures.get((python, False), [])
            for key in (True, "py-spy"):
                on = figures.get((python, key), [])
                if not on or not off:
                    continue
                by = on[0]["stacks"]["by"] or "none"
                rate = [s["stacks"]["readings_per_s"] for s in on]
                cpu_on = [100 * s["sampler"]["overhead"] for s in on]
                cpu_off = [100 * s["sampler"]["overhead"] for s in off]
                ticks = [s["tick_hz"] for s in on]
                rows.append((f"{python} ({on[0]['target']['python']})", by, spread(rate, ".0f"), spread(cpu_on, ".1f"),
                             spread(cpu_off, ".1f"), f"{statistics.median(cpu_on) - statistics.median(cpu_off):+.1f}",
                             spread(ticks, ".0f")))
    head = ("python", "stacks by", "readings/s per thread", "sampler CPU %", "without stacks %", "stacks cost",
            "ticks/s")
    print(f"{args.rounds} interleaved rounds of {args.seconds:.0f} s, a convoy (1 spinning thread, 1 reading a socket); "
          "medians (min..max)")
    print(" | ".join(head))
    for row in rows:
        print(" | ".join(row))
    print("goal: lines at the tick rate where the budget allows (3.9 to 3.15 with a GIL), py-spy at the highest rate "
          "the budget allows elsewhere, all inside --budget (15 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
