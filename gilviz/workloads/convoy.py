"""The convoy effect: a CPU-bound thread slows down an I/O-bound one.

One thread sends requests to a local echo service (a child process) and waits for each
answer, which comes back within a fraction of a millisecond. Alone it makes thousands of
round trips a second. Once a CPU-bound thread is spinning, the I/O thread wakes from each
wait to find the GIL taken, and waits up to a switch interval (5 ms) for it. CPU threads
are added one at a time (--ramp), so the slowdown can be watched as it grows.
On the timeline: the I/O thread's short bursts, each preceded by a wait for the GIL, and
its round trips per second falling as CPU threads join.
"""

import threading

import _common
import _echo


class Ramp:
    """Adds a CPU thread every --ramp seconds and notes the I/O rate under each load."""

    def __init__(self, args, workers: list, io_counts, stop):
        self.args = args
        self.workers = workers
        self.stop = stop
        self.cpu_counts = [0] * args.cpu_threads
        self.started = 0
        self.rates = _common.PhaseRates(lambda: sum(io_counts))

    def __call__(self, elapsed: float) -> None:
        while self.started < self.args.cpu_threads and elapsed >= (self.started + 1) * self.args.ramp:
            self.workers.append(
                _common.start_thread(
                    f"cpu-{self.started + 1}", _common.spin_worker, self.started, self.cpu_counts, self.stop,
                    self.args.size,
                )
            )
            self.started += 1
        if self.rates.label != self.label():
            self.rates.begin(self.label())

    def label(self) -> str:
        return f"round trips/s with {self.started} cpu thread{'' if self.started == 1 else 's'}"


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument(
        "--cpu-threads", type=_common.non_negative_int, default=2, help="CPU-bound threads added next to the I/O thread"
    )
    parser.add_argument(
        "--ramp",
        type=_common.non_negative_float,
        default=3.0,
        help="seconds between added CPU threads (0: all at once)",
    )
    parser.add_argument(
        "--size", type=_common.positive_int, default=50_000, help="loop iterations per counted CPU loop"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    address, service = _echo.start_service("echo-service", 0.0)
    io_counts = [0]
    stop = threading.Event()
    workers = [_common.start_thread("io", _echo.client_worker, 0, io_counts, stop, address)]
    ramp = Ramp(args, workers, io_counts, stop)
    progress = _common.Progress("convoy", "round trips", lambda: io_counts[0], ramp.rates.result)
    _common.supervise(workers, stop.set, progress, args.duration, on_tick=ramp)
    progress.finish()
    service.terminate()


if __name__ == "__main__":
    main()
