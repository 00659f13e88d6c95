"""What to sample: an interpreter and a command to launch in it, or a running PID.

The workload is always a child of the sampling process (Yama's ptrace_scope 1 lets a
process read only its descendants), in a process group of its own so that it and every
process it starts can be ended together, and it names the sampler as its ptracer so
that a py-spy started by the sampler, a sibling, may read it too.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from .errors import UserError

PR_SET_PDEATHSIG = 1
PR_SET_PTRACER = 0x59616D61

_QUERY = (
    "import sys, sysconfig, json; "
    "print(json.dumps([sys.implementation.name, sys.version.split()[0], list(sys.version_info[:3]), "
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
            [path, "-I", "-c", _QUERY], capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL
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
        raise UserError(f"{path} is Python {version}; gilviz supports targets from CPython 3.9 on")
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


def _set_ptracer_and_deathsig(sampler_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            libc.prctl(PR_SET_PTRACER, sampler_pid, 0, 0, 0)  # fails harmlessly without Yama
        except Exception:
            pass

    return preexec


class Workload:
    """A launched child interpreter: its output captured, its whole group ended on stop."""

    def __init__(self, command: Command, on_output: Callable[[str, bytes], None] | None = None,
                 on_progress: Callable[[bytes], None] | None = None):
        self.command = command
        self.on_output = on_output
        self.on_progress = on_progress
        self.proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self._pipes: list = []

    def start(self) -> int:
        env = dict(os.environ)
        env.update(self.command.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # a side channel on which built-in workloads report the work they have done
        progress_r, progress_w = os.pipe()
        env["GILVIZ_PROGRESS_FD"] = str(progress_w)
        try:
            self.proc = subprocess.Popen(
                self.command.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_set_ptracer_and_deathsig(os.getpid()),
                env=env,
                pass_fds=(progress_w,),
            )
        except OSError as e:
            os.close(progress_r)
            raise UserError(f"cannot start {self.command.argv[0]}: {e.strerror}") from None
        finally:
            os.close(progress_w)
        progress = os.fdopen(progress_r, "rb")
        for name, pipe in (("out", self.proc.stdout), ("err", self.proc.stderr), ("progress", progress)):
            t = threading.Thread(target=self._pump, args=(name, pipe), daemon=True, name=f"gilviz-{name}")
            t.start()
            self._readers.append(t)
            self._pipes.append(pipe)
        return self.proc.pid

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _pump(self, name: str, pipe) -> None:
        if name == "progress":
            for line in pipe:
                if self.on_progress is not None:
                    self.on_progress(line)
            return
        fd = pipe.fileno()
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except OSError:
                break
            if not data:
                break
            if self.on_output is not None:
                self.on_output(name, data)

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, grace_s: float = 1.0) -> int | None:
        """Ends the workload and everything in its process group; returns its exit status."""
        proc = self.proc
        if proc is None:
            return None
        # as Ctrl-C would: a workload gets to finish its last words (the built-in ones
        # report their final counts), then it is asked less politely
        for sig in (signal.SIGINT, signal.SIGTERM):
            if proc.poll() is not None:
                break
            _signal_group(proc.pid, sig)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        # whatever it started (multiprocessing children) may outlive it in the group
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for t in self._readers:
            t.join(timeout=1)
        for pipe in self._pipes:
            try:
                pipe.close()
            except OSError:
                pass
        return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
