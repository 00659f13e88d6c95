"""Many threads: every Python thread is a real OS thread, even one that only sleeps.

A hundred threads each wake up now and then, count the wake-up and go back to sleep.
The operating system knows each of them (the final result counts the process's OS
threads), each with its own stack, though they need almost no CPU and rarely the GIL.
On the timeline: a hundred lanes, almost all blocked in sleep, nearly no CPU.
"""

import os
import threading
import time

import _common


def sleeper(slot: int, counts, stop, nap_s: float, offset_s: float) -> None:
    """Sleeps, wakes, counts; the offset spreads the wake-ups over the nap."""
    time.sleep(offset_s)
    while not stop.is_set():
        counts[slot] += 1
        time.sleep(nap_s)


def os_thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()  # the Python view, where /proc is missing


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--threads", type=_common.positive_int, default=100, help="sleeping threads")
    parser.add_argument("--sleep", type=_common.non_negative_float, default=1.0, help="seconds each nap lasts")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    counts = [0] * args.threads
    stop = threading.Event()
    progress = _common.Progress("many-threads", "wake-ups", lambda: sum(counts))
    workers = [
        _common.start_thread(
            f"sleeper-{i + 1}", sleeper, i, counts, stop, args.sleep, args.sleep * i / args.threads
        )
        for i in range(args.threads)
    ]
    os_threads = os_thread_count()
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish(result={"os_threads": os_threads})


if __name__ == "__main__":
    main()
