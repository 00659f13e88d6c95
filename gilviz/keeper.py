"""The workload's parent: everything the workload starts ends with it, or with gilviz.

    python keeper.py LIFELINE_FD REPORT_FD TRACER_PID FILES_LIMIT ARGV...

gilviz starts this small process, which starts the workload as its own child and is made a
child subreaper (PR_SET_CHILD_SUBREAPER): whatever the workload forks, daemons and new
sessions included, stays below it. It ends every descendant when
- the workload exits (gilviz's session ends then too), or
- gilviz is gone: the write end of LIFELINE_FD is held by gilviz alone, so it reads as
  closed the moment gilviz exits, however (kill -9 included), or
- gilviz asks (SIGUSR1), at the end of its polite shutdown.
It then exits as the workload did: the same exit status, or killed by the same signal.
The workload's pid, or why it could not start, goes to REPORT_FD. Only the standard
library: it starts in a few milliseconds, before the workload does.
"""

import ctypes
import os
import resource
import select
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PTRACER = 0x59616D61
KILL_ROUNDS = 50


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def descendants(root: int) -> list[int]:
    """Every live process below root, from /proc (a new session keeps its parent)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def end_all(statuses: dict[int, int]) -> None:
    """SIGKILL every descendant and reap, until none is left (they may be forking meanwhile)."""
    me = os.getpid()
    for _ in range(KILL_ROUNDS):
        found = descendants(me)
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reaped = reap(statuses)
        if not found and not reaped:
            return
        time.sleep(0.01)


def reap(statuses: dict[int, int]) -> bool:
    """Reaps every child that has ended (orphans come to the subreaper too); True if any."""
    reaped = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        statuses[pid] = status
        reaped = True


def main(argv: list[str]) -> None:
    lifeline, report, tracer, files = int(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    command = argv[4:]
    try:  # the limit gilviz was given, not the one its sampler raised itself to
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ValueError, OSError):
        pass
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    asked: list[bool] = []
    signal.signal(signal.SIGUSR1, lambda *_: asked.append(True))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # gilviz signals the workload; the keeper stays to clean up

    def prepare() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # should the keeper itself be killed
        _prctl(PR_SET_PTRACER, tracer)  # under Yama, py-spy (gilviz's child) may read it

    progress = os.environ.get("GILVIZ_PROGRESS_FD", "")
    inherited = (int(progress),) if progress.isdigit() else ()
    try:
        workload = subprocess.Popen(command, start_new_session=True, preexec_fn=prepare, pass_fds=inherited)
    except OSError as e:
        os.write(report, f"error {e.strerror}\n".encode())
        sys.exit(127)
    os.write(report, f"pid {workload.pid}\n".encode())
    os.close(report)
    # the workload has its own copies of stdout, stderr and the progress channel: drop ours, so
    # gilviz's readers see them close when the workload and its children are gone
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    for fd in inherited:
        os.close(fd)

    statuses: dict[int, int] = {}
    while workload.pid not in statuses and not asked:
        try:
            ready, _, _ = select.select([lifeline], [], [], 0.05)
        except InterruptedError:
            ready = []
        if ready and not os.read(lifeline, 1):
            break  # gilviz is gone
        reap(statuses)
    end_all(statuses)
    status = statuses.get(workload.pid, 0)
    if os.WIFSIGNALED(status):  # end as it ended
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # (those two have no handler to reset, nor a mask)
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main(sys.argv[1:])
