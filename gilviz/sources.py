"""Where a view's records come from: a sampler process, or a recording.

Both have one interface (memray's injected reader): `run(emit)` blocks in a worker thread
and calls `emit(record)` for every typed record (stream.py) until the stream ends or `stop()`
is called; `fresh()` returns the same source from its beginning (restart). What a source can
do is declared in its `capabilities`, so a view never asks what kind it is. No Textual here.

`Feed` is the hand-over between the reading thread and the app: records pile up under a
lock and the app takes them all at once, so the app never falls behind the stream however
slow a frame is, and the reader never waits for the screen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .errors import UserError
from .recording import read
from .stream import Decoder, End, Record, Tick, decode_header

Emit = Callable[[Record], None]
BATCH_S = 0.015  # a replay hands over what falls due within this, at once


@dataclass(frozen=True)
class Capabilities:
    live: bool  # a running target, sampled now (else a recording played back)
    pausable: bool  # the flow of records can be held (a live target keeps being sampled regardless)
    restartable: bool  # fresh() starts it over
    seekable: bool = False  # it can jump to a time


class Feed:
    """Records handed from a reader thread to the app; `wake` is called once per pile."""

    def __init__(self, wake: Callable[[], None] | None = None):
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        self._woken = False
        self.generation = 0
        self.wake = wake

    def push(self, generation: int, rec: Record) -> None:
        with self._lock:
            if generation != self.generation:
                return  # from a source that was replaced
            self._items.append(rec)
            wake = not self._woken
            self._woken = True
        if wake and self.wake is not None:
            self.wake()

    def take(self) -> list[Record]:
        with self._lock:
            items, self._items = self._items, []
            self._woken = False
        return items

    def next_generation(self) -> int:
        with self._lock:
            self.generation += 1
            self._items = []
            self._woken = False
            return self.generation


class Source:
    capabilities = Capabilities(live=False, pausable=False, restartable=False)
    label = ""
    scenario: str | None = None

    def run(self, emit: Emit) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def set_paused(self, paused: bool) -> None:
        pass

    def fresh(self) -> "Source":
        return self


class LiveSource(Source):
    """A sampler in a process of its own (`gilviz _sample`), its records read from a pipe."""

    capabilities = Capabilities(live=True, pausable=False, restartable=True)

    def __init__(self, target: list[str], options: list[str] | None = None, label: str | None = None,
                 scenario: str | None = None, python: str = sys.executable):
        self.target = list(target)
        self.options = list(options or [])
        self.label = label or " ".join(self.target) or "default scenario"
        self.scenario = scenario
        self.python = python
        self._proc: subprocess.Popen | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    @property
    def argv(self) -> list[str]:
        return [self.python, "-m", "gilviz", "_sample", *self.options, *self.target]

    def run(self, emit: Emit) -> None:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        with self._lock:
            if self._stopped.is_set():
                return
            try:
                self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, env=env, start_new_session=True)
            except OSError as e:
                raise UserError(f"cannot start the sampler: {e.strerror}") from None
        proc = self._proc
        assert proc.stdout is not None and proc.stderr is not None
        errors: list[bytes] = []
        pump = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True,
                                name="gilviz-sampler-stderr")
        pump.start()
        saw_end = False
        try:
            for rec in read(proc.stdout):
                if isinstance(rec, End):
                    saw_end = True
                emit(rec)
        except UserError:
            pass  # no header: the sampler failed before it began; its stderr says why
        finally:
            proc.stdout.close()
            rc = proc.wait()
            pump.join(timeout=2)
        if not saw_end and not self._stopped.is_set():
            text = b"".join(errors).decode(errors="replace").strip()
            lines = [ln for ln in text.splitlines() if ln.strip()]
            message = lines[-1] if lines else f"the sampler ended with status {rc}"
            if message.startswith("gilviz: "):
                message = message[len("gilviz: "):]
            raise UserError(message)

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)  # it ends and reaps its workload
            except ProcessLookupError:
                pass

    def wait_stopped(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2)

    def fresh(self) -> "LiveSource":
        return LiveSource(self.target, self.options, self.label, self.scenario, self.python)


SPEEDS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # a replay's speeds, from slow motion to fast forward


class ReplaySource(Source):
    """A recording played back at `speed` times real time (0: all at once), that can be paused,
    stepped a tick at a time, sped up or slowed down, and moved forward to a time."""

    capabilities = Capabilities(live=False, pausable=True, restartable=True, seekable=True)

    def __init__(self, path: str, speed: float = 1.0, records: list[Record] | None = None,
                 clock: Callable[[], float] = time.monotonic, run: int = 0):
        """run: which of the two runs of a comparison recording to play."""
        self.path = path
        self.speed = speed
        self.run_index = run
        self.label = os.path.basename(path)
        self._records = records
        self._clock = clock
        self.scenario = None
        self.position = 0  # stream time of the last tick handed over
        self.done = False  # every record has been handed over
        self._cond = threading.Condition()
        self._stopped = False
        self._paused = False
        self._steps = 0  # ticks to hand over while paused
        self._seek_to: int | None = None  # hand over at once every tick up to this time
        self._anchor: tuple[float, int] | None = None  # (clock, stream time) the playback runs from
        self._reading = False  # run() is handing records over
        self._parked = False  # it waits, paused, before a tick

    def run(self, emit: Emit) -> None:
        records = self._records if self._records is not None else read(self.path, run=self.run_index)
        self._reading = True
        try:
            for rec in records:
                if isinstance(rec, Tick) and not self._wait_for(rec.t):
                    return
                emit(rec)
                if isinstance(rec, Tick):
                    self.position = rec.t
            self.done = True
        finally:
            with self._cond:
                self._reading = False
                self._cond.notify_all()

    def _wait_for(self, t: int) -> bool:
        """Waits until the tick ending at stream time t is due; False once stopped."""
        with self._cond:
            while not self._stopped:
                if self._seek_to is not None:
                    if self.position < self._seek_to:  # up to the tick that covers the time sought
                        return True
                    self._seek_to = None
                    self._anchor = None
                if self._steps:
                    self._steps -= 1
                    self._anchor = None
                    return True
                if self._paused:
                    self._parked = True
                    self._cond.notify_all()
                    self._cond.wait()
                    self._parked = False
                    continue
                if self.speed <= 0:
                    return True
                now = self._clock()
                if self._anchor is None:
                    self._anchor = (now, t)  # playing (again) from here
                wall0, data0 = self._anchor
                delay = wall0 + (t - data0) / 1e6 / self.speed - now
                if delay <= BATCH_S:  # ticks due within a frame go together
                    return True
                self._cond.wait(min(delay, 0.05))
            return False

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def set_paused(self, paused: bool) -> None:
        """Pausing returns once nothing more is on its way (a tick already due is handed over
        first), so the view can stop exactly at the last tick it has."""
        with self._cond:
            self._paused = paused
            self._anchor = None
            self._cond.notify_all()
            if paused:
                self._cond.wait_for(lambda: self._parked or not self._reading or self._stopped or bool(self._steps)
                                    or self._seek_to is not None, timeout=0.5)

    @property
    def paused(self) -> bool:
        return self._paused

    def set_speed(self, speed: float) -> None:
        with self._cond:
            self.speed = speed
            self._anchor = None
            self._cond.notify_all()

    def step(self, ticks: int = 1) -> None:
        """Hands over the next `ticks` ticks (while paused: it stays paused after them)."""
        with self._cond:
            self._steps += ticks
            self._cond.notify_all()

    def seek(self, t: int) -> None:
        """Hands over at once every tick up to stream time t (a replay only goes forward)."""
        with self._cond:
            self._seek_to = t
            self._cond.notify_all()

    def fresh(self) -> "ReplaySource":
        again = ReplaySource(self.path, self.speed, self._records, self._clock, self.run_index)
        again.scenario = self.scenario
        return again


def decode_all(records: Iterable[Record | dict[str, Any]]) -> Iterator[Record]:
    """Records as typed ones; wire dicts (as tests write them) are decoded, a header first."""
    decoder = Decoder()
    for rec in records:
        if isinstance(rec, dict):
            if rec.get("k") == "header":
                header = decode_header(rec)
                decoder = Decoder(header)
                yield header
                continue
            decoded = decoder.decode(rec)
            if decoded is None:
                continue
            rec = decoded
        yield rec


class RecordsSource(ReplaySource):
    """Records already in memory (tests, benchmarks)."""

    def __init__(self, records: Iterable[Record | dict[str, Any]], speed: float = 0.0, label: str = "records"):
        super().__init__(label, speed, list(decode_all(records)))
        self.label = label


class StagedSource(ReplaySource):
    """A recording handed over as far as an exporter says and no further: every record before
    the first tick that ends after `until`. `settled` tells when all of that has been handed
    over, so a frame drawn then is the same every time."""

    def __init__(self, path: str, speed: float = 1.0, run: int = 0):
        super().__init__(path, speed, run=run)
        self.until = -1
        self._held_at: int | None = None  # the tick it is holding back

    def advance(self, until: int) -> None:
        with self._cond:
            self.until = until
            self._cond.notify_all()

    @property
    def settled(self) -> bool:
        with self._cond:
            return self.done or (self._held_at is not None and self._held_at > self.until)

    def _wait_for(self, t: int) -> bool:
        with self._cond:
            while not self._stopped:
                if t <= self.until:
                    return True
                self._held_at = t
                self._cond.wait()
            return False

    def fresh(self) -> "StagedSource":
        return StagedSource(self.path, self.speed, self.run_index)
