"""CPython 3.15's own word on each thread's GIL, read beside gilviz: an independent check.

    python3.15 tests/oracle_315.py PID OUT.json [HZ]

Reads every thread's status bits with `_remote_debugging.RemoteUnwinder(pid, all_threads=True,
mode=3)` (the reader of CPython's own sampler) about HZ times a second until the process ends,
and writes, per OS thread id, how many reads found it holding the GIL, asking for it, and on a
CPU; how many found any thread asking for it; and the CLOCK_MONOTONIC span of the reads.
"""

import json
import os
import sys
import time

import _remote_debugging as rd


def main() -> None:
    pid, out = int(sys.argv[1]), sys.argv[2]
    period = 1.0 / float(sys.argv[3]) if len(sys.argv) > 3 else 0.001
    unwinder = rd.RemoteUnwinder(pid, all_threads=True, mode=3)
    counts: dict[int, list[int]] = {}  # tid -> [reads, has_gil, gil_requested, on_cpu]
    first = last = None
    reads = errors = contended = 0  # contended: reads that found some thread asking for the GIL
    next_read = time.monotonic()
    while True:
        try:
            interpreters = unwinder.get_stack_trace()
        except Exception:  # a read torn by the process changing under it, or the process has ended
            if not os.path.exists(f"/proc/{pid}/task"):
                break
            errors += 1
            interpreters = []
        now = time.monotonic_ns()
        if interpreters:
            first = now if first is None else first
            last = now
            reads += 1
        asking = False
        for interp in interpreters:
            for thread in interp.threads:
                c = counts.setdefault(thread.thread_id, [0, 0, 0, 0])
                c[0] += 1
                c[1] += bool(thread.status & rd.THREAD_STATUS_HAS_GIL)
                c[2] += bool(thread.status & rd.THREAD_STATUS_GIL_REQUESTED)
                c[3] += bool(thread.status & rd.THREAD_STATUS_ON_CPU)
                asking = asking or bool(thread.status & rd.THREAD_STATUS_GIL_REQUESTED)
        contended += asking
        next_read += period
        delay = next_read - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_read = time.monotonic()
    with open(out, "w") as f:
        json.dump({"first_ns": first, "last_ns": last, "reads": reads, "errors": errors, "contended": contended,
                   "threads": {str(tid): c for tid, c in counts.items()}}, f)


if __name__ == "__main__":
    main()
