"""Collectors: whatever is made of the record stream (a report, the live view's timeline, an
export) is made by one, fed the same records live or from a file.

A collector has `add(record)` and `finish()`; `replay(records, collector)` feeds it a
recording, and the session feeds it live. `Recording` keeps everything (for tests and tools
that want it all); the report (report.py) and the live view's timeline (timeline.py) keep
only what they need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import IO, Iterable, Protocol, TypeVar

from .recording import Damage, read
from .stream import (End, Header, Line, Notice, Output, Process, Progress, Record, Stack, Stats, Thread, Tick)


class Collector(Protocol):
    def add(self, record: Record) -> None:
        """One record of the stream, in order."""

    def finish(self) -> None:
        """The stream has ended (or was cut short)."""


C = TypeVar("C", bound=Collector)


def replay(records: Iterable[Record], collector: C) -> C:
    for record in records:
        collector.add(record)
    collector.finish()
    return collector


def replay_file(source: str | os.PathLike | IO[bytes], collector: C, damage: Damage | None = None, run: int = 0) -> C:
    """Feeds a recording (one run of a comparison) to a collector."""
    return replay(read(source, damage, run), collector)


@dataclass
class Recording:
    """A whole recording in memory."""

    header: Header = field(default_factory=Header)
    ticks: list[Tick] = field(default_factory=list)
    threads: dict[int, Thread] = field(default_factory=dict)  # latest word on each
    processes: dict[int, Process] = field(default_factory=dict)  # latest word on each
    proc_history: list[Process] = field(default_factory=list)  # every word, in order
    stacks: list[Stack] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    output: list[Output] = field(default_factory=list)
    stats: list[Stats] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    end: End | None = None
    damage: Damage = field(default_factory=Damage)

    def add(self, rec: Record) -> None:
        if isinstance(rec, Tick):
            self.ticks.append(rec)
        elif isinstance(rec, Thread):
            known = self.threads.get(rec.tid)
            if known is not None and known.pid == rec.pid and not rec.name:
                return
            self.threads[rec.tid] = rec
        elif isinstance(rec, Process):
            self.processes[rec.pid] = rec
            self.proc_history.append(rec)
        elif isinstance(rec, Stack):
            self.stacks.append(rec)
        elif isinstance(rec, Line):
            self.lines.append(rec)
        elif isinstance(rec, Output):
            self.output.append(rec)
        elif isinstance(rec, Stats):
            self.stats.append(rec)
        elif isinstance(rec, Progress):
            self.progress.append(rec)
        elif isinstance(rec, Notice):
            self.notices.append(rec.text)
        elif isinstance(rec, End):
            self.end = rec
        elif isinstance(rec, Header):
            self.header = rec

    def finish(self) -> None:
        pass

    @property
    def truncated(self) -> bool:
        return self.end is None


def load(source: str | os.PathLike | IO[bytes]) -> Recording:
    damage = Damage()
    return replay_file(source, Recording(damage=damage), damage)
