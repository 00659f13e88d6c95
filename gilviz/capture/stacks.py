"""Thread names from py-spy, and whole stacks and lines where nothing else reads them, in a
thread beside the loop.

py-spy dump costs about 8 ms of CPU a call (a new process each time), so it runs a few times a
second at most and never in the sampling loop: dumps queue up and the loop turns them into
records between ticks (`drain`). Where the lines and stacks are read otherwise (capture/lines.py:
3.9 to 3.15 with a GIL), py-spy only names threads: new ones (one it cannot name yet is asked for
at each dump, once a second, for 5 s), and every 10 s renamed ones.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections import Counter, deque
from typing import Callable, Container

from ..probes.pyspy import PySpy, StackThread, find_pyspy
from ..stream import Record, Stack, StackEntry, Thread
from .processes import ProcessTable, WatchedProcess

MAX_FRAMES = 12
NAMES_EVERY_S = 1.0  # where the stacks are read otherwise, py-spy only names new threads, at most this often,
NAMES_AGAIN_S = 10.0  # and renamed ones within this
NAMELESS_AFTER_S = 5.0  # a thread py-spy has not named by then has no Python name (a C library's thread)
_NONE: frozenset = frozenset()
_DEFAULT_THREAD_NAME = re.compile(r"(MainThread|Thread-\d+( \(.*\))?|Dummy-\d+)$")


class StackReader:
    def __init__(self, hz: float, processes: ProcessTable, now_us: Callable[[], int]):
        exe = find_pyspy() if hz > 0 else None
        self.pyspy = PySpy(exe) if exe else None
        self.hz = hz
        self.processes = processes
        self.now_us = now_us
        self._dumps: deque = deque()  # (appended by the dumping thread, taken at the ticks: no lock for either)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rate: Callable[[], float] = lambda: self.hz  # what the budget allows now
        self.names_pids: Container[int] = ()  # processes whose lines and stacks are read otherwise
        self._named: dict[int, frozenset | set[int]] = {}  # pid -> its threads py-spy named, or will not
        self._found: dict[int, dict[int, float]] = {}  # pid -> its threads at its last dump: when first found

    @property
    def cpu_s(self) -> float:
        return self.pyspy.cpu_s if self.pyspy is not None else 0.0

    def start(self) -> None:
        if self.pyspy is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="gilviz-stacks")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        assert self.pyspy is not None
        failures: Counter = Counter()
        wait = min(1.0 / self.hz, 0.2)  # names and lines early, then at the rate the budget allows
        last_dump: dict[int, float] = {}
        while not self._stop.wait(wait):
            wait = 1.0 / max(self.rate(), 0.05)
            for proc in [p for p in self.processes if p.python is not None]:
                pid = proc.pid
                if failures[pid] >= 5:
                    continue
                since = time.monotonic() - last_dump.get(pid, 0.0)
                tids = proc.tids.copy()  # (the sampling loop changes it: copied in one step)
                if pid in self.names_pids:
                    if since < NAMES_EVERY_S or (since < NAMES_AGAIN_S and tids <= self._named.get(pid, _NONE)):
                        continue
                last_dump[pid] = time.monotonic()
                t = self.now_us()
                dump = self.pyspy.dump(pid)
                if dump is None:
                    failures[pid] += 1
                    continue
                failures[pid] = 0
                self._dumps.append((t, pid, dump, tids))

    def drain(self) -> list[Record]:
        """The dumps taken since the last call, as records (a thread's new name first)."""
        out: list[Record] = []
        dumps = self._dumps
        while dumps:
            t, pid, dump, tids = dumps.popleft()
            proc = self.processes.by_pid.get(pid)
            if proc is None:
                continue
            dump = [_with_tid(proc, th) for th in dump]
            for th in dump:
                mem = proc.threads.get(th.tid) if th.tid is not None else None
                if mem is not None and th.name and th.name != mem.name and not _is_default_name(th.name, mem.name):
                    mem.name = th.name
                    proc.unnamed.pop(th.tid, None)  # (named: its OS name, looked at again meanwhile, is not)
                    out.append(Thread(t, th.tid, pid, th.name))  # type: ignore[arg-type]
            known = proc.threads.keys()
            # A thread py-spy does not list has no Python name yet: it may never have (a C library's
            # thread), or not have run yet (on a busy machine a new thread can wait a long while for
            # its first CPU, then for the GIL): it is asked for at each dump till NAMELESS_AFTER_S.
            now = time.monotonic()
            before = self._found.get(pid, {})
            found = self._found[pid] = {tid: before.get(tid, now) for tid in tids}
            nameless = {tid for tid, since in found.items() if now - since >= NAMELESS_AFTER_S}
            self._named[pid] = ({th.tid for th in dump if th.name} | nameless) & known
            if pid in self.names_pids:
                continue  # (its stacks are read otherwise, more often)
            out.append(Stack(t, pid, [StackEntry(th.tid, th.name, th.line, th.owns_gil, th.active,
                                                 list(th.frames[:MAX_FRAMES]))
                                      for th in dump if th.tid is not None]))
        return out


def _with_tid(proc: WatchedProcess, th: StackThread) -> StackThread:
    """py-spy gives no OS thread id on 3.9 and 3.10: map its pthread_t through the target's memory."""
    if th.tid is not None or proc.gil is None:
        return th
    return dataclasses.replace(th, tid=proc.gil.holders.tid_of_pthread(th.thread_id, proc.tids))


def _is_default_name(pyspy_name: str, os_name: str) -> bool:
    """py-spy's name adds nothing when it is Python's default and the OS name was chosen."""
    return bool(_DEFAULT_THREAD_NAME.match(pyspy_name)) and not os_name.startswith("python")
