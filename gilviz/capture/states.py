"""The state rules: one thread's readings over one tick turned into time in each State.

A pure function of its inputs and the thread's memory of earlier ticks (ThreadMemory), so
that the rules the pictures rest on are tested on recorded readings, without a process
(tests/test_states.py):

  on-CPU time (schedstat)  -> running while it held the GIL, the rest native or waiting
  run-queue time           -> runnable
  off-CPU time             -> blocked (sleep / io / lock / other) or waiting, from the
                              syscall it was in at the two ends of the tick

On-CPU time without the GIL is GIL overhead (waiting) when the thread has lately been
running Python, or when it came in short runs next to a GIL wait; else native.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..native import compiled as _gilloop
from ..probes.threads import ThreadReading, scheduler_tick_us
from ..stream import BLOCK_REASONS, ThreadTick

# GIL overhead comes in short runs on a CPU; C code that released the GIL, in long ones
SPIN_RUN_US = 150
HELD_SHARE_WEIGHT = 0.2  # of the latest tick in held_share: about the last 25 ms
PYTHON_THREAD_HELD_SHARE = 0.15  # held the GIL this much of late: it is running Python
MAX_PENDING_US = 10_000  # schedstat lags a running thread by one scheduler tick (1 to 10 ms)
# A thread on a CPU has its time added to schedstat at every scheduler tick (and when it leaves
# the CPU): runnable this long with none added, and no CPU got, it was waiting for one (0.8 ms more:
# each thread's reading comes a little earlier or later in its tick)
UNREPORTED_ON_US = scheduler_tick_us() + 800
RUNQ_AHEAD_US = 1_000_000  # run-queue time placed before the kernel reports it: a wait for a CPU that long

_BLOCK_INDEX = {kind: i for i, kind in enumerate(BLOCK_REASONS)}

# what the thread's process knows of its GIL (GilProbe.status, or "not python")
LOCATED, NOT_PYTHON = "located", "not python"


@dataclass(slots=True)
class ThreadMemory:
    """What the rules remember of a thread between ticks."""

    on_ns: int = 0  # schedstat at the last reading
    runq_ns: int = 0
    call: str = "running"  # classified syscall at the last reading (probes.threads.classify_syscall)
    off_kind: str = "other"  # what its last off-CPU time was
    in_runtime: bool = False  # its lock wait is on a futex inside _PyRuntime (but not a known GIL)
    spinning_for_gil: bool = False
    name: str = ""
    pending_on: int = 0  # us reported by schedstat and not yet placed in a tick (< 0: placed ahead)
    pending_rq: int = 0
    slices: int = 0  # schedstat's count of times on a CPU, at the last reading
    held_unmatched: int = 0  # GIL time of the last tick that found no CPU time beside it
    held_share: float = 0.0  # moving average of the share of each tick it held the GIL
    quiet_us: int = 0  # runnable this long with no CPU time reported and no CPU got
    fill_us: int = 0  # CPU time placed in the last tick's gap, not reported
    taken_back_us: int = 0  # of the CPU time placed in the tick before, what this reading showed was a wait


def classify(r: ThreadReading, mem: ThreadMemory, dt: int, held_frac: float, call: str, *, first: bool = False,
             gil: str = LOCATED, gil_samples: int = 0) -> ThreadTick:
    """The thread's tick. `call` is its syscall, classified, at this reading; `held_frac` the
    share of its GIL's samples this tick in which it held it; `gil` its process's GIL status;
    `gil_samples` how many GIL samples the tick had. Updates `mem`."""
    if not r.moved and mem.call != "running" and not first:
        return unchanged(r, mem, dt, held_frac)  # asleep in a syscall all tick
    if first and mem.on_ns == 0 and mem.runq_ns == 0:
        # born during this tick: everything it did is since its birth
        rep_on, rep_rq = r.on_ns // 1000, r.runq_ns // 1000
    else:
        rep_on, rep_rq = (r.on_ns - mem.on_ns) // 1000, (r.runq_ns - mem.runq_ns) // 1000
    before = mem.call
    # times it was put on a CPU this tick: unknown at a first reading of a thread that has been on
    # one (at least one, then), 0 for one never on a CPU yet (a new thread queued for its first)
    slices = r.slices - mem.slices if mem.slices or not first or not r.slices else 1
    mem.on_ns, mem.runq_ns, mem.call, mem.slices = r.on_ns, r.runq_ns, call, r.slices
    on, runq = place_cpu_time(mem, rep_on, rep_rq, dt,
                              busy=r.state == "R" and call == "running" and before == "running",
                              settled=call != "running" or slices > 0)
    off = dt - on - runq

    running = native = waiting = 0
    held = int(held_frac * dt)
    if gil == LOCATED:
        # schedstat may report a tick's CPU time a tick late, the GIL samples never do: GIL
        # time that found no CPU time beside it is matched with the next tick's report
        owed = held + mem.held_unmatched
        running = on if on < owed else owed
        unmatched = held - on if held > on else 0
        mem.held_unmatched = unmatched if unmatched < MAX_PENDING_US else MAX_PENDING_US
        spin = on - running
        # Time on a CPU without the GIL is GIL overhead (waking from the timed wait, asking
        # for a drop, handing over), or the noise of matching exact CPU time with sampled
        # GIL time, when the thread has lately been running Python (it held the GIL for a
        # good share of the last few ticks), or when it came in short runs from a thread
        # after the GIL. Otherwise it is C code that released the GIL (a hash, a
        # compression), even if the thread then queues for the GIL.
        mem.held_share += HELD_SHARE_WEIGHT * (held / dt - mem.held_share)
        # (held comes from GIL samples, so when it held the GIL, it may be off by a sample period)
        sample_period = dt // gil_samples if gil_samples and held else 0
        short_runs = spin < SPIN_RUN_US * (slices if slices > 1 else 1) + sample_period
        after_gil = held > 0 or call == "gil" or before == "gil" or mem.spinning_for_gil
        if mem.held_share > PYTHON_THREAD_HELD_SHARE or (short_runs and after_gil):
            waiting += spin
            mem.spinning_for_gil = held == 0 and spin > 0
        else:
            native += spin
            mem.spinning_for_gil = False
    elif gil == NOT_PYTHON:
        native = on
    else:  # no GIL (free-threaded), or GIL not located or not sampled: any time on a CPU counts as running
        running = on

    if off <= 0:
        return ThreadTick(r.tid, r.cpu, running, native, waiting, runq, 0, 0, 0, 0, held, on)
    blocked = [0, 0, 0, 0]  # in BLOCK_REASONS' order
    if before == call:
        kinds = (call,) if call != "running" else (mem.off_kind,)
    else:
        kinds = tuple(c for c in (before, call) if c != "running") or (mem.off_kind,)
    share = off // len(kinds)
    for i, kind in enumerate(kinds):
        part = share if i else off - share * (len(kinds) - 1)
        if kind == "gil":
            waiting += part
        else:
            blocked[_BLOCK_INDEX[kind]] += part
    mem.off_kind = kinds[-1]
    return ThreadTick(r.tid, r.cpu, running, native, waiting, runq, *blocked, held, on)


_QUIET_FIELD = {"gil": 4, "sleep": 6, "io": 7, "lock": 8, "other": 9}  # ThreadTick's field for a whole tick off CPU
_new_tick = tuple.__new__  # (the hot path of hundreds of sleeping threads: no NamedTuple call)


def unchanged(r: ThreadReading, mem: ThreadMemory, dt: int, held_frac: float) -> ThreadTick:
    """A thread that did not run all tick: off CPU the whole time, for the reason it had."""
    kind = mem.call
    if kind == "running":
        kind = mem.off_kind
    if mem.taken_back_us:
        mem.taken_back_us = 0  # (a thread missing from the last tick's readings: it said nothing of it)
    held = int(held_frac * dt) if held_frac else 0
    if held or mem.held_share:
        mem.held_share += HELD_SHARE_WEIGHT * (held / dt - mem.held_share)  # fades while it sleeps
        if mem.held_share < 1e-6:
            mem.held_share = 0.0
    if kind == "sleep":
        return _new_tick(ThreadTick, (r.tid, r.cpu, 0, 0, 0, 0, dt, 0, 0, 0, held, 0, 0))
    row = [r.tid, r.cpu, 0, 0, 0, 0, 0, 0, 0, 0, held, 0, 0]
    row[_QUIET_FIELD.get(kind, 9)] = dt
    return _new_tick(ThreadTick, row)


def place_cpu_time(mem: ThreadMemory, rep_on: int, rep_rq: int, dt: int, busy: bool,
                   settled: bool = False) -> tuple[int, int]:
    """Places schedstat's on-CPU and run-queue time into this tick.

    The kernel adds a running thread's CPU time to schedstat only at scheduler ticks
    (every 4 ms at HZ=250) and its run-queue wait only when it gets a CPU, so a
    thread busy for a whole tick can report 0 or 8 ms of it. What was reported but
    not placed is kept for the next ticks; a thread seen runnable at both ends of
    the tick (`busy`) has its gap filled now, with CPU time that the reports that
    follow pay back, or with run-queue time once it has had none reported and got no
    CPU for longer than UNREPORTED_ON_US (it is waiting for a CPU, on a busy machine).
    The next reading says which the last gap was (`fill_us`): the CPU time it finds was
    a wait is `taken_back_us`, and the sampler sets that tick right before it goes out.
    Time placed ahead is matched with the kernel's reports until they are `settled`:
    once the thread got a CPU since the last reading or sits in a syscall, schedstat
    holds all its CPU time and its waits for a CPU up to then, and what they do not
    cover was not spent so (CPU time placed ahead is taken out of the wait reported,
    which it was, and the rest dropped). Totals stay sums of schedstat time, give or
    take a sleep between two readings that find the thread runnable (CPU time, or a
    wait for a CPU when it then waits for one).
    """
    # (comparisons rather than min and max: this runs for every busy thread at every tick)
    due_on, due_rq = rep_on + mem.pending_on, rep_rq + mem.pending_rq
    fill, taken = mem.fill_us, 0
    quiet = rep_on <= 0 and not settled
    quiet_us = mem.quiet_us = mem.quiet_us + dt if quiet else 0
    if quiet and fill and quiet_us >= UNREPORTED_ON_US:
        taken = fill  # the last tick's gap was a wait for a CPU too
        due_on += fill
        due_rq -= fill
    if due_on < 0:
        if rep_rq > 0 and due_rq > 0:
            moved = -due_on if -due_on < due_rq else due_rq
            due_on += moved
            due_rq -= moved
            taken = moved if moved < fill else fill
        if settled:
            due_on = 0
    if settled and due_rq < 0:
        due_rq = 0
    mem.taken_back_us = taken
    on = due_on if due_on > 0 else 0
    runq = due_rq if due_rq > 0 else 0
    mem.fill_us = 0
    if busy and on + runq < dt:
        if quiet and quiet_us >= UNREPORTED_ON_US:
            runq = dt - on
        else:
            mem.fill_us = dt - runq - on
            on = dt - runq
    if on + runq > dt:
        scale = dt / (on + runq)
        on = int(on * scale)
        runq = dt - on if runq else 0
    left_on, left_rq = due_on - on, due_rq - runq
    ahead = mem.fill_us if mem.fill_us > UNREPORTED_ON_US else UNREPORTED_ON_US  # (all of a long tick's fill)
    mem.pending_on = (-ahead if left_on < -ahead else MAX_PENDING_US if left_on > MAX_PENDING_US else left_on)
    mem.pending_rq = (-RUNQ_AHEAD_US if left_rq < -RUNQ_AHEAD_US else
                      MAX_PENDING_US if left_rq > MAX_PENDING_US else left_rq)
    return on, runq


# The same rules in C, for the threads of a process at a tick (sampler._process_tick), where built:
# 4 us of Python a thread that moved was most of a tick with hundreds of them. tests/test_gilloop.py
# holds it to the rules above.
tick_threads = getattr(_gilloop, "tick_threads", None)
if tick_threads is not None:
    _gilloop.set_rules(SPIN_RUN_US, HELD_SHARE_WEIGHT, PYTHON_THREAD_HELD_SHARE, MAX_PENDING_US,
                       UNREPORTED_ON_US, RUNQ_AHEAD_US)
