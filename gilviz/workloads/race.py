"""A race: the GIL does not make `counter += 1` atomic, so threads lose updates.

`counter += step()` reads the counter, calls a function, adds and stores: several
bytecodes, and the interpreter may hand the GIL to another thread between them. A thread
switched out after its read later stores a stale value, wiping out every increment made
meanwhile. (The call matters from 3.10 on: a bare `counter += 1` in a loop is only switched
at the loop's jump, so it rarely loses there; real code has calls everywhere.)
On the timeline: threads taking turns on the GIL, and a final count below the expected one.
"""

import threading

import _common

BATCH = 1000  # increments between two looks at the stop flag
# increments per turn of the lock: a critical section long enough that the GIL often
# changes hands inside it, which is when the other threads block on the lock
LOCKED_RUN = 100
counter = 0


def step() -> int:
    return 1


def increment(slot: int, counts, waits, stop, lock) -> None:
    """Adds to the shared counter until stopped; `lock`, if given, guards each increment, and
    `waits` counts the times it was found taken (the thread then blocks on it)."""
    global counter
    while not stop.is_set():
        if lock is None:
            for _ in range(BATCH):
                counter += step()
        else:
            for _ in range(BATCH // LOCKED_RUN):
                if not lock.acquire(blocking=False):
                    waits[slot] += 1
                    lock.acquire()
                try:
                    for _ in range(LOCKED_RUN):
                        counter += step()
                finally:
                    lock.release()
        counts[slot] += BATCH


def build_parser(doc=__doc__):
    parser = _common.make_parser(doc)
    parser.add_argument("--threads", type=_common.positive_int, default=4, help="threads incrementing the counter")
    return parser


def run(args, scenario: str, lock=None) -> None:
    """Races `args.threads` threads on one counter; lock.py passes a lock to fix it."""
    counts = [0] * args.threads
    waits = [0] * args.threads
    stop = threading.Event()

    def result() -> dict:
        # while the adders run, the last batch of each may be in the counter and not yet counted
        expected = sum(counts)
        actual = counter
        out = {"expected": expected, "actual": actual, "lost": max(0, expected - actual)}
        if lock is not None:
            out["lock waits"] = sum(waits)
        return out

    progress = _common.Progress(scenario, "increments", lambda: sum(counts), result)
    workers = [
        _common.start_thread(f"adder-{i + 1}", increment, i, counts, waits, stop, lock) for i in range(args.threads)
    ]
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish(result=result())  # all stopped: exact


if __name__ == "__main__":
    run(build_parser().parse_args(), "race")
