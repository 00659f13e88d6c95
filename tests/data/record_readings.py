"""Records what the state rules were given on a real run, for tests that need no process.

    python tests/data/record_readings.py [PYTHON]

Samples a workload (two threads spinning in Python, one hashing beside them, one starting
late and ending early, the main thread joining) and saves, per thread and tick, every input
of `capture.states.classify` and what it returned, to tests/data/readings.json.gz.
"""

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gilviz import sampler as sampler_module  # noqa: E402
from gilviz.capture import states  # noqa: E402
from gilviz.session import Settings, run_session  # noqa: E402
from gilviz.stream import Thread  # noqa: E402
from gilviz.target import Command, query_interpreter  # noqa: E402

WORKLOAD = """
import hashlib, threading, time
buf = b"x" * (2 << 20)
end = time.time() + 1.5
def spin():
    x = 0
    while time.time() < end:
        x += 1
def hash_loop():
    while time.time() < end:
        hashlib.sha256(buf).digest()
def brief():
    time.sleep(0.3)
    t = time.time() + 0.4
    while time.time() < t:
        pass
ts = [threading.Thread(target=spin, name="spin-0"), threading.Thread(target=spin, name="spin-1"),
      threading.Thread(target=hash_loop, name="hasher")]
for t in ts: t.start()
late = threading.Thread(target=brief, name="brief")
time.sleep(0.2)
late.start()
for t in ts + [late]: t.join()
"""


def main() -> None:
    python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
    calls = []
    names = {}
    real = states.classify

    def recording(r, mem, dt, held_frac, call, *, first=False, gil="located", gil_samples=0):
        before = {k: getattr(mem, k) for k in ("on_ns", "runq_ns", "call", "slices")}
        out = real(r, mem, dt, held_frac, call, first=first, gil=gil, gil_samples=gil_samples)
        calls.append({"tid": r.tid, "reading": [r.state, r.cpu, r.on_ns, r.runq_ns, r.slices, r.syscall, r.moved],
                      "before": before, "dt": dt, "held_frac": held_frac, "call": call, "first": first,
                      "gil": gil, "gil_samples": gil_samples, "out": list(out)})
        return out

    sampler_module.states.classify = recording

    def sink(rec):
        if isinstance(rec, Thread) and rec.name:
            names[rec.tid] = rec.name

    interp = query_interpreter(python)
    run_session(sink, Settings(), command=Command([python, "-c", WORKLOAD], "readings"), interp=interp)
    path = Path(__file__).parent / "readings.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"python": interp.version, "names": names, "calls": calls}, f)
    print(path, len(calls), "calls")


if __name__ == "__main__":
    main()
