"""Parsers of /proc text and py-spy output, on text captured from real processes."""

from pathlib import Path

import pytest

from gilviz.probes.pyspy import parse_dump
from gilviz.probes.threads import classify_syscall, parse_schedstat, parse_stat

DATA = Path(__file__).parent / "data"

# /proc/PID/task/TID/syscall of one 3.12 process: main thread in time.sleep, a thread in
# time.sleep, one blocked on threading.Lock, one in socket.recv, one spinning, one waiting
# for the GIL (its futex lies inside _PyRuntime, here 0x7f0416a52000..0x7f0416ac4000).
RUNTIME_312 = (0x7F0416A52000, 0x7F0416AC4000)
SYSCALLS_312 = {
    "230 0x1 0x1 0x7ffd0f5249d0 0x0 0x0 0x7f0416a561f8 0x7ffd0f524990 0x7f04162ed545": "sleep",
    "202 0x55e59c6b5650 0x189 0x0 0x0 0x0 0xffffffff 0x7f04156cfa80 0x7f04162a3f16": "lock",
    "45 0x3 0x7f0415ffc350 0xa 0x0 0x0 0x0 0x7f0414eceb60 0x7f0416328974": "io",
    "running": "running",
    "202 0x7f0416a56204 0x89 0x0 0x7f04077fdbf0 0x0 0xffffffff 0x7f04077fdac0 0x7f04162a3f16": "gil",
}
# 3.9 sleeps in pselect6 with no file descriptors
SYSCALLS_39 = {
    "270 0x0 0x0 0x0 0x0 0x7ffcf59c7e20 0x0 0x7ffcf59c7e10 0x7fd7d2f1c9ec": "sleep",
    "202 0x562eb7c6f1b0 0x189 0x0 0x0 0x0 0xffffffff 0x7fd7d23976d0 0x7fd7d2ea3f16": "lock",
    "45 0x3 0x7fd7d2bb5ce0 0xa 0x0 0x0 0x0 0x7fd7d1b96790 0x7fd7d2f28974": "io",
}


@pytest.mark.parametrize("text,kind", list(SYSCALLS_312.items()))
def test_syscall_kinds_312(text, kind):
    assert classify_syscall(text, (RUNTIME_312,)) == kind


@pytest.mark.parametrize("text,kind", list(SYSCALLS_39.items()))
def test_syscall_kinds_39(text, kind):
    assert classify_syscall(text) == kind


def test_gil_futex_is_a_lock_when_the_gil_is_elsewhere():
    gil_wait = next(t for t, k in SYSCALLS_312.items() if k == "gil")
    assert classify_syscall(gil_wait, ((0x1000, 0x2000),)) == "lock"


def test_select_with_descriptors_is_io_not_sleep():
    assert classify_syscall("270 0x4 0x7ffc 0x0 0x0 0x7ffcf59c7e20 0x0 0x0 0x0") == "io"
    assert classify_syscall("7 0x7ffc 0x1 0xffffffff 0x0 0x0 0x0 0x0 0x0") == "io"
    assert classify_syscall("7 0x0 0x0 0x3e8 0x0 0x0 0x0 0x0 0x0") == "sleep"


@pytest.mark.parametrize("text,kind", [
    ("61 0xffffffffffffffff 0x7ffd8a1c 0x0 0x0 0x0 0x0 0x7ffd8a1c 0x7f3c", "lock"),  # wait4: a child's end
    ("247 0x0 0x3039 0x7ffd 0x4 0x0 0x0 0x7ffd 0x7f3c", "lock"),  # waitid
    ("73 0x3 0x2 0x0 0x0 0x0 0x0 0x7ffd 0x7f3c", "lock"),  # flock
    ("34 0x0 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f3c", "sleep"),  # pause: signal.pause()
    ("-1 0x7ffd 0x7f3c", "other"),  # in no syscall (a page fault, or stopped)
])
def test_waits_for_a_child_a_file_lock_or_a_signal(text, kind):
    assert classify_syscall(text) == kind


def test_stat_with_parentheses_and_spaces_in_the_name():
    text = (
        "9207 (we (ird) name) R 9070 9070 1066 0 -1 4194304 2898 6589 1 0 4 1 4 2 20 0 1 0 82972 "
        "17149952 3436 18446744073709551615 94646723493888 94646723494229 140726581212528 0 0 0 0 "
        "16781312 2 0 0 0 17 1 0 0 0 0 0 94646723505584 94646723506200 94647653023744 "
        "140726581217203 140726581217366 140726581217366 140726581219279 0\n"
    )
    assert parse_stat(text) == ("R", 1)


def test_schedstat():
    assert parse_schedstat("473572390 7999701 230\n") == (473572390, 7999701, 230)


@pytest.mark.parametrize("name", ["pyspy_dump_cpu_threads_3.12.json", "pyspy_dump_cpu_threads_3.9.json"])
def test_pyspy_dump(name):
    threads = parse_dump((DATA / name).read_text())
    assert len(threads) == 4
    spinners = [t for t in threads if t.line.startswith("spin (spin.py:")]
    assert len(spinners) == 3
    assert sum(t.owns_gil for t in threads) <= 1
    main = [t for t in threads if t.name == "MainThread"]
    assert len(main) == 1 and main[0].frames[-1].startswith("<module> (spin.py:")
    # py-spy names the OS thread only from 3.11 on; the pthread id always
    assert all(t.thread_id > 0 for t in threads)
    assert all(t.tid > 0 for t in threads) if "3.12" in name else all(t.tid is None for t in threads)
