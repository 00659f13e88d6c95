"""Subinterpreters: from CPython 3.12, interpreters in one process can each have a GIL.

Each thread creates an isolated subinterpreter and spins in pure Python inside it.
Every such interpreter has its own GIL (3.12, 3.13: the private _xxsubinterpreters and
_interpreters modules; 3.14: concurrent.interpreters), so the threads run in parallel
although they share one process. Needs CPython 3.12 or later.
On the timeline: one process, its interpreter threads all running on separate cores.
"""

import inspect
import os
import sys
import threading

import _common

MIN_PYTHON = (3, 12)

# Runs inside each subinterpreter, which shares no objects with this one: progress goes
# out as one byte per loop on a pipe, and the end of the run comes in as end-of-file.
SPIN_IN_INTERPRETER = """
import os
{spin_source}
while True:
    try:
        if os.read({stop_fd}, 1) == b"":
            break
    except BlockingIOError:
        pass
    spin({size})
    os.write({done_fd}, b".")
"""


def run_in_new_interpreter(code: str) -> None:
    """Runs `code` to the end in a fresh isolated interpreter, on the calling thread."""
    try:
        from concurrent import interpreters  # 3.14
    except ImportError:
        interpreters = None
    if interpreters is not None:
        interpreter = interpreters.create()
        try:
            interpreter.exec(code)
        finally:
            interpreter.close()
        return
    try:
        import _interpreters as raw  # 3.13
    except ImportError:
        import _xxsubinterpreters as raw  # 3.12
    interpreter_id = raw.create()  # isolated by default: a GIL of its own
    try:
        failure = raw.run_string(interpreter_id, code)  # 3.12 raises, 3.13 returns the error
        if failure is not None:
            raise RuntimeError(f"subinterpreter failed: {getattr(failure, 'formatted', failure)}")
    finally:
        raw.destroy(interpreter_id)


class DonePipe:
    """Counts the bytes the interpreters write, one per loop done."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.done = 0

    def count(self) -> int:
        while True:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return self.done
            if not chunk:
                return self.done
            self.done += len(chunk)


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--interpreters", type=_common.positive_int, default=2, help="subinterpreters, one thread each")
    parser.add_argument(
        "--size", type=_common.positive_int, default=50_000, help="loop iterations per counted loop"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if sys.version_info[:2] < MIN_PYTHON:
        print(
            f"subinterpreters: needs CPython 3.12 or later for a GIL per interpreter, this is "
            f"{sys.version.split()[0]}; run it with a newer one (e.g. --python 3.12)",
            file=sys.stderr,
        )
        sys.exit(2)
    done = DonePipe()
    stop_read_fd, stop_write_fd = os.pipe()  # closing the write end tells them to stop
    os.set_blocking(stop_read_fd, False)
    code = SPIN_IN_INTERPRETER.format(
        spin_source=inspect.getsource(_common.spin), stop_fd=stop_read_fd, done_fd=done.write_fd, size=args.size
    )
    progress = _common.Progress("subinterpreters", "loops", done.count)
    workers = [
        _common.start_thread(f"interp-{i + 1}", run_in_new_interpreter, code) for i in range(args.interpreters)
    ]
    _common.supervise(workers, lambda: os.close(stop_write_fd), progress, args.duration)
    progress.finish()


if __name__ == "__main__":
    main()
