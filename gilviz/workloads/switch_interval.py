"""The switch interval: how long a thread waiting for the GIL waits before asking for it.

Threads spin in pure Python as in cpu-threads, while the main thread steps
sys.setswitchinterval through the --interval values, --step seconds each. A waiting
thread asks the holder to let go once an interval has passed, so a shorter interval
means more hand-offs (and a little more overhead), a longer one fewer.
On the timeline: the rate at which the GIL changes hands following the interval.
"""

import argparse
import sys
import threading

import _common


def milliseconds_list(text: str) -> list:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"want milliseconds above 0, comma-separated, not {text!r}")
    return values


class IntervalSteps:
    """Sets the next switch interval every `step_s` seconds, cycling through the list."""

    def __init__(self, intervals_ms: list, step_s: float, rates: _common.PhaseRates):
        self.intervals_ms = intervals_ms
        self.step_s = step_s
        self.rates = rates
        self.current = -1

    def __call__(self, elapsed: float) -> None:
        index = int(elapsed // self.step_s) if self.step_s > 0 else 0
        if index != self.current:
            self.current = index
            interval_ms = self.intervals_ms[index % len(self.intervals_ms)]
            sys.setswitchinterval(interval_ms / 1000)
            self.rates.begin(f"loops/s at {interval_ms:g} ms")


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--threads", type=_common.positive_int, default=2, help="CPU-bound threads")
    parser.add_argument(
        "--interval", type=milliseconds_list, default="1,5,20", help="switch intervals in ms, comma-separated"
    )
    parser.add_argument(
        "--step",
        type=_common.non_negative_float,
        default=3.0,
        help="seconds on each interval before the next (0: stay on the first)",
    )
    parser.add_argument(
        "--size", type=_common.positive_int, default=50_000, help="loop iterations per counted loop"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    counts = [0] * args.threads
    stop = threading.Event()
    steps = IntervalSteps(args.interval, args.step, _common.PhaseRates(lambda: sum(counts)))
    progress = _common.Progress("switch-interval", "loops", lambda: sum(counts), steps.rates.result)
    workers = [
        _common.start_thread(f"cpu-{i + 1}", _common.spin_worker, i, counts, stop, args.size)
        for i in range(args.threads)
    ]
    _common.supervise(workers, stop.set, progress, args.duration, on_tick=steps)
    progress.finish()


if __name__ == "__main__":
    main()
