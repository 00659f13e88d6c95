"""Records what the GIL probe reads from real processes, for tests that run without them.

    python tests/data/record_gil_memory.py PYTHON [PYTHON ...]

For each interpreter (3.13 or later: found through its debug offsets), starts two spinning
threads and one sleeper, lets the probe find the GIL, sample it until a waiter sleeps on it, and walk the thread
states, and saves the latest bytes of every region it read, with the process's thread ids, to tests/data/gil_memory_X.Y.json.
"""

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gilviz.probes.gil import GilProbe  # noqa: E402
from gilviz.probes.memory import ProcessMemory  # noqa: E402
from gilviz.probes.pyprocess import inspect  # noqa: E402

WORKLOAD = """
import threading, time
def spin():
    while True:
        pass
for i in range(2):
    threading.Thread(target=spin, daemon=True, name=f"spin-{i}").start()
threading.Thread(target=time.sleep, args=(60,), daemon=True, name="sleeper").start()
time.sleep(60)
"""


class RecordingMemory(ProcessMemory):
    def __init__(self, pid: int):
        super().__init__(pid)
        self.regions: dict[int, bytes] = {}

    def read(self, address: int, size: int) -> bytes:
        data = super().read(address, size)
        known = self.regions.get(address, b"")
        self.regions[address] = data + known[len(data):]  # the latest read of each byte
        return data


def record(python: str) -> Path:
    proc = subprocess.Popen([python, "-c", WORKLOAD])
    try:
        time.sleep(1.0)
        info = inspect(proc.pid)
        assert info is not None, "not a CPython process"
        memory = RecordingMemory(proc.pid)
        probe = GilProbe(info, memory=memory)
        assert probe.located, probe.why
        tids = sorted(int(t) for t in os.listdir(f"/proc/{proc.pid}/task"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            # until the GIL's waiter is caught asleep on it, with the thread states read in the
            # same moment (a 3.15 thread's own flags then name the same holder)
            locked, holder, waiters, _ = sample = probe.sample()
            probe.refresh_thread_states()
            if waiters and locked and probe.sample() == sample:
                break
            time.sleep(0.001)
        samples = [sample]
        out = {
            "python": info.version_string,
            "runtime": [info.runtime.address, info.runtime.size],
            "condvar": probe.sites[0].layout.condvar.name,
            "tids": tids,
            "samples": samples,
            "regions": [[address, base64.b64encode(data).decode()] for address, data in sorted(memory.regions.items())],
        }
    finally:
        proc.kill()
        proc.wait()
    path = Path(__file__).parent / f"gil_memory_{'.'.join(map(str, info.version[:2]))}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path


if __name__ == "__main__":
    for python in sys.argv[1:]:
        print(record(python))
