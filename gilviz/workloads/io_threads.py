"""I/O-bound threads: a thread waiting on a socket has let go of the GIL.

Each thread sends requests to a slow local service (a child process that answers after
--latency ms) and waits for the reply. While it waits in the kernel, it holds no GIL, so
many requests are in flight at once and threads suit this kind of work well.
On the timeline: the threads mostly blocked on I/O, the GIL mostly free, little CPU.
"""

import threading

import _common
import _echo


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--threads", type=_common.positive_int, default=16, help="threads making requests")
    parser.add_argument(
        "--latency", type=_common.non_negative_float, default=50.0, help="ms the service takes to answer"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    address, service = _echo.start_service("io-service", args.latency / 1000)
    counts = [0] * args.threads
    stop = threading.Event()
    progress = _common.Progress("io-threads", "requests", lambda: sum(counts))
    workers = [
        _common.start_thread(f"io-{i + 1}", _echo.client_worker, i, counts, stop, address) for i in range(args.threads)
    ]
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish()
    service.terminate()


if __name__ == "__main__":
    main()
