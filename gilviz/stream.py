"""The stream: every record gilviz makes, in one schema, and how records cross a pipe or a file.

The sampler emits records; sinks consume them: a recording file, the live view, the report,
an exporter. Each record kind is a class here, and nowhere else is a record built or read
by its keys. On the wire a record is a JSON object tagged by "k"; a tick carries its threads
and GILs as rows of numbers, and the header names the fields of those rows, so a reader maps
them by name: a field added by a later gilviz is ignored, one it lacks reads as 0. Files of
format 1 (no field names) are read with the fields they were written with.

Durations are integer microseconds, so that any aggregate is an exact sum of what the
kernel's schedstat and the GIL probe reported, never an average of labels.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterable, NamedTuple, Union

FORMAT_VERSION = 2


class State(enum.IntEnum):
    """What a thread was doing; a thread's time in a tick is split among these."""

    RUNNING = 0  # on a CPU holding the GIL (or any Python on a build without one)
    NATIVE = 1  # on a CPU without the GIL and not trying to take it
    WAITING = 2  # wants the GIL: asleep on it, or on a CPU spinning for it
    RUNNABLE = 3  # wants a CPU, none free
    SLEEP = 4  # blocked: sleeping
    IO = 5  # blocked: I/O
    LOCK = 6  # blocked: a lock, a join, a queue
    OTHER = 7  # blocked: any other syscall, or stopped (Ctrl-Z, SIGSTOP, a debugger)

    @property
    def key(self) -> str:
        """Its name in records and reports: running, native, waiting, runnable, sleep, io, lock, other."""
        return self.name.lower()


STATES = tuple(State)
STATE_KEYS = tuple(s.key for s in State)
BLOCKED = (State.SLEEP, State.IO, State.LOCK, State.OTHER)
BLOCK_REASONS = tuple(s.key for s in BLOCKED)


class ThreadTick(NamedTuple):
    """One thread over one tick; the state fields (in State's order) add up to the tick."""

    tid: int
    cpu: int  # the core it last ran on, -1 if unknown
    running: int
    native: int
    waiting: int
    runnable: int
    sleep: int
    io: int
    lock: int
    other: int
    held: int  # time it held the GIL (may overlap runnable or blocked)
    oncpu: int  # time on a CPU (running + native + the part of waiting spent spinning)
    line: int = 0  # the Line a stack reading taken in this tick found it on (0: no reading this tick)

    @property
    def blocked(self) -> int:
        return self.sleep + self.io + self.lock + self.other

    def time_in(self, state: State) -> int:
        return self[2 + state]


class GilTick(NamedTuple):
    """One GIL over one tick, from the GIL probe's samples."""

    pid: int
    samples: int
    held: int  # samples that found it locked
    contended: int  # samples that found a thread waiting for it
    switches: int  # hand-offs (switch_number delta)
    interp: int = 0  # the interpreter whose GIL it is: 0 is the main one (others: subinterpreters' own)
    holder: int = 0  # the thread that held it in most samples, 0 if none


# Field names of a tick's rows, as written by each format without a header naming them.
_FORMAT1_FIELDS = {"threads": ThreadTick._fields, "gils": GilTick._fields[:5]}


@dataclass(slots=True)
class Tick:
    """Every thread's state over one time step, per-core load, and the GILs."""

    KIND: ClassVar[str] = "tick"
    t: int  # end of the step, microseconds since the stream began
    dt: int  # length of the step, microseconds
    threads: list[ThreadTick] = field(default_factory=list)
    gils: list[GilTick] = field(default_factory=list)
    # per CPU, us busy (any process) since the previous reading; empty on ticks between readings
    core_busy: list[int] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        # plain tuples: orjson writes them as arrays at C speed, where each NamedTuple row would cost
        # a call back into Python (a quarter of a 1000-thread tick's encoding)
        return {"k": "tick", "t": self.t, "dt": self.dt, "th": list(map(tuple, self.threads)),
                "g": list(map(tuple, self.gils)), "c": self.core_busy}


@dataclass(slots=True)
class _Record:
    """A record that crosses the wire as a JSON object of its fields (tagged with its KIND)."""

    KIND: ClassVar[str] = ""
    WIRE: ClassVar[dict[str, str]] = {}  # field -> its key on the wire, where they differ
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # fields a record of this kind is nothing without

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"k": self.KIND}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None or f.name == "t":
                out[self.WIRE.get(f.name, f.name)] = value
        return out

    @classmethod
    def from_wire(cls, rec: dict[str, Any]):
        for name in cls.REQUIRED:
            rec[cls.WIRE.get(name, name)]  # KeyError: not a record of this kind
        kwargs = {}
        for f in fields(cls):
            key = cls.WIRE.get(f.name, f.name)
            if key in rec:
                kwargs[f.name] = rec[key]
        return cls(**kwargs)


@dataclass(slots=True)
class Header(_Record):
    KIND: ClassVar[str] = "header"
    format: int = FORMAT_VERSION
    fields: dict[str, list[str]] | None = None  # names of a tick's row fields
    gilviz: str | None = None
    start: str | None = None  # wall-clock start, ISO 8601
    cpus: int | None = None
    tick_hz: float | None = None
    gil_hz: float | None = None
    command: str | None = None
    argv: list[str] | None = None
    scenario: str | None = None
    python: str | None = None  # the interpreter's path
    python_version: str | None = None
    gil_enabled: bool | None = None
    pid: int | None = None
    monotonic_ns: int | None = None  # CLOCK_MONOTONIC at the stream's time 0, to line it up with other tools
    t: int = 0


@dataclass(slots=True)
class Process(_Record):
    """What is known of a process: sent when it is found and whenever its GIL changes."""

    KIND: ClassVar[str] = "proc"
    REQUIRED: ClassVar[tuple[str, ...]] = ("pid",)
    t: int = 0
    pid: int = 0
    ppid: int = 0
    command: str = ""
    python: str | None = None  # its version, None if not Python
    gil: str | None = None  # located, not located, no GIL, not python
    switch_interval_us: int | None = None
    gil_found_by: str | None = None  # debug offsets, shape
    gil_why: str | None = None  # why it is not located
    interpreters: list[int] | None = None  # subinterpreters with a GIL of their own


class Unsplit:
    """Which processes' threads' time on a CPU a tick's GIL samples did not split into Python and
    C, as the state rules split it: a live Python process with a GIL (located or not; free-threaded,
    any Python runs; not Python, all is native) whose main GIL has no sample in the tick. Its
    running may be C. Fed the Process and ProcessEnd records, in the stream's order."""

    def __init__(self) -> None:
        self.with_gil: set[int] = set()

    def process(self, rec: Process) -> None:
        if rec.python is not None and rec.gil in ("located", "not located"):
            self.with_gil.add(rec.pid)
        else:
            self.with_gil.discard(rec.pid)

    def ended(self, pid: int) -> None:
        self.with_gil.discard(pid)

    def in_tick(self, gils: Iterable) -> set[int]:
        """gils: the tick's GilTicks, or their fields as recorded."""
        if not self.with_gil:
            return set()
        return self.with_gil - {g[0] for g in gils if g[1] > 0 and (len(g) < 6 or not g[5])}


@dataclass(slots=True)
class ProcessEnd(_Record):
    KIND: ClassVar[str] = "proc_end"
    REQUIRED: ClassVar[tuple[str, ...]] = ("pid",)
    t: int = 0
    pid: int = 0


@dataclass(slots=True)
class Thread(_Record):
    """A thread seen for the first time, or its name changed."""

    KIND: ClassVar[str] = "thread"
    REQUIRED: ClassVar[tuple[str, ...]] = ("tid",)
    t: int = 0
    tid: int = 0
    pid: int | None = None
    name: str = ""


@dataclass(slots=True)
class Line(_Record):
    """A Python line a thread was found on, named once; ticks refer to it by id.

    A tick's `line` is set only for the threads a stack reading saw during that tick, so the
    ticks that carry a line are a sample of each thread's life: time per line is their time,
    scaled to the thread's whole life (`gilviz.lines`)."""

    KIND: ClassVar[str] = "line"
    REQUIRED: ClassVar[tuple[str, ...]] = ("id", "file", "line")
    t: int = 0
    id: int = 0
    file: str = ""
    line: int = 0
    function: str = ""


@dataclass(slots=True)
class StackEntry:
    tid: int
    name: str = ""
    line: str = ""  # "func (file.py:12)", the innermost Python frame
    owns_gil: bool = False
    active: bool = True
    frames: list[str] = field(default_factory=list)  # innermost first


@dataclass(slots=True)
class Stack(_Record):
    """Every thread's Python stack at one moment; `by`: what read it ("gilviz" from the target's
    memory, "_remote_debugging" by CPython's own reader, "py-spy"; recordings before it: py-spy).
    Where gilviz read it, owns_gil and active are the tick's measure, not a reading of their own."""

    KIND: ClassVar[str] = "stack"
    t: int = 0
    pid: int = 0
    threads: list[StackEntry] = field(default_factory=list)
    by: str = "py-spy"

    def to_wire(self) -> dict[str, Any]:
        # (by hand: dataclasses.asdict deep-copies every list of frames, five times a second)
        return {"k": "stack", "t": self.t, "pid": self.pid,
                "threads": [{"tid": e.tid, "name": e.name, "line": e.line, "owns_gil": e.owns_gil, "active": e.active,
                             "frames": e.frames} for e in self.threads], "by": self.by}

    @classmethod
    def from_wire(cls, rec: dict[str, Any]) -> "Stack":
        entries = [StackEntry(th["tid"], th.get("name", ""), th.get("line", ""), bool(th.get("owns_gil")),
                              th.get("active", True) is not False, list(th.get("frames") or []))
                   for th in rec["threads"]]
        return cls(rec.get("t", 0), rec["pid"], entries, str(rec.get("by") or "py-spy"))


@dataclass(slots=True)
class Output(_Record):
    """What the workload printed."""

    KIND: ClassVar[str] = "out"
    WIRE: ClassVar[dict[str, str]] = {"stream": "s", "data": "d"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("data",)
    t: int = 0
    stream: str = "out"  # out or err
    data: str = ""


@dataclass(slots=True)
class Progress(_Record):
    """Work a built-in workload reports it has done (and, at its end, its result)."""

    KIND: ClassVar[str] = "progress"
    t: int = 0
    done: float | None = None
    unit: str | None = None
    final: bool | None = None
    result: dict[str, Any] | None = None


@dataclass(slots=True)
class Stats(_Record):
    """The sampler's own cost and rates, every half second."""

    KIND: ClassVar[str] = "stats"
    t: int = 0
    overhead: float = 0.0  # its CPU, in cores
    gil_hz: float = 0.0
    gil_hz_target: float = 0.0
    tick_hz: float | None = None  # ticks achieved, and the rate the budget now allows
    tick_hz_target: float | None = None
    stacks_hz: float | None = None  # stack readings a second the budget now allows (per process)
    stacks_by: str | None = None  # what reads them: "gilviz", "_remote_debugging" (3.14+ it cannot read), "py-spy"
    idle_read_every: int | None = None  # over budget: a thread idle a while is read once in this many ticks
    wake_hz: float | None = None  # the sampler's wake-ups: its ticks' and its GIL samples' between them
    core_others: float | None = None  # share of the sampler's core others kept busy (GIL sampling's room)


@dataclass(slots=True)
class Notice(_Record):
    """Something the user should know once (a missing tool)."""

    KIND: ClassVar[str] = "notice"
    t: int = 0
    text: str = ""


@dataclass(slots=True)
class End(_Record):
    """How the stream ended; a recording without one was cut short."""

    KIND: ClassVar[str] = "end"
    t: int = 0
    reason: str = "stopped"  # exited, duration, interrupted, stopped
    exit_code: int | None = None  # the target's, when gilviz started it (negative: killed by that signal)
    ticks: int | None = None
    gil_samples: int | None = None
    sampler_cpu_s: float | None = None
    sampler_wall_s: float | None = None
    stacks_error: str | None = None


@dataclass(slots=True)
class Compare(_Record):
    """The first line of a file holding two runs side by side: each of their records carries
    "run" (0 or 1) on the wire, and each run starts with its own Header."""

    KIND: ClassVar[str] = "compare"
    format: int = FORMAT_VERSION
    runs: list[str] = field(default_factory=list)  # what each run is, as the user named it
    together: bool = False  # run at the same time (sharing the cores), else one after the other
    t: int = 0


Record = Union[Header, Process, ProcessEnd, Thread, Tick, Stack, Line, Output, Progress, Stats, Notice, End]
_KINDS: dict[str, type] = {cls.KIND: cls for cls in (Header, Process, ProcessEnd, Thread, Tick, Stack, Line, Output,
                                                     Progress, Stats, Notice, End)}
IGNORED_KINDS = {"interpreters"}  # written by format 1, its news now in Process


def header_fields() -> dict[str, list[str]]:
    return {"threads": list(ThreadTick._fields), "gils": list(GilTick._fields)}


_new_tuple = tuple.__new__


class Decoder:
    """Turns wire records into typed ones, mapping a tick's row fields by the names in the header."""

    def __init__(self, header: Header | None = None):
        names = (header.fields if header is not None else None) or _FORMAT1_FIELDS
        self._thread_row = self._mapper(names.get("threads") or _FORMAT1_FIELDS["threads"], ThreadTick)
        self._gil_row = self._mapper(names.get("gils") or _FORMAT1_FIELDS["gils"], GilTick)

    @staticmethod
    def _mapper(written: list[str] | tuple[str, ...], cls):
        """Row (as written) -> cls; None when the row's layout is ours (rows can be taken as they are)."""
        ours = cls._fields
        if tuple(written) == ours:
            return None
        if tuple(written) == ours[: len(written)]:
            return None  # a prefix: the defaults fill the rest
        index = [written.index(name) if name in written else -1 for name in ours]
        return lambda row: cls(*[row[i] if 0 <= i < len(row) else 0 for i in index])

    def decode(self, rec: dict[str, Any]) -> Record | None:
        """The typed record; None for a kind this gilviz does not know. KeyError, TypeError or
        ValueError for a record of the wrong shape (see `well_formed`)."""
        kind = rec.get("k")
        if kind == "tick":
            mt, mg = self._thread_row, self._gil_row
            if mt is None:  # rows as they are (tuple.__new__: a NamedTuple's call costs twice as much)
                n = len(ThreadTick._fields)
                threads = [_new_tuple(ThreadTick, th) if len(th) == n else ThreadTick(*th) for th in rec["th"]]
            else:
                threads = [mt(th) for th in rec["th"]]
            gils = [GilTick(*g) if mg is None else mg(g) for g in rec["g"]]
            return Tick(rec["t"], rec["dt"], threads, gils, rec["c"])
        cls = _KINDS.get(kind)  # type: ignore[arg-type]
        if cls is None:
            return None
        return cls.from_wire(rec)


def decode_header(rec: dict[str, Any]) -> Header:
    header = Header.from_wire(rec)
    if header.fields is None and header.format < 2:
        header.fields = {k: list(v) for k, v in _FORMAT1_FIELDS.items()}
    return header


def well_formed(rec: Any) -> bool:
    """Has the wire record the fields its readers rely on, of the right types? (Unknown kinds
    pass: a newer gilviz may add some, and readers skip them.)"""
    if not isinstance(rec, dict):
        return False
    kind = rec.get("k")
    try:
        if kind == "tick":
            return (type(rec["t"]) is int and type(rec["dt"]) is int and rec["dt"] >= 0
                    and all(len(th) >= 12 and type(sum(th)) is int for th in rec["th"])
                    and all(len(g) >= 5 and type(sum(g)) is int for g in rec["g"])
                    and type(sum(rec["c"])) is int)
        if kind == "thread":
            return type(rec["tid"]) is int and type(rec.get("pid")) in (int, type(None))
        if kind in ("proc", "proc_end"):
            return type(rec["pid"]) is int
        if kind == "stack":
            return type(rec["pid"]) is int and all(type(th["tid"]) is int for th in rec["threads"])
        if kind == "line":
            return type(rec["id"]) is int and isinstance(rec["file"], str) and type(rec["line"]) is int
        if kind == "out":
            return isinstance(rec["d"], str) and isinstance(rec["s"], str)
        if kind == "progress":
            return type(rec.get("done", 0)) in (int, float) and isinstance(rec.get("result", {}), dict)
        if kind in ("end", "stats", "notice"):
            return all(type(rec.get(k, 0)) in (int, float, type(None)) for k in ("t",))
    except (KeyError, TypeError):
        return False
    return isinstance(kind, str)
