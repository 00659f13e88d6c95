"""Reading another process's memory through /proc/PID/mem.

Everything that reads the target's memory goes through a `Memory`, so the logic that
interprets those bytes can be fed recorded bytes in tests (see tests/test_gil_probe.py).
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Protocol

_U64 = struct.Struct("<Q")


class Memory(Protocol):
    def read(self, address: int, size: int) -> bytes:
        """Exactly size bytes at address; OSError if they cannot be read."""


def is_pointer(value: int) -> bool:
    """Could this be a user-space pointer on x86-64 or aarch64 Linux?"""
    return 0x1000 <= value < 1 << 47


class ProcessMemory:
    """A live process's memory; reads are pread calls on one open file."""

    def __init__(self, pid: int):
        self.pid = pid
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)

    def read(self, address: int, size: int) -> bytes:
        if not 0 < address < 1 << 63:  # a torn or stale pointer read from a live process
            raise OSError(errno.EFAULT, f"no such address {address:#x}")
        data = os.pread(self.fd, size, address)
        if len(data) != size:
            raise ProcessLookupError(f"short read at {address:#x}")  # the process has exited
        return data

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def read_u64(memory: Memory, address: int) -> int:
    return _U64.unpack(memory.read(address, 8))[0]
