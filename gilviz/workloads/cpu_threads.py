"""CPU-bound threads: real OS threads, yet only one of them runs Python at a time.

Every thread spins in pure Python. The GIL lets one thread execute bytecode at a time,
so N threads get through no more loops than one would, and the hand-offs cost a little.
On the timeline: one thread running while the others wait for the GIL, the holder
changing about every switch interval (5 ms), about one core busy in all.
"""

import threading

import _common


def build_parser(doc=__doc__):
    parser = _common.make_parser(doc)
    parser.add_argument("--threads", type=_common.positive_int, default=4, help="CPU-bound threads")
    parser.add_argument(
        "--size", type=_common.positive_int, default=50_000, help="loop iterations per counted loop"
    )
    return parser


def run(args, scenario: str) -> None:
    """Spins `args.threads` threads for the duration; shared with free_threaded.py."""
    counts = [0] * args.threads
    stop = threading.Event()
    progress = _common.Progress(scenario, "loops", lambda: sum(counts))
    workers = [
        _common.start_thread(f"cpu-{i + 1}", _common.spin_worker, i, counts, stop, args.size)
        for i in range(args.threads)
    ]
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish()


if __name__ == "__main__":
    run(build_parser().parse_args(), "cpu-threads")
