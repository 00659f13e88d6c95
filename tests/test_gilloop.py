"""The C loop that samples GILs between ticks (gilviz/_gilloop.c), against memory laid out here
and against the Python loop on a real child interpreter. Skipped where there is no C compiler."""

import ctypes
import os
import shutil
import struct
import time

import pytest

from conftest import python_or_skip, record_code
from test_sampling import CPU_THREADS
from gilviz import sampler
from gilviz.probes.gil import GLIBC_2_41, GLIBC_BEFORE_2_41, GilLayout

try:
    from gilviz import _gilloop
except ImportError:
    if shutil.which("cc") or shutil.which("gcc"):  # it could have been built: the sources run here without it
        raise ImportError("gilviz/_gilloop.c is not built beside the sources tested: pip install -e '.[test]'")
    pytest.skip("no C compiler: the C loop is not built and gilviz samples in Python", allow_module_level=True)


def gil_bytes(layout: GilLayout, holder: int, locked: int, switch: int, waiters: int) -> bytes:
    out = bytearray(layout.size)
    struct.pack_into("<QQI4xQ", out, layout.shift, 5000, holder, locked, switch)
    struct.pack_into("<I", out, layout.cond + layout.condvar.wrefs, waiters << 3)
    return bytes(out)


@pytest.mark.parametrize("layout", [GilLayout(GLIBC_BEFORE_2_41), GilLayout(GLIBC_2_41), GilLayout(GLIBC_2_41, 8)])
def test_it_reads_each_field_where_the_layout_puts_it(layout):
    buf = ctypes.create_string_buffer(gil_bytes(layout, holder=0xDEAD, locked=1, switch=77, waiters=2), layout.size)
    site = (os.open("/proc/self/mem", os.O_RDONLY), ctypes.addressof(buf), layout.shift, layout.condvar.wrefs)
    try:
        start = time.monotonic_ns()
        next_ns, wake_ups, ((samples, held, contended, switch, holders, error),) = _gilloop.sample(
            [site], 1_000_000, start, start + 20_000_000)
        assert 10 <= wake_ups <= 21 and samples == wake_ups and next_ns >= start + 20_000_000
        assert (held, contended, switch, holders, error) == (samples, samples, 77, ((0xDEAD, samples),), 0)
        ctypes.memmove(buf, gil_bytes(layout, holder=0, locked=0, switch=78, waiters=0), layout.size)
        start = time.monotonic_ns()
        _, _, ((samples, held, contended, switch, holders, error),) = _gilloop.sample([site], 1_000_000, start,
                                                                                      start + 5_000_000)
        assert samples > 0 and (held, contended, switch, holders, error) == (0, 0, 78, (), 0)
    finally:
        os.close(site[0])


def test_a_site_that_cannot_be_read_says_why_and_ends_the_loop_early():
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        start = time.monotonic_ns()
        _, wake_ups, ((samples, *_, error),) = _gilloop.sample([(fd, 8, 0, 36)], 1_000_000, start, start + 1_000_000_000)
        assert samples == 0 and error != 0 and wake_ups == 0
        assert time.monotonic_ns() - start < 500_000_000  # not the whole second
    finally:
        os.close(fd)


def test_the_sampler_uses_it_and_measures_what_the_python_loop_does(tmp_path, monkeypatch):
    python = python_or_skip("3.12")
    calls = []

    class Counting:
        @staticmethod
        def sample(*args):
            out = _gilloop.sample(*args)
            calls.append(out[1])
            return out

    monkeypatch.setattr(sampler, "_gilloop", Counting)
    (tmp_path / "c").mkdir()
    in_c, _ = record_code(tmp_path / "c", python, CPU_THREADS.format(n=2))
    monkeypatch.setattr(sampler, "_gilloop", None)
    (tmp_path / "py").mkdir()
    in_python, _ = record_code(tmp_path / "py", python, CPU_THREADS.format(n=2))
    assert sum(calls) > 0.9 * in_c["gil_sample_hz"] * in_c["duration_s"]  # (the rest: before the GIL was found)
    for summary in (in_c, in_python):
        gil = summary["gil"]
        assert gil["held"] > 0.9 and gil["contended"] > 0.3 and gil["handoffs_per_s"] > 50, gil
        assert summary["gil_sample_hz"] > 500, summary["gil_sample_hz"]
        spinners = [t for t in summary["threads"] if t["name"].startswith("cpu-")]
        assert len(spinners) == 2 and all(t["gil_held"] > 0.3 for t in spinners), spinners
