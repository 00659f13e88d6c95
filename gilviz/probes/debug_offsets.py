"""CPython's own map of its runtime for out-of-process tools (3.13 and later).

`_PyRuntime` begins with `_Py_DebugOffsets` (Include/internal/pycore_debug_offsets.h;
in 3.13, pycore_runtime.h): the cookie "xdebugpy", the version, whether the build is
free-threaded, then tables of field offsets of the runtime, interpreter and thread state
structs. The tables differ between minor versions, so the field lists below are copied
from each version's header, and a table is used only when it agrees with itself and with
the symbol it sits in. A version not listed here is refused rather than guessed at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .memory import Memory, is_pointer, read_u64

COOKIE = b"xdebugpy"
_HEAD = struct.Struct("<8sQQ")  # cookie, version (PY_VERSION_HEX), free_threaded
_RUNTIME_FIELDS = ("size", "finalizing", "interpreters_head")

# Field order of struct _interpreter_state and struct _thread_state in each version's header.
_INTERPRETER_313 = ("size", "id", "next", "threads_head", "gc", "imports_modules", "sysdict", "builtins",
                    "ceval_gil", "gil_runtime_state", "gil_runtime_state_enabled", "gil_runtime_state_locked",
                    "gil_runtime_state_holder")
_INTERPRETER_314 = ("size", "id", "next", "threads_head", "threads_main", "gc", "imports_modules", "sysdict",
                    "builtins", "ceval_gil", "gil_runtime_state", "gil_runtime_state_enabled",
                    "gil_runtime_state_locked", "gil_runtime_state_holder", "code_object_generation",
                    "tlbc_generation")
_THREAD_313 = ("size", "prev", "next", "interp", "current_frame", "thread_id", "native_thread_id",
               "datastack_chunk", "status")
_THREAD_315 = ("size", "prev", "next", "interp", "current_frame", "base_frame", "last_profiled_frame",
               "last_profiled_frame_seq", "thread_id", "native_thread_id", "datastack_chunk", "status",
               "holds_gil", "gil_requested", "current_exception", "exc_state")
LAYOUTS = {
    (3, 13): (_INTERPRETER_313, _THREAD_313),
    (3, 14): (_INTERPRETER_314, _THREAD_313),
    (3, 15): (_INTERPRETER_314, _THREAD_315),
}
MAX_STRUCT = 16 << 20  # no runtime or interpreter struct is anywhere near this large
MAX_INTERPRETERS = 256
MAX_THREADS = 100_000


class DebugOffsetsError(Exception):
    """The table is absent, of a version not known here, or contradicts itself."""


@dataclass(frozen=True)
class DebugOffsets:
    version: tuple[int, int, int]
    free_threaded: bool
    runtime: dict[str, int]
    interpreter: dict[str, int]
    thread: dict[str, int]
    rest: tuple[int, ...] = ()  # the words after the thread state's table, as far as was read (the
    # frame's and code object's tables: probes/frames.py checks its layouts against them)

    @property
    def gil_shift(self) -> int:
        """Where `interval` sits in the GIL struct: after `int enabled` on free-threaded builds."""
        return self.interpreter["gil_runtime_state_holder"] - self.interpreter["gil_runtime_state"] - 8

    @property
    def has_thread_gil_flags(self) -> bool:
        return bool(self.thread.get("holds_gil")) and bool(self.thread.get("gil_requested"))


def parse(data: bytes, runtime_size: int = 0) -> DebugOffsets:
    """Reads the table from the first bytes of _PyRuntime; runtime_size is the symbol's size."""
    if len(data) < _HEAD.size:
        raise DebugOffsetsError("too short")
    cookie, hexversion, free_threaded = _HEAD.unpack_from(data)
    if cookie != COOKIE:
        raise DebugOffsetsError("no debug offsets (cookie missing)")
    version = (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF)
    layout = LAYOUTS.get(version[:2])
    if layout is None:
        raise DebugOffsetsError(f"the debug offsets of CPython {version[0]}.{version[1]} are not known to this gilviz")
    interp_fields, thread_fields = layout
    names = (*_RUNTIME_FIELDS, *interp_fields, *thread_fields)
    need = _HEAD.size + 8 * len(names)
    if len(data) < need:
        raise DebugOffsetsError("too short")
    values = struct.unpack_from(f"<{len(names)}Q", data, _HEAD.size)
    runtime = dict(zip(_RUNTIME_FIELDS, values[:3]))
    interpreter = dict(zip(interp_fields, values[3 : 3 + len(interp_fields)]))
    thread = dict(zip(thread_fields, values[3 + len(interp_fields) :]))
    rest = struct.unpack_from(f"<{(len(data) - need) // 8}Q", data, need)
    offsets = DebugOffsets(version, bool(free_threaded), runtime, interpreter, thread, rest)
    _check(offsets, runtime_size)
    return offsets


def _check(off: DebugOffsets, runtime_size: int) -> None:
    """A table is used only if every offset lies inside its struct and the GIL's fields are where
    the GIL struct puts them: a misread table (wrong version, torn memory) fails this."""
    if runtime_size and off.runtime["size"] != runtime_size:
        raise DebugOffsetsError(f"runtime size {off.runtime['size']} is not the symbol's {runtime_size}")
    for table in (off.runtime, off.interpreter, off.thread):
        size = table["size"]
        if not 0 < size <= MAX_STRUCT:
            raise DebugOffsetsError(f"implausible struct size {size}")
        for name, value in table.items():
            if name != "size" and value >= size:
                raise DebugOffsetsError(f"{name} offset {value} lies outside its struct ({size})")
    interp = off.interpreter
    shift = off.gil_shift
    if shift != (8 if off.free_threaded else 0):
        raise DebugOffsetsError("the GIL's holder is not where its struct puts it")
    if interp["gil_runtime_state_locked"] != interp["gil_runtime_state_holder"] + 8:
        raise DebugOffsetsError("the GIL's locked flag is not where its struct puts it")
    if off.free_threaded and interp["gil_runtime_state_enabled"] != interp["gil_runtime_state"]:
        raise DebugOffsetsError("the GIL's enabled flag is not where its struct puts it")
    if not off.free_threaded and interp["gil_runtime_state_enabled"] != 0:
        raise DebugOffsetsError("a GIL enabled flag on a build with the GIL")
    thread = off.thread
    if thread.get("holds_gil") and thread.get("gil_requested") and thread["gil_requested"] != thread["holds_gil"] + 4:
        raise DebugOffsetsError("the thread state's GIL flags are not side by side")


def read(memory: Memory, runtime_address: int, runtime_size: int = 0) -> DebugOffsets:
    try:
        data = memory.read(runtime_address, 512)
    except OSError as e:
        raise DebugOffsetsError(f"cannot read _PyRuntime: {e}") from None
    return parse(data, runtime_size)


@dataclass(frozen=True)
class Interpreter:
    address: int
    id: int
    gil: int  # the GIL it uses (ceval.gil)
    own_gil: int  # where its own GIL struct lives (its _gil)
    threads_head: int

    @property
    def has_own_gil(self) -> bool:
        return self.gil == self.own_gil


def interpreters(memory: Memory, off: DebugOffsets, runtime_address: int) -> list[Interpreter]:
    """Every interpreter of the process, the main one (id 0) last, as CPython links them."""
    i = off.interpreter
    found: list[Interpreter] = []
    address = read_u64(memory, runtime_address + off.runtime["interpreters_head"])
    seen: set[int] = set()
    while address and address not in seen and len(found) < MAX_INTERPRETERS:
        if not is_pointer(address):
            raise OSError(f"interpreter pointer {address:#x} is not a pointer")
        seen.add(address)
        interp_id = struct.unpack("<q", memory.read(address + i["id"], 8))[0]
        gil = read_u64(memory, address + i["ceval_gil"])
        head = read_u64(memory, address + i["threads_head"])
        found.append(Interpreter(address, interp_id, gil, address + i["gil_runtime_state"], head))
        address = read_u64(memory, address + i["next"])
    return found


@dataclass(frozen=True)
class ThreadState:
    address: int
    native_thread_id: int
    interp: int  # its interpreter's address


def thread_states(memory: Memory, off: DebugOffsets, interp: Interpreter) -> list[ThreadState]:
    t = off.thread
    out: list[ThreadState] = []
    address, seen = interp.threads_head, set()
    while address and address not in seen and len(out) < MAX_THREADS:
        if not is_pointer(address):
            raise OSError(f"thread state pointer {address:#x} is not a pointer")
        seen.add(address)
        buf = memory.read(address, max(t["native_thread_id"], t["next"]) + 8)
        tid = struct.unpack_from("<Q", buf, t["native_thread_id"])[0]
        out.append(ThreadState(address, tid, interp.address))
        address = struct.unpack_from("<Q", buf, t["next"])[0]
    return out
