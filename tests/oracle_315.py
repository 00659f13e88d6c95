"""CPython 3.15's own word on each thread's GIL, read beside gilviz: an independent check.

    python3.15 tests/oracle_315.py PID OUT.json [HZ]

Reads every thread's status bits with `_remote_debugging.RemoteUnwinder(pid, all_threads=True,
mode=3)` (the reader of CPython's own sampler) about HZ times a second until the process ends,
and writes each read: its CLOCK_MONOTONIC time and, per OS thread id, whether it held the GIL,
asked for it, was on a CPU; and the times of the reads that failed.

A read fails when the process changes under it, which a thread running does and one off a CPU
does not: the reads that succeed are then a sample biased towards moments when the GIL's holder
is off its core (beside two CPU hogs a fifth of them failed, and a spinner's share of the GIL
read as 0.017 where gilviz measured 0.25). So a torn read is tried again at once, and the times of those that still fail
are kept, for a comparison to leave out the stretches they fall in.
"""

import json
import os
import sys
import time

import _remote_debugging as rd

RETRIES = 20  # tries of a read before it is given up


def main() -> None:
    pid, out = int(sys.argv[1]), sys.argv[2]
    period = 1.0 / float(sys.argv[3]) if len(sys.argv) > 3 else 0.001
    unwinder = rd.RemoteUnwinder(pid, all_threads=True, mode=3)
    reads: list = []  # [time_ns, [[tid, has_gil, gil_requested, on_cpu], ...]]
    failed: list[int] = []
    torn = 0
    next_read = time.monotonic()
    while os.path.exists(f"/proc/{pid}/task"):
        interpreters = None
        for _ in range(RETRIES):
            try:
                interpreters = unwinder.get_stack_trace()
                break
            except Exception:  # torn, or the process has ended
                torn += 1
        now = time.monotonic_ns()
        if interpreters is None:
            failed.append(now)
        elif interpreters:
            reads.append([now, [[t.thread_id, int(bool(t.status & rd.THREAD_STATUS_HAS_GIL)),
                                 int(bool(t.status & rd.THREAD_STATUS_GIL_REQUESTED)),
                                 int(bool(t.status & rd.THREAD_STATUS_ON_CPU))]
                                for interp in interpreters for t in interp.threads]])
        next_read += period
        delay = next_read - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_read = time.monotonic()
    with open(out, "w") as f:
        json.dump({"reads": reads, "failed": failed, "torn": torn}, f)


if __name__ == "__main__":
    main()
