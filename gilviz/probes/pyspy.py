"""Thread names, the line each thread is on, and an independent word on the GIL holder.

py-spy dump costs about 6 ms of CPU a call, so it runs a few times a second at most,
in a thread of its own, never in the sampling loop.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass


def find_pyspy() -> str | None:
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("py-spy")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass(frozen=True)
class StackThread:
    tid: int | None  # OS thread id (py-spy leaves it out on 3.9 and 3.10)
    thread_id: int  # the pthread_t, Python's threading.get_ident()
    name: str
    line: str  # "func (file.py:12)", the innermost Python frame
    owns_gil: bool
    active: bool
    frames: tuple[str, ...]  # innermost first


def parse_dump(text: str) -> list[StackThread]:
    """Parses `py-spy dump --json` output."""
    out = []
    for th in json.loads(text):
        frames = tuple(
            f"{f.get('name', '?')} ({f.get('short_filename') or f.get('filename', '?')}:{f.get('line', '?')})"
            for f in th.get("frames") or ()
        )
        tid = th.get("os_thread_id")
        out.append(
            StackThread(
                tid=int(tid) if tid is not None else None,
                thread_id=int(th.get("thread_id") or 0),
                name=th.get("thread_name") or "",
                line=frames[0] if frames else "",
                owns_gil=bool(th.get("owns_gil")),
                active=bool(th.get("active")),
                frames=frames,
            )
        )
    return out


class PySpy:
    """Runs py-spy dump and keeps the CPU it costs, for the sampler's own bill."""

    def __init__(self, exe: str):
        self.exe = exe
        self.cpu_s = 0.0
        self.last_error = ""
        self._children_cpu = _children_cpu()

    def dump(self, pid: int, timeout: float = 5.0) -> list[StackThread] | None:
        try:
            proc = subprocess.Popen(
                [self.exe, "dump", "--pid", str(pid), "--json", "--nonblocking"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            self.last_error = str(e)
            return None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.last_error = "py-spy dump timed out"
            return None
        finally:
            # While sampling, py-spy is the only child gilviz reaps (the workload is
            # reaped at the end), so the growth of RUSAGE_CHILDREN is py-spy's CPU.
            now = _children_cpu()
            self.cpu_s += now - self._children_cpu
            self._children_cpu = now
        if proc.returncode != 0:
            self.last_error = err.decode(errors="replace").strip().splitlines()[0] if err.strip() else f"py-spy exited {proc.returncode}"
            return None
        try:
            return parse_dump(out.decode())
        except ValueError:
            self.last_error = "py-spy printed something that is not JSON"
            return None
