"""Reading the line each thread is on from a target's memory (probes/frames.py), 3.9 to 3.15.

The oracles are the target's own: its interpreter decodes its line tables (dis, co_lines), and
its threads block at lines the workload names.
"""

import bisect
import json
import os
import random
import subprocess
import time

import pytest

from conftest import python_or_skip
from gilviz.probes import pyprocess
from gilviz.native import compiled
from gilviz.probes.frames import DECODERS, LAYOUTS, UNREADABLE, FrameReader, FramesError
from gilviz.probes.gil import GilProbe
from gilviz.probes.pyprocess import PythonProcess, Symbol

VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]

# Every code object of a few stdlib modules: their line tables as the target holds them, and
# the line of each instruction as the target's own interpreter decodes it.
DUMP_TABLES = r"""
import dis, json, sys, types
def codes(c):
    yield c
    for k in c.co_consts:
        if isinstance(k, types.CodeType):
            yield from codes(k)
out = []
for name in ("threading", "argparse", "json.decoder", "asyncio.base_events"):
    mod = __import__(name, fromlist=["x"])
    top = compile(open(mod.__file__).read(), mod.__file__, "exec")
    for c in codes(top):
        if sys.version_info >= (3, 10):
            table = c.co_linetable
            expected = []
            for start, end, line in c.co_lines():
                expected += [(off, -1 if line is None else line) for off in range(start, end, 2)]
        else:
            table = c.co_lnotab
            starts = list(dis.findlinestarts(c))
            expected = []
            for off in range(0, len(c.co_code), 2):
                expected.append((off, [line for start, line in starts if start <= off][-1]))
        out.append((table.hex(), c.co_firstlineno, expected))
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", VERSIONS)
def test_line_tables_decode_as_the_interpreter_decodes_them(version):
    python = python_or_skip(version)
    out = subprocess.run([python, "-c", DUMP_TABLES], capture_output=True, text=True, check=True).stdout
    decode = DECODERS[LAYOUTS[tuple(map(int, version.split(".")))].table]
    codes = json.loads(out)
    assert len(codes) > 300
    instructions = 0
    for table, firstlineno, expected in codes:
        starts, lines = decode(bytes.fromhex(table), firstlineno)
        got = [(off, lines[bisect.bisect_right(starts, off) - 1]) for off, _ in expected]
        assert got == [tuple(e) for e in expected]
        instructions += len(expected)
    assert instructions > 10_000


def test_a_line_table_cut_inside_an_entry_is_a_frames_error_not_a_crash():
    """A code object freed while it is read leaves memory that is no line table: its reader says
    so (the line is unreadable), where an IndexError ended the recording (seen once in CI)."""
    locations = DECODERS["locations"]
    whole = bytes([0x80 | 13 << 3, 0x02])  # one instruction, its line 1 on (a varint of one byte)
    assert locations(whole, 10) == ([0, 2], [11, -1])
    with pytest.raises(FramesError):
        locations(bytes([0x80 | 13 << 3, 0x42]), 10)  # the varint goes on past the table's end


WORKLOAD = """
import threading, time

def sleeper():
    time.sleep(1000)  # SLEEP-A

class Keeper:
    def method(self):
        time.sleep(1000)  # SLEEP-METHOD

def gen():
    yield 1
    time.sleep(1000)  # SLEEP-GEN

def through_c():
    list(map(lambda _: time.sleep(1000), [0]))  # SLEEP-LAMBDA

def schläfer_睡眠():
    time.sleep(1000)  # SLEEP-WIDE

def größe():
    time.sleep(1000)  # SLEEP-LATIN

def spinner():
    n = 0
    while True:  # SPIN
        n += 1  # SPIN

work = [sleeper, Keeper().method, lambda: list(gen()), through_c, schläfer_睡眠, größe, spinner]  # GEN-CALLER
threads = [threading.Thread(target=f, daemon=True) for f in work]
for t in threads:
    t.start()
time.sleep(0.3)
print(" ".join(str(t.native_id) for t in threads), threading.get_native_id(), flush=True)
time.sleep(1000)  # SLEEP-MAIN
"""


def _line(marker: str) -> list[int]:
    return [i + 1 for i, text in enumerate(WORKLOAD.splitlines()) if text.endswith("# " + marker)]


@pytest.fixture
def target(request, tmp_path):
    python = python_or_skip(request.param)
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    proc = subprocess.Popen([python, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        ids = [int(x) for x in proc.stdout.readline().split()]
        _wait_until_asleep(proc.pid, [tid for i, tid in enumerate(ids) if i != SPINNER])
        yield proc.pid, str(script), ids
    finally:
        proc.kill()
        proc.wait()


SPINNER = 6  # the spinner's place in the ids the workload prints
SLEEP_CALLS = {"23", "35", "230", "270"}  # select, nanosleep, clock_nanosleep, pselect6 (time.sleep, x86-64)


def _wait_until_asleep(pid: int, tids: list[int]) -> None:
    """Until each thread sleeps in time.sleep: on a busy machine one may still be on its way
    there 0.3 s after it started (or waiting for the GIL the spinner holds)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = []
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                calls.append(f.read().split()[0])
        if all(call in SLEEP_CALLS for call in calls):
            return
        time.sleep(0.01)
    raise AssertionError(f"threads of {pid} not asleep: {calls}")


@pytest.mark.parametrize("target", VERSIONS, indirect=True)
def test_each_thread_is_read_on_the_line_it_blocks_on(target):
    pid, script, (sleeper, method, gen, through_c, wide, latin, spinner, main) = target
    py = pyprocess.inspect(pid)
    gil = GilProbe(py)
    reader = FrameReader(gil.memory, py, gil.offsets)
    tids = {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    by_tid = {tid: tstate for tstate, _, tid in reader.thread_states()}
    assert set(by_tid) <= tids
    assert set(by_tid) >= {sleeper, method, gen, through_c, wide, latin, spinner, main}
    qualified = py.version[:2] >= (3, 11)
    expected = {
        sleeper: (_line("SLEEP-A"), "sleeper"),
        method: (_line("SLEEP-METHOD"), "Keeper.method" if qualified else "method"),
        gen: (_line("SLEEP-GEN"), "gen"),
        through_c: (_line("SLEEP-LAMBDA"), "through_c.<locals>.<lambda>" if qualified else "<lambda>"),
        wide: (_line("SLEEP-WIDE"), "schläfer_睡眠"),
        latin: (_line("SLEEP-LATIN"), "größe"),
        main: (_line("SLEEP-MAIN"), "<module>"),
    }
    for _ in range(3):
        for tid, (lines, function) in expected.items():
            assert reader.line(by_tid[tid]) == (script, lines[0], function)
        file, line, function = reader.line(by_tid[spinner])
        assert (file, function) == (script, "spinner") and line in _line("SPIN")
        time.sleep(0.05)


@pytest.mark.parametrize("target", VERSIONS, indirect=True)
def test_the_lines_read_in_one_call_are_those_read_one_by_one(target):
    """`lines` (in C where it was built: the walk to the innermost frame for all of a tick's
    threads in one call, lines of instructions seen before not worked out again) answers what
    `line` does for each thread state, and for addresses that are none."""
    pid, _, ids = target
    py = pyprocess.inspect(pid)
    gil = GilProbe(py)
    reader = FrameReader(gil.memory, py, gil.offsets)
    by_tid = {tid: tstate for tstate, _, tid in reader.thread_states()}
    tstates = [by_tid[tid] for tid in ids]
    (_, interp, _), *_ = reader.thread_states()
    strays = [py.runtime.address, interp, tstates[0] + 8, tstates[0] + 64, 0, 1 << 63, (1 << 64) - 8]

    def one_by_one(addresses):
        out = []
        for address in addresses:
            try:
                out.append(reader.line(address))
            except (OSError, FramesError):
                out.append(UNREADABLE)
        return out

    blocked = [t for i, t in enumerate(tstates) if i != SPINNER]
    for _ in range(2):  # (the second time from what the first learnt)
        assert reader.lines(blocked + strays) == one_by_one(blocked + strays)
        spin = reader.lines([tstates[SPINNER]])[0]
        assert spin[0::2] == (target[1], "spinner") and spin[1] in _line("SPIN")
    if compiled is not None:  # in C it read them, and asked Python again for none of the threads
        tops = compiled.frame_tops(gil.memory.fd, blocked, reader.c_layout)
        assert all(isinstance(top, tuple) and len(top[0]) == 36 for top in tops), tops
        assert compiled.frame_tops(gil.memory.fd, [0, 1 << 63], reader.c_layout) == [False, False]
        reader._fd = None  # as without the compiled piece
        assert reader.lines(blocked + strays) == one_by_one(blocked + strays)


@pytest.mark.parametrize("target", VERSIONS, indirect=True)
def test_whole_stacks_are_read_innermost_first_through_calls_from_c(target):
    """map() and list() call back into Python from C: on 3.12+ that puts a frame the C stack owns
    between the two Python frames, which is no frame of the program."""
    pid, script, (sleeper, method, gen, through_c, wide, latin, spinner, main) = target
    py = pyprocess.inspect(pid)
    gil = GilProbe(py)
    reader = FrameReader(gil.memory, py, gil.offsets)
    by_tid = {tid: tstate for tstate, _, tid in reader.thread_states()}
    qualified = py.version[:2] >= (3, 11)
    started = ["Thread.run" if qualified else "run", "Thread._bootstrap_inner" if qualified else "_bootstrap_inner",
               "Thread._bootstrap" if qualified else "_bootstrap"]
    lambda_name = "through_c.<locals>.<lambda>" if qualified else "<lambda>"
    expected = {
        through_c: [(script, _line("SLEEP-LAMBDA")[0], lambda_name), (script, _line("SLEEP-LAMBDA")[0], "through_c")],
        gen: [(script, _line("SLEEP-GEN")[0], "gen"), (script, _line("GEN-CALLER")[0], "<lambda>")],
        method: [(script, _line("SLEEP-METHOD")[0], "Keeper.method" if qualified else "method")],
    }
    for tid, inner in expected.items():
        stack = reader.stack(by_tid[tid], 20)
        assert stack[:len(inner)] == inner, stack
        assert [function for _, _, function in stack[len(inner):]] == started, stack
        assert all(file.endswith("threading.py") and line > 0 for file, line, _ in stack[len(inner):])
        assert reader.stack(by_tid[tid], 2) == stack[:2]
    assert reader.stack(by_tid[main], 20) == [(script, _line("SLEEP-MAIN")[0], "<module>")]


@pytest.mark.parametrize("target", ["3.12"], indirect=True)
def test_the_reader_parses_no_symbol_table_the_inspection_did_not(target):
    """Indexing a libpython's symbols takes about 40 ms of CPU: once per binary, not per use."""
    pyprocess._elf_symbols.cache_clear()
    py = pyprocess.inspect(target[0])
    gil = GilProbe(py)
    parsed = pyprocess._elf_symbols.cache_info().misses
    assert parsed >= 1
    FrameReader(gil.memory, py, gil.offsets)
    assert pyprocess._elf_symbols.cache_info().misses == parsed


@pytest.mark.parametrize("target", ["3.12"], indirect=True)
def test_an_address_that_is_no_thread_state_gives_no_line(target):
    pid, _, _ = target
    py = pyprocess.inspect(pid)
    gil = GilProbe(py)
    reader = FrameReader(gil.memory, py, gil.offsets)
    (tstate, interp, _), *_ = reader.thread_states()
    for address in (py.runtime.address, interp, tstate + 8, tstate + 64):
        try:
            assert reader.line(address) is None
        except (OSError, FramesError):
            pass


@pytest.mark.parametrize("target", ["3.9", "3.11", "3.13", "3.15"], indirect=True)
def test_frames_read_in_python_as_their_memory_changes_raise_only_what_the_reader_expects(target):
    """A live process's memory changes as it is read (a frame popped, a code object freed and its
    memory reused): read through a memory whose bytes change at random, the reader says OSError or
    FramesError, and nothing else (anything else ends its process's reader: sampler._reader_failed).
    The reader in Python: the C walk of the innermost frames reads the process's memory itself, and
    hands what it cannot tell to the Python one."""
    pid, _, ids = target
    py = pyprocess.inspect(pid)
    gil = GilProbe(py)
    real = gil.memory
    tstates = [tstate for tstate, _, _ in FrameReader(real, py, gil.offsets).thread_states()]
    rng = random.Random(12)

    class Changing:
        share = 0.0  # of the bytes read that changed since

        def read(self, address, size):
            data = bytearray(real.read(address, size))
            for i in range(size):
                if rng.random() < self.share:
                    data[i] = rng.randrange(256)
            return bytes(data)

    changing = Changing()
    unexpected, read = [], 0
    for share in (0.001, 0.01, 0.05, 0.2) * 25:
        reader = FrameReader(real, py, gil.offsets)  # (nothing learnt from the reads before)
        reader.memory, changing.share = changing, share
        reader._fd = None  # (the reader in Python: the C walk reads the process's memory itself)
        for read_one in (reader.line, lambda t: reader.stack(t, 50), lambda t: reader.lines([t]),
                         lambda t: reader.thread_states()):
            for tstate in tstates:
                try:
                    read_one(tstate)
                    read += 1
                except (OSError, FramesError):
                    pass
                except Exception as e:
                    unexpected.append(repr(e))
    assert not unexpected, unexpected[:5]
    assert read > 100  # (reads that got through the changes, to something or to nothing)


CPYTHON_STACKS = """
import json, sys, _remote_debugging
out = {}
for item in _remote_debugging.RemoteUnwinder(int(sys.argv[1]), all_threads=True).get_stack_trace():
    for th in getattr(item, "threads", None) or (item,):
        frames = []
        for f in th.frame_info:
            location = getattr(f, "location", None)
            line = location.lineno if location is not None else getattr(f, "lineno", None)
            if line is not None and line > 0:
                frames.append([f.filename, line, f.funcname])
        out[th.thread_id] = frames
print(json.dumps(out))
"""


@pytest.mark.parametrize("target", ["3.15"], indirect=True)
def test_whole_stacks_are_those_cpythons_own_reader_finds(target):
    """CPython 3.15's `_remote_debugging`, on the target's own interpreter, as an oracle."""
    pid, _, (*blocked, spinner, main) = target
    py = pyprocess.inspect(pid)
    gil = GilProbe(py)
    reader = FrameReader(gil.memory, py, gil.offsets)
    by_tid = {tid: tstate for tstate, _, tid in reader.thread_states()}
    theirs = json.loads(subprocess.run([python_or_skip("3.15"), "-c", CPYTHON_STACKS, str(pid)], capture_output=True,
                                       text=True, check=True).stdout)
    for tid in (*blocked, main):
        assert reader.stack(by_tid[tid], 100) == [tuple(f) for f in theirs[str(tid)]]


@pytest.mark.parametrize("target", ["3.15"], indirect=True)
def test_a_build_whose_debug_offsets_lay_frames_out_otherwise_is_refused(target, monkeypatch):
    from gilviz.probes import frames

    py = pyprocess.inspect(target[0])
    gil = GilProbe(py)
    FrameReader(gil.memory, py, gil.offsets)
    table = list(frames.TABLES_AFTER_THREAD[(3, 15)])
    table[table.index(56)] = 64  # the instruction pointer elsewhere in the frame
    monkeypatch.setitem(frames.TABLES_AFTER_THREAD, (3, 15), tuple(table))
    with pytest.raises(FramesError, match="debug offsets lay frames"):
        FrameReader(gil.memory, py, gil.offsets)


@pytest.mark.parametrize("version, free_threaded, offsets, why", [
    ((3, 16, 0), False, None, "not known"),
    ((3, 8, 10), False, None, "not known"),
    ((3, 13, 1), True, None, "free-threaded"),
    ((3, 13, 1), False, None, "debug offsets"),
    ((3, 15, 2), False, None, "debug offsets"),
])
def test_builds_whose_frames_are_not_known_are_refused(version, free_threaded, offsets, why):
    py = PythonProcess(1, "/nonexistent/python", Symbol(0x1000, 0), version, free_threaded)
    with pytest.raises(FramesError, match=why):
        FrameReader(None, py, offsets)  # type: ignore[arg-type]

