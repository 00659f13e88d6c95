"""How busy each CPU core is, from /proc/stat, whoever keeps it busy."""

from __future__ import annotations

import os

_USER_HZ = os.sysconf("SC_CLK_TCK")


class CpuProbe:
    """Cumulative busy time per core, in microseconds (resolution: one clock tick)."""

    def __init__(self) -> None:
        self._fd = os.open("/proc/stat", os.O_RDONLY)

    def read(self) -> list[int]:
        text = os.pread(self._fd, 1 << 16, 0).decode()
        busy: list[int] = []
        for line in text.splitlines()[1:]:
            if not line.startswith("cpu"):
                break
            name, *values = line.split()
            cpu = int(name[3:])
            busy.extend([0] * (cpu + 1 - len(busy)))  # offline cores leave gaps
            fields = [int(x) for x in values]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
            # user nice system idle iowait irq softirq steal; guest is inside user
            total = sum(fields[:8]) if len(fields) >= 8 else sum(fields)
            busy[cpu] = (total - idle) * 1_000_000 // _USER_HZ
        return busy

    def close(self) -> None:
        os.close(self._fd)
