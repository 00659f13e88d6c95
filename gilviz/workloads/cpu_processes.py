"""CPU-bound processes: each has its own interpreter and its own GIL, so they run in parallel.

The same pure-Python spinning as cpu-threads, but in child processes. Nothing is shared
between them but a small block of counters; real programs pay for the separation with
memory and with pickling whatever they send each other. On the timeline: N processes,
each running on a core of its own.
"""

import multiprocessing

import _common


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--processes", type=_common.positive_int, default=2, help="CPU-bound child processes")
    parser.add_argument(
        "--size", type=_common.positive_int, default=50_000, help="loop iterations per counted loop"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    counts = multiprocessing.RawArray("q", args.processes)  # shared memory: one slot per child
    stop = multiprocessing.Event()
    progress = _common.Progress("cpu-processes", "loops", lambda: sum(counts))
    workers = [
        _common.start_process(f"cpu-proc-{i + 1}", _common.spin_worker, i, counts, stop, args.size)
        for i in range(args.processes)
    ]
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish()


if __name__ == "__main__":
    main()
