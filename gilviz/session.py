"""One sampling session: launch (or attach), sample, stream every record to a sink.

`gilviz record` writes the stream to a file; the live view reads it from a pipe. The
session makes sure the workload is ended and reaped however the session ends, and that
the stream closes with an `end` record saying how.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from . import __version__
from .errors import UserError
from .probes.pyprocess import inspect
from .recording import RecordingWriter
from .sampler import Sampler
from .stream import End, Header, Notice, Output, Progress, Record, header_fields, well_formed
from .target import Command, Interpreter, Workload

Sink = Callable[[Record], None]
MAX_OUTPUT_BYTES = 4 << 20  # workload output kept in a recording
PYSPY_MISSING = ("py-spy was not found: threads keep their OS names and no Python line is shown; "
                 "`pip install py-spy` beside gilviz brings them")


@dataclass
class Settings:
    tick_hz: float = 200.0
    gil_hz: float | None = None  # GIL samples a second at most; None: as capture/budget.py allows
    cpu_budget: float = 0.15
    stacks_hz: float = 5.0
    duration_s: float | None = None


def check_attachable(pid: int) -> None:
    """Refuses, in one line that says what to do, a PID gilviz cannot sample."""
    if not os.path.exists(f"/proc/{pid}"):
        raise UserError(f"no process {pid}: it has exited or never existed; find a running one with `ps`")
    try:
        with open(f"/proc/{pid}/maps") as f:
            f.read(1)
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        os.close(fd)
    except PermissionError:
        if os.geteuid() == 0:
            raise UserError(f"no permission to read process {pid}, even as root: this system forbids it "
                            "(a container's or a security module's rule); let gilviz start the program "
                            "(`gilviz record script.py`)") from None
        raise UserError(
            f"no permission to read process {pid}: run gilviz as root or with CAP_SYS_PTRACE "
            "(sudo setcap cap_sys_ptrace+ep on the python running gilviz), or allow it for all with "
            "`sudo sysctl kernel.yama.ptrace_scope=0`; or let gilviz start the program (`gilviz record script.py`)"
        ) from None
    except FileNotFoundError:
        raise UserError(f"no process {pid}: it has exited; find a running one with `ps`") from None
    except ProcessLookupError:  # no memory to read
        raise UserError(f"process {pid} is not a running program: it has exited (a zombie, not yet reaped) "
                        "or is a kernel thread; find a running Python program with `ps`") from None
    if inspect(pid) is None:
        raise UserError(f"process {pid} is not CPython (no libpython or _PyRuntime in it); attach to a Python process")


def _header(command: Command | None, interp: Interpreter | None, pid: int | None, settings: Settings,
            t0_ns: int) -> Header:
    return Header(
        fields=header_fields(),
        gilviz=__version__,
        start=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        cpus=os.cpu_count(),
        tick_hz=settings.tick_hz,
        gil_hz=settings.gil_hz,
        command=command.display if command else f"attach {pid}",
        argv=command.argv if command else None,
        scenario=command.scenario if command else None,
        python=interp.path if interp else None,
        python_version=(interp.version + ("t" if interp.free_threaded else "")) if interp else None,
        gil_enabled=interp.gil_enabled if interp else None,
        pid=pid,
        monotonic_ns=t0_ns,
    )


class _LockedSink:
    """Records come from the sampling loop and from the output readers: one at a time."""

    def __init__(self, sink: Sink):
        self._sink = sink
        self._lock = threading.Lock()
        self.t0 = time.monotonic_ns()
        self.output_bytes = 0

    def __call__(self, rec: Record) -> None:
        with self._lock:
            self._sink(rec)

    def now_us(self) -> int:
        return (time.monotonic_ns() - self.t0) // 1000

    def output(self, stream: str, data: bytes) -> None:
        if self.output_bytes >= MAX_OUTPUT_BYTES:
            return
        self.output_bytes += len(data)
        self(Output(self.now_us(), stream, data.decode(errors="replace")))

    def progress(self, line: bytes) -> None:
        try:
            rec = json.loads(line)
        except ValueError:
            return
        if isinstance(rec, dict):  # what a workload says is checked like any record read back
            rec["k"], rec["t"] = "progress", self.now_us()
            if well_formed(rec):
                self(Progress.from_wire(rec))


class _Interrupted(BaseException):
    """Not an Exception, as KeyboardInterrupt is not: the guards that keep a run going past a misread
    (a frame reader's, a GIL probe's) would take a SIGTERM that lands in them for one, and sample on."""


def _raise_interrupt(signum, frame):  # SIGTERM and SIGHUP end a session like Ctrl-C does
    raise _Interrupted()


def run_session(sink: Sink, settings: Settings, *, command: Command | None = None,
                interp: Interpreter | None = None, pid: int | None = None,
                stop: threading.Event | None = None) -> End:
    """Samples until the target ends, the duration passes or the user interrupts; returns the end record."""
    locked = _LockedSink(sink)
    workload = None
    if command is not None:
        workload = Workload(command, on_output=locked.output, on_progress=locked.progress)
    elif pid is not None:
        check_attachable(pid)
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old_handlers[sig] = signal.signal(sig, _raise_interrupt)
    reason, exit_code, sampler, out_of_files = "error", None, None, None
    try:
        if workload is not None:
            pid = workload.start()
        assert pid is not None
        _allow_all_files()  # (after the start: the workload keeps the limits it was given)
        locked(_header(command, interp, pid, settings, locked.t0))
        try:
            sampler = Sampler(pid, locked, tick_hz=settings.tick_hz, gil_hz=settings.gil_hz,
                              cpu_budget=settings.cpu_budget, stacks_hz=settings.stacks_hz, t0=locked.t0,
                              gil_reenabled=bool(interp and interp.free_threaded and interp.gil_enabled))
        except ProcessLookupError:
            reason = "exited"  # ended before the first reading
        except PermissionError as e:
            raise UserError(f"no permission to read process {pid} ({e.filename}); run as root or with CAP_SYS_PTRACE") from None
        if sampler is not None:
            if sampler.pyspy is None and settings.stacks_hz > 0:
                locked(Notice(locked.now_us(), PYSPY_MISSING))
            done = (lambda: workload.poll() is not None) if workload is not None else None
            reason = sampler.run(duration_s=settings.duration_s, stop=stop, done=done)
    except (KeyboardInterrupt, _Interrupted):
        reason = "interrupted"
    except OSError as e:
        if e.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        out_of_files = e  # said once the session is closed and its end recorded
    finally:
        hurry = threading.Event()
        if old_handlers:  # a second Ctrl-C (or SIGTERM) during the polite shutdown makes it quick
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                old_handlers.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, lambda *_: hurry.set())
        try:
            if workload is not None and workload.pid is not None:
                exit_code = workload.stop(hurry=hurry.is_set)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        end = End(locked.now_us(), reason, exit_code)
        if sampler is not None:
            st = sampler.stats
            end.ticks, end.gil_samples = st.ticks, st.gil_samples
            end.sampler_cpu_s, end.sampler_wall_s = round(st.cpu_s, 4), round(st.wall_s, 4)
            if sampler.pyspy is not None and sampler.pyspy.last_error:
                end.stacks_error = sampler.pyspy.last_error
        locked(end)
    if out_of_files is not None:
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        raise UserError(f"out of open files ({out_of_files.strerror}): the sampler keeps a few open per thread "
                        f"and may open {limit} at most; sample fewer threads, or raise the limit (ulimit -n); "
                        "what was sampled until then is kept")
    return end


def _allow_all_files() -> None:
    """The sampler keeps a few /proc files open per thread: thousands of threads need more than
    the usual soft limit of 1024, and the hard limit is the user's to give."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def record_to_file(path: str, settings: Settings, *, force: bool = False, said: list[str] | None = None,
                   **target) -> End:
    """Samples into a new file (an existing one only with force); nothing is created for a
    target that cannot be sampled. A write that fails ends the session and says why.
    said: gets the target's last line on stderr (what a target that failed said last)."""
    if target.get("pid") is not None:
        check_attachable(target["pid"])
    writer = RecordingWriter(path, force=force)

    def sink(rec: Record) -> None:
        writer.write(rec)
        if said is not None and isinstance(rec, Output) and rec.stream == "err":
            lines = [line.strip() for line in rec.data.splitlines() if line.strip()]
            if lines:
                said[:] = lines[-1:]

    try:
        end = run_session(sink, settings, stop=writer.failed, **target)
    finally:
        writer.close()
    if writer.error is not None:
        kept = "what was written before it is kept" if writer.flushed else "nothing could be kept"
        raise UserError(f"cannot write the recording {path}: {writer.why}; the target was ended, and {kept}")
    return end


def stream_to_stdout(settings: Settings, **target) -> End:
    """For a live view in another process: uncompressed records on stdout; the session ends
    when the viewer goes away."""
    writer = RecordingWriter(sys.stdout.buffer, compress=False, flush_every_s=0.03)
    try:
        return run_session(writer.write, settings, stop=writer.failed, **target)
    finally:
        writer.close()


def record_comparison(path: str, sides: list[tuple[Settings, dict]], names: list[str], together: bool = False,
                      force: bool = False) -> list[End]:
    """Two runs into one file (a Compare line, then each run's records tagged with its run): one
    after the other, or (together) at the same time. Without a screen: `gilviz compare --record`."""
    from .stream import Compare

    for _, target in sides:
        if target.get("pid") is not None:
            check_attachable(target["pid"])
    writer = RecordingWriter(path, force=force)
    lock = threading.Lock()
    ends: list[End | None] = [None, None]

    def sink_for(run: int) -> Sink:
        def sink(rec: Record) -> None:
            with lock:
                writer.write(rec, run=run)
        return sink

    try:
        writer.write(Compare(runs=names, together=together))
        if together:
            second = threading.Thread(target=lambda: ends.__setitem__(1, run_session(
                sink_for(1), sides[1][0], stop=writer.failed, **sides[1][1])), name="gilviz-second-run")
            second.start()
            try:
                ends[0] = run_session(sink_for(0), sides[0][0], stop=writer.failed, **sides[0][1])
            finally:
                if second.is_alive():
                    writer.failed.set()  # interrupted: the second run ends too (nothing is lost)
                second.join()
        else:
            for run, (settings, target) in enumerate(sides):
                ends[run] = run_session(sink_for(run), settings, stop=writer.failed, **target)
                if ends[run].reason == "interrupted" or writer.error is not None:
                    break
    finally:
        writer.close()
    if writer.error is not None:
        raise UserError(f"cannot write the recording {path}: {writer.why}; the targets were ended")
    return [e for e in ends if e is not None]
