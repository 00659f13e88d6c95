import contextlib
import functools
import os
import signal
import subprocess
import sys

import pytest

from gilviz.errors import UserError
from gilviz.collect import load
from gilviz.report import summarize
from gilviz.session import Settings, record_to_file
from gilviz.target import Command, interpreter_candidates, query_interpreter

# A suite started in the background (`pytest &` in a script) hands every process it starts SIGINT
# ignored, and a Python started so never raises KeyboardInterrupt: the tests that Ctrl-C a gilviz
# would wait for its whole run. Its children get the default back, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TARGET_VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]


@functools.lru_cache(maxsize=None)
def find_python(version: str) -> str | None:
    """The newest CPython `version` with the GIL, on PATH or in pyenv's or uv's folders, as gilviz looks."""
    for path in interpreter_candidates(version):
        try:
            interp = query_interpreter(path)
        except UserError:
            continue
        if not interp.free_threaded and interp.version.startswith(version + "."):
            return path
    return None


def python_or_skip(version: str) -> str:
    path = find_python(version)
    if path is None:
        pytest.skip(f"no CPython {version} on PATH or in pyenv's or uv's folders "
                    f"(`pyenv install {version}`, or ../shared/tools/newer-pythons for 3.14 and 3.15)")
    return path


@pytest.fixture(params=TARGET_VERSIONS)
def python(request) -> str:
    """Every target interpreter present, 3.9 to 3.15."""
    return python_or_skip(request.param)


def record_code(tmp_path, python: str, code: str, duration: float | None = None, **settings):
    """Runs code in a child interpreter under the sampler; returns (summary, recording)."""
    interp = query_interpreter(python)
    path = tmp_path / "run.gilviz"
    record_to_file(str(path), Settings(duration_s=duration, **settings),
                   command=Command([python, "-c", code], "test workload"), interp=interp)
    rec = load(str(path))
    return summarize(rec), rec


def threads_named(summary, prefix):
    return [t for t in summary["threads"] if t["name"].startswith(prefix)]


def first_gil_reading(rec) -> int:
    """The first tick with samples of the target's GIL: before it (on a busy machine, up to a third
    of a second when threads hold it a moment at a time), time on a CPU counts as running."""
    root = rec.header.pid
    return next(i for i, tick in enumerate(rec.ticks) if any(g.pid == root and g.samples for g in tick.gils))


def assert_native_once_the_gil_is_read(rec, tids) -> None:
    """Threads in C code that released the GIL: split by readings of it, their time on a CPU is native."""
    ticks = rec.ticks[first_gil_reading(rec):]
    for tid in tids:
        rows = [th for tick in ticks for th in tick.threads if th.tid == tid]
        native, oncpu = sum(th.native for th in rows), sum(th.oncpu for th in rows)
        assert native > 0.8 * oncpu and native > 2 * sum(th.running + th.waiting for th in rows), (tid, native, oncpu)


@contextlib.contextmanager
def ready_child(code: str):
    """A child interpreter running `code`, once it has written "ready" (its stdin and stdout are
    pipes); killed at the end."""
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        yield child
    finally:
        child.kill()
        child.wait()


def no_process_left(pid: int) -> bool:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
    return not os.path.exists(f"/proc/{pid}") or str(pid) not in out.split()


def read_syscalls() -> int:
    """This process's read system calls so far: os.pread from Python and pread from gilviz's C alike."""
    with open("/proc/self/io", "rb") as f:
        return int(f.read().split(b"syscr: ")[1].split()[0])


THREADS_FIXTURE = os.path.join(os.path.dirname(__file__), "data", "threads.gilviz")
GIL_LOST_AT = 1_000_000
GIL_LOST_WHY = "gilviz stopped reading it after an error of its own (TypeError: a misread), worth reporting"


def gil_lost_records(at: int = GIL_LOST_AT, recording: str = THREADS_FIXTURE) -> list:
    """The fixture as the sampler writes a run whose GIL it stopped reading at `at`: a Process
    record that says so, no GIL samples after, and each thread's time on a CPU counted as running,
    as the state rules count it with nothing to split it by."""
    import dataclasses

    from gilviz.recording import read
    from gilviz.stream import Process, Tick

    records, said, last = [], False, None
    for rec in read(recording):
        if isinstance(rec, Process):
            last = rec
        if isinstance(rec, Tick) and rec.t > at:
            if not said:
                records.append(dataclasses.replace(last, t=rec.t - rec.dt, gil="not located", gil_found_by=None,
                                                   gil_why=GIL_LOST_WHY))
                said = True
            threads = [th._replace(running=th.oncpu, native=0, waiting=th.waiting - (th.oncpu - th.running - th.native),
                                   held=0) for th in rec.threads]
            rec = Tick(rec.t, rec.dt, threads, [], rec.core_busy)
        records.append(rec)
    return records
