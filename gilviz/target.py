"""What to sample: an interpreter and a command to launch in it, or a running PID.

The workload is always a descendant of the sampling process (Yama's ptrace_scope 1 lets a
process read only its descendants), in a session of its own so that a polite Ctrl-C
reaches all of it, under a keeper (keeper.py) that ends whatever it started, and it names
the sampler as its ptracer so that a py-spy started by the sampler may read it too.
"""

from __future__ import annotations

import glob
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import UserError

_QUERY = (
    # also runs on Python 2, so that an old interpreter is named as such
    "import sys, sysconfig, json, platform; "
    "print(json.dumps([platform.python_implementation().lower(), sys.version.split()[0], list(sys.version_info[:3]), "
    "bool(sysconfig.get_config_var('Py_GIL_DISABLED')), "
    "bool(getattr(sys, '_is_gil_enabled', lambda: True)())]))"
)


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: str  # "3.12.1"
    version_info: tuple[int, int, int]
    free_threaded: bool  # built without the GIL (PEP 703)
    gil_enabled: bool  # at run time (PYTHON_GIL=1 turns it back on in a free-threaded build)

    @property
    def label(self) -> str:
        return f"CPython {self.version}{'t' if self.free_threaded else ''}"


def query_interpreter(path: str) -> Interpreter:
    try:
        out = subprocess.run(
            [path, "-E", "-s", "-c", _QUERY], capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL
        )
    except OSError as e:
        raise UserError(f"cannot run {path}: {e.strerror}; give --python an interpreter that exists") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"{path} did not answer within 30 s; is it a Python interpreter?") from None
    try:
        impl, version, info, ft, gil = json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise UserError(f"{path} is not a Python interpreter gilviz can use (it did not run a Python query)") from None
    if impl != "cpython":
        raise UserError(f"{path} is {impl}, not CPython; gilviz reads CPython's GIL, so give --python a CPython")
    if tuple(info[:2]) < (3, 9):
        raise UserError(f"{path} is Python {version}, which gilviz does not support: it reads CPython 3.9 and later; "
                        "give --python a newer one (`gilviz pythons` lists those found)")
    return Interpreter(path, version, tuple(info), bool(ft), bool(gil))


def _pyenv_root() -> str:
    return os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")


def _version_key(path: str) -> tuple:
    return tuple(int(x) if x.isdigit() else 0 for x in re.findall(r"\d+", path))


def interpreter_candidates(version: str | None = None) -> list[str]:
    """Interpreter paths found in pyenv's and uv's folders and on PATH, newest first.

    version is "3.12" or "3.13t" (free-threaded); None finds every 3.x.
    """
    base, ft = (version[:-1], "t") if version and version.endswith("t") else (version or "3.*", "")
    found: list[str] = []
    for pattern in (
        f"{_pyenv_root()}/versions/{base}*/bin/python{base}{ft}",
        os.path.expanduser(f"~/.local/share/uv/python/cpython-{base}*/bin/python{base}{ft}"),
    ):
        found.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if "shims" in directory:
            continue  # pyenv shims fail for versions not selected; the folders above cover them
        found.extend(sorted(glob.glob(os.path.join(directory, f"python{base}{ft}")), key=_version_key, reverse=True))
    out = []
    for p in found:
        if not os.access(p, os.X_OK) or p.endswith("-config") or p in out:
            continue
        if not ft and re.search(r"(\d+t|freethreaded)[^/]*/bin/", p):
            continue  # asked for a build with the GIL
        out.append(p)
    return out


def resolve_python(spec: str | None) -> Interpreter:
    """A path, a name on PATH (python3.12) or a version (3.12, 3.13t); default: ours."""
    if not spec:
        return query_interpreter(sys.executable)
    if os.sep in spec:
        if not os.path.exists(spec):
            raise UserError(f"no interpreter at {spec}; give --python a path that exists, or a version like 3.12")
        return query_interpreter(spec)
    m = re.fullmatch(r"(?:python)?(\d+\.\d+t?)", spec)
    if m:
        candidates = interpreter_candidates(m.group(1))
        if candidates:
            return query_interpreter(candidates[0])
    on_path = shutil.which(spec)
    if on_path:
        return query_interpreter(on_path)
    raise UserError(
        f"no Python '{spec}' found on PATH or in pyenv/uv folders; install it (e.g. `pyenv install {spec}`) "
        "or give --python a path"
    )


@dataclass
class Command:
    """The argv to launch, and how to show it."""

    argv: list[str]
    display: str
    scenario: str | None = None
    env: dict[str, str] = field(default_factory=dict)


KEEPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keeper.py")
# the open-files limit gilviz was given: its workloads get it too, whatever the sampler raises its own to
FILES_LIMIT = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
STOP_GRACE_S = 1.0  # the workload's time to finish its last words after SIGINT, then after SIGTERM


class Workload:
    """A launched child interpreter: its output captured, all it starts ended with it.

    The workload runs under a keeper (keeper.py), its parent and a child subreaper, which
    ends every process the workload started when the workload ends, when gilviz asks, and
    when gilviz is gone however it ended: a lifeline pipe, held open only by gilviz, tells it.
    """

    def __init__(self, command: Command, on_output: Callable[[str, bytes], None] | None = None,
                 on_progress: Callable[[bytes], None] | None = None):
        self.command = command
        self.on_output = on_output
        self.on_progress = on_progress
        self.proc: subprocess.Popen | None = None  # the keeper
        self.pid: int | None = None  # the workload
        self._lifeline: int | None = None
        self._readers: list[threading.Thread] = []
        self._closing = threading.Event()

    def start(self) -> int:
        env = dict(os.environ)
        env.update(self.command.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # a side channel on which built-in workloads report the work they have done
        progress_r, progress_w = os.pipe()
        lifeline_r, self._lifeline = os.pipe()
        report_r, report_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        env["GILVIZ_PROGRESS_FD"] = str(progress_w)
        keeper = [sys.executable, "-I", "-S", KEEPER, str(lifeline_r), str(report_w), str(os.getpid()),
                  str(FILES_LIMIT)]
        try:
            self.proc = subprocess.Popen(
                [*keeper, *self.command.argv], stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
                env=env, pass_fds=(progress_w, lifeline_r, report_w),
            )
        except OSError as e:
            for fd in (progress_r, lifeline_r, self._lifeline, report_r, out_r, err_r):
                os.close(fd)
            raise UserError(f"cannot start {sys.executable}: {e.strerror}") from None
        finally:
            for fd in (progress_w, lifeline_r, report_w, out_w, err_w):
                os.close(fd)
        with os.fdopen(report_r, "rb") as report:
            word = report.readline().decode(errors="replace").split(None, 1)
        if word[:1] != ["pid"]:
            self.proc.wait()
            for fd in (progress_r, out_r, err_r):
                os.close(fd)
            why = word[1].strip() if len(word) > 1 else "it did not start"
            raise UserError(f"cannot start {self.command.argv[0]}: {why}")
        self.pid = int(word[1])
        for name, fd in (("out", out_r), ("err", err_r), ("progress", progress_r)):
            t = threading.Thread(target=self._pump, args=(name, fd), daemon=True, name=f"gilviz-{name}")
            t.start()
            self._readers.append(t)
        return self.pid

    def _pump(self, name: str, fd: int) -> None:
        """Reads until the writers are gone, or the workload is being put away and falls silent:
        a process that inherited the pipe and escaped could otherwise hold it open for ever."""
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if not ready:
                    if self._closing.is_set():
                        break
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:
                    break
                if not data:
                    break
                if name != "progress":
                    if self.on_output is not None:
                        self.on_output(name, data)
                    continue
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if self.on_progress is not None:
                        self.on_progress(line)
        finally:
            os.close(fd)

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace_s: float = STOP_GRACE_S, hurry: Callable[[], bool] = lambda: False) -> int | None:
        """Ends the workload and everything it started; returns its exit status.

        As Ctrl-C would first (the built-in workloads report their final counts), then less
        politely; `hurry()` turning true (a second Ctrl-C) skips to the end.
        """
        proc = self.proc
        if proc is None:
            return None
        assert self.pid is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            if proc.poll() is not None or hurry():
                break
            _signal_group(self.pid, sig)
            deadline = time.monotonic() + grace_s
            while proc.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.02)
        if proc.poll() is None:
            _signal_group(self.pid, signal.SIGKILL)
            try:
                proc.send_signal(signal.SIGUSR1)  # the keeper ends whatever is left
            except ProcessLookupError:
                pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()  # its lifeline closes with us; the workload dies with it (PDEATHSIG)
            proc.wait()
        self._closing.set()
        for t in self._readers:
            t.join(timeout=1)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
