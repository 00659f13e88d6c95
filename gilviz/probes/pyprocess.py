"""Is a process CPython, which version, with or without a GIL, and where is _PyRuntime.

Everything comes from outside: /proc/PID/maps says which files are mapped where, the
ELF symbol table of libpython (or of a static python binary) gives _PyRuntime's
offset, and from 3.11 on Py_Version gives the exact version from the target's memory.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

_LIB_RE = re.compile(r"libpython(\d+)\.(\d+)(t?)[^/]*\.so")
_EXE_RE = re.compile(r"python(\d+)\.(\d+)(t?)$")


@dataclass(frozen=True)
class Symbol:
    address: int
    size: int


@dataclass(frozen=True)
class PythonProcess:
    pid: int
    binary: str  # the file holding _PyRuntime
    runtime: Symbol
    version: tuple[int, ...]  # (3, 12, 1) or (3, 12) when the micro is unknown
    free_threaded: bool

    @property
    def version_string(self) -> str:
        return ".".join(map(str, self.version)) + ("t" if self.free_threaded else "")


# every symbol gilviz reads, asked for at once: the first lookup in a binary builds the index of
# all its names (about 40 ms of CPU for libpython), which the cache then keeps
SYMBOLS = ("_PyRuntime", "Py_Version", "PyCode_Type", "PyUnicode_Type")


@functools.lru_cache(maxsize=32)
def _elf_symbols(path: str, names: tuple[str, ...]) -> tuple[str, dict[str, tuple[int, int]]]:
    """(e_type, {name: (st_value, st_size)}) for the names found, cached per binary."""
    found: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for section_name in (".dynsym", ".symtab"):
            section = elf.get_section_by_name(section_name)
            if section is None:
                continue
            for name in names:
                if name in found:
                    continue
                syms = section.get_symbol_by_name(name)
                if syms:
                    found[name] = (syms[0]["st_value"], syms[0]["st_size"])
        return elf.header["e_type"], found


def _mapped_files(pid: int) -> list[tuple[int, int, str]]:
    """(start, file offset, path) of every file mapping, in address order."""
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                start = int(parts[0].split("-", 1)[0], 16)
                out.append((start, int(parts[2], 16), parts[5].rstrip("\n")))
    return out


def _load_base(maps: list[tuple[int, int, str]], path: str) -> int | None:
    starts = [start - offset for start, offset, p in maps if p == path]
    return min(starts) if starts else None


def inspect(pid: int) -> PythonProcess | None:
    """The process's CPython runtime, or None if it is not CPython (or is gone)."""
    try:
        maps = _mapped_files(pid)
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    exe = exe.removesuffix(" (deleted)")
    candidates = [p for p in dict.fromkeys(p for _, _, p in maps) if _LIB_RE.search(os.path.basename(p))]
    candidates.append(exe)
    for path in candidates:
        try:
            e_type, syms = _elf_symbols(path, SYMBOLS)
        except (OSError, ELFError):
            continue
        if "_PyRuntime" not in syms:
            continue
        base = _load_base(maps, path)
        if base is None:
            continue
        bias = base if e_type == "ET_DYN" else 0
        value, size = syms["_PyRuntime"]
        runtime = Symbol(value + bias, size)
        name = os.path.basename(path)
        m = _LIB_RE.search(name) or _EXE_RE.search(name) or _EXE_RE.search(os.path.basename(exe))
        version: tuple[int, ...] = (int(m.group(1)), int(m.group(2))) if m else ()
        free_threaded = bool(m and m.group(3))
        if "Py_Version" in syms:
            hexversion = _read_u32(pid, syms["Py_Version"][0] + bias)
            if hexversion:
                version = (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF)
        return PythonProcess(pid, path, runtime, version, free_threaded)
    return None


def _read_u32(pid: int, address: int) -> int | None:
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        return struct.unpack("<I", os.pread(fd, 4, address))[0]
    except OSError:
        return None
    finally:
        os.close(fd)
