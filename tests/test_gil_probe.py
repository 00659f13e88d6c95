"""Finding the GIL by its shape, on _PyRuntime bytes copied out of real 3.9 and 3.10
processes (one idle, one with three threads fighting over the GIL)."""

import base64
import json
import struct
from pathlib import Path

import pytest

from gilviz.probes.gil import GIL_STRUCT_SIZE, find_gil_by_shape

RUNTIMES = {k: base64.b64decode(v) for k, v in json.loads(
    (Path(__file__).parent / "data" / "pyruntime_3.9_3.10.json").read_text()).items()}


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_gil_found_at_its_offset(name):
    buf = RUNTIMES[name]
    # measured: the GIL state struct starts 352 bytes into _PyRuntime on 3.9 and 3.10
    assert find_gil_by_shape(buf) == 352
    interval, holder, locked = struct.unpack_from("<QQi", buf, 352)
    assert interval == 5000
    assert holder != 0
    if name.endswith("contended"):
        assert locked == 1
        waiters = struct.unpack_from("<I", buf, 352 + 68)[0] >> 3
        assert waiters >= 1


def test_nothing_found_where_there_is_no_gil():
    buf = bytearray(RUNTIMES["3.9-idle"])
    buf[352 + 68] = 0  # the condition variable no longer looks like one
    assert find_gil_by_shape(bytes(buf)) is None
    assert find_gil_by_shape(bytes(4096)) is None


def test_changed_switch_interval_still_found():
    buf = bytearray(RUNTIMES["3.10-contended"])
    struct.pack_into("<Q", buf, 352, 1000)  # sys.setswitchinterval(0.001)
    assert find_gil_by_shape(bytes(buf)) == 352
    assert len(buf) > GIL_STRUCT_SIZE
