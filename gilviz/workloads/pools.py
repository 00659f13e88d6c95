"""ThreadPoolExecutor against ProcessPoolExecutor on the same CPU-bound tasks.

Each task goes --rounds times over a list of --size numbers in pure Python. In the thread
pool the workers take turns on the GIL, so more workers add nothing. The process pool runs
them in parallel, but every list is pickled, piped to a child and unpickled first: work
the thread pool never does (try --rounds 1 to see it win). The run alternates between the
pools every --phase seconds.
On the timeline: threads taking turns on the GIL, then processes filling the cores, with
the pickling visible as extra work in the parent and the children.
"""

import itertools
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

import _common

IN_FLIGHT_PER_WORKER = 2  # enough queued that no worker ever idles between tasks
POOL_NAMES = {"threads": "thread pool", "processes": "process pool"}


def crunch(numbers, rounds: int) -> int:
    """The task: pure-Python work that needs the GIL throughout."""
    total = 0
    for _ in range(rounds):
        for x in numbers:
            total += x * x % 7
    return total


def make_pool(kind: str, args):
    if kind == "threads":
        return args.threads, ThreadPoolExecutor(
            args.threads, thread_name_prefix="pool-thread", initializer=_common.name_os_thread
        )
    return args.processes, ProcessPoolExecutor(
        args.processes, initializer=_common.prepare_child, initargs=("pool-process",)
    )


def run_pool(kind: str, args, numbers, tally: list, until: float, progress) -> bool:
    """Keeps one pool busy until `until`; False if Ctrl-C cut the run short."""
    workers, pool = make_pool(kind, args)
    try:
        pending = {pool.submit(crunch, numbers, args.rounds) for _ in range(workers * IN_FLIGHT_PER_WORKER)}
        while time.monotonic() < until:
            finished, pending = wait(
                pending, timeout=min(_common.REPORT_EVERY_S, until - time.monotonic()), return_when=FIRST_COMPLETED
            )
            for future in finished:
                future.result()
                tally[0] += 1
                pending.add(pool.submit(crunch, numbers, args.rounds))
            progress.report()
        return True
    except KeyboardInterrupt:
        return False
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--threads", type=_common.positive_int, default=2, help="workers in the thread pool")
    parser.add_argument("--processes", type=_common.positive_int, default=2, help="workers in the process pool")
    parser.add_argument(
        "--size", type=_common.positive_int, default=10_000, help="numbers in each task's list (pickled)"
    )
    parser.add_argument("--rounds", type=_common.positive_int, default=10, help="passes over its list per task")
    parser.add_argument(
        "--pool", choices=("both", "threads", "processes"), default="both", help="which pool(s) to run"
    )
    parser.add_argument(
        "--phase", type=_common.non_negative_float, default=5.0, help="seconds on each pool before switching"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    numbers = list(range(args.size))
    tally = [0]  # tasks finished, counted by this (the main) thread as their futures complete
    rates = _common.PhaseRates(lambda: tally[0])
    progress = _common.Progress("pools", "tasks", lambda: tally[0], rates.result)
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    kinds = ("threads", "processes") if args.pool == "both" else (args.pool,)
    for kind in itertools.cycle(kinds):
        rates.begin(f"tasks/s in the {POOL_NAMES[kind]}")
        phase_end = min(end, time.monotonic() + args.phase) if len(kinds) > 1 and args.phase > 0 else end
        if not run_pool(kind, args, numbers, tally, phase_end, progress) or time.monotonic() >= end:
            break
    progress.finish()


if __name__ == "__main__":
    main()
