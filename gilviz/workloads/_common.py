"""Plumbing shared by the built-in workloads: options, the main thread's wait, progress.

The workloads run by path, so their folder is sys.path[0] and this is imported as
`_common`. It must keep working on CPython 3.9 and later, with or without the GIL.
In every workload the main thread only waits and reports, so that the lanes gilviz draws
are the workers and nothing else.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time

PROGRESS_FD_ENV = "GILVIZ_PROGRESS_FD"
REPORT_EVERY_S = 0.25  # each report wakes the main thread, which then queues for the GIL
PR_SET_PDEATHSIG = 1


# --- options -----------------------------------------------------------------------


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the docstring's paragraphs and shows each option's default."""


def make_parser(doc: str, duration: float = 10.0) -> argparse.ArgumentParser:
    """A parser described by the workload's docstring, with the --duration every one has."""
    parser = argparse.ArgumentParser(description=doc.strip(), formatter_class=_HelpFormatter)
    parser.add_argument(
        "--duration", type=non_negative_float, default=duration, help="seconds to run; 0 runs until killed"
    )
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


# --- the work several scenarios share ----------------------------------------------


def spin(n: int) -> int:
    """Pure-Python CPU work: it needs the GIL for every bytecode it runs."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def spin_worker(slot: int, counts, stop, size: int) -> None:
    """Spins until stopped, counting work units in its own slot (so no lock is needed)."""
    while not stop.is_set():
        spin(size)
        counts[slot] += 1


# --- threads and processes, named for the timeline -----------------------------------


def name_os_thread(name: str | None = None) -> None:
    """Gives the calling OS thread the name gilviz reads from /proc (3.14 does this itself).

    Without a name, the Python thread's own name is used (for pool threads).
    """
    try:
        with open("/proc/thread-self/comm", "w") as comm:
            comm.write((name or threading.current_thread().name)[:15])
    except OSError:
        pass


def start_thread(name: str, target, *args) -> threading.Thread:
    """Starts a worker thread. Daemon, so that a second Ctrl-C always ends the process."""
    thread = threading.Thread(target=_run_named, args=(name, target) + args, name=name, daemon=True)
    thread.start()
    return thread


def _run_named(name: str, target, *args) -> None:
    name_os_thread(name)
    target(*args)


def prepare_child(name: str) -> None:
    """Makes a child process die with its parent, leave Ctrl-C to it, and carry a name."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run on Ctrl-C
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    name_os_thread(name)


def start_process(name: str, target, *args):
    """Starts a daemon child process running `target(*args)`; daemon so it ends with us."""
    import multiprocessing

    process = multiprocessing.Process(target=_child_main, args=(name, target) + args, name=name, daemon=True)
    process.start()
    return process


def _child_main(name: str, target, *args) -> None:
    prepare_child(name)
    target(*args)


# --- the main thread's job -------------------------------------------------------------


class Progress:
    """Cumulative work done, told to gilviz as JSON lines on an inherited descriptor.

    gilviz sets GILVIZ_PROGRESS_FD; without it the run ends with a summary on stdout.
    `count` returns the work done so far by all workers together.
    """

    def __init__(self, scenario: str, unit: str, count, result=None):
        """result: the scenario's result so far (a dict), sent with every report as it changes."""
        self.scenario = scenario
        self.unit = unit
        self.count = count
        self.result = result
        self.started = time.monotonic()
        self._last_report = -math.inf
        self._fd = _progress_fd()

    def report(self) -> None:
        """Sends the running total, at most every REPORT_EVERY_S."""
        now = time.monotonic()
        if self._fd is None or now - self._last_report < REPORT_EVERY_S:
            return
        self._last_report = now
        message = {"done": self.count(), "unit": self.unit}
        if self.result is not None:
            message["result"] = self.result()
        self._send(message)

    def finish(self, result: dict | None = None) -> None:
        """Sends the final total (and the scenario's result), or prints the summary."""
        done = self.count()
        if result is None and self.result is not None:
            result = self.result()
        message = {"done": done, "unit": self.unit, "final": True}
        if result is not None:
            message["result"] = result
        if self._fd is not None and self._send(message):
            return
        elapsed = max(time.monotonic() - self.started, 1e-9)
        line = f"{self.scenario}: {done} {self.unit} in {elapsed:.1f} s ({done / elapsed:.0f} {self.unit}/s)"
        if result:
            line += "".join(f"; {key}: {value}" for key, value in result.items())
        print(line, flush=True)

    def _send(self, message: dict) -> bool:
        try:
            os.write(self._fd, (json.dumps(message) + "\n").encode())
            return True
        except OSError:  # gilviz went away: nobody to tell, so stop trying
            self._fd = None
            return False


def _progress_fd() -> int | None:
    value = os.environ.get(PROGRESS_FD_ENV)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        print(f"ignoring {PROGRESS_FD_ENV}={value!r}: not a file descriptor number", file=sys.stderr)
        return None


def supervise(workers: list, stop, progress: Progress, duration: float, on_tick=None) -> None:
    """Waits for the workers until the duration ends, reporting progress, then stops them.

    `stop()` asks the workers to finish; `duration` 0 runs until killed, and Ctrl-C ends the
    run early as the clock would. `on_tick(elapsed)`, called first at about 0 and then about
    every REPORT_EVERY_S, may change the run as it goes (start more workers, append them
    to `workers`). The waiting is a sleep, so the main thread shows as blocked, not busy.
    """
    started = time.monotonic()
    deadline = started + duration if duration > 0 else math.inf
    try:
        while True:
            alive = [worker for worker in workers if worker.is_alive()]
            now = time.monotonic()
            if not alive or now >= deadline:
                break
            if on_tick is not None:
                on_tick(now - started)
            # a sleep, not a join: Ctrl-C in Thread.join() can mark a live thread as ended
            # (bpo-45274's fix, 3.9 to 3.11), and the final count would be read too early
            time.sleep(min(REPORT_EVERY_S, deadline - now))
            progress.report()
    except KeyboardInterrupt:
        pass
    stop()
    for worker in workers:
        worker.join()


class PhaseRates:
    """Work per second in each phase of a run whose conditions change as it goes.

    A phase label seen again (a cycle) adds to the same total.
    """

    def __init__(self, count):
        self.count = count
        self._work: dict = {}
        self._seconds: dict = {}
        self._label = None
        self._since = (time.monotonic(), count())

    @property
    def label(self):
        return self._label

    def begin(self, label) -> None:
        """Closes the current phase and opens `label`."""
        self._close()
        self._label = label

    def result(self) -> dict:
        self._close()
        return {
            str(label): round(work / self._seconds[label], 1) if self._seconds[label] else 0.0
            for label, work in self._work.items()
        }

    def _close(self) -> None:
        now, done = time.monotonic(), self.count()
        started, done_before = self._since
        if self._label is not None:
            self._work[self._label] = self._work.get(self._label, 0) + done - done_before
            self._seconds[self._label] = self._seconds.get(self._label, 0.0) + now - started
        self._since = (now, done)
