"""C code that releases the GIL runs in parallel, even on an interpreter with a GIL.

Each thread hashes a large buffer with hashlib (or compresses it with zlib, or runs a
numpy ufunc over it). These drop the GIL around the heavy loop (hashlib does so for
buffers over 2 KiB), so the threads only need it for a moment between calls.
On the timeline: several threads on separate cores, all in the native state at once.
"""

import hashlib
import os
import sys
import threading
import zlib

import _common

MIB = 1 << 20


def hash_work(size_mib: int):
    data = os.urandom(size_mib * MIB)
    return lambda: hashlib.sha256(data).digest()


def zlib_work(size_mib: int):
    data = os.urandom(size_mib * MIB)
    return lambda: zlib.compress(data, 6)


def numpy_work(size_mib: int):
    import numpy  # optional: only this choice needs it

    values = numpy.linspace(0.0, 1.0, size_mib * MIB // 8)
    out = numpy.empty_like(values)
    return lambda: numpy.sin(values, out=out)


WORK = {"hash": hash_work, "zlib": zlib_work, "numpy": numpy_work}


def native_worker(slot: int, counts, stop, make_work, size_mib: int) -> None:
    """Repeats one GIL-releasing call on a buffer of its own, counting MiB processed."""
    work = make_work(size_mib)
    while not stop.is_set():
        work()
        counts[slot] += size_mib


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--threads", type=_common.positive_int, default=2, help="threads doing native work")
    parser.add_argument("--size", type=_common.positive_int, default=4, help="MiB per buffer")
    parser.add_argument(
        "--work",
        choices=sorted(WORK),
        default="hash",
        help="hash: hashlib.sha256; zlib: zlib.compress; numpy: numpy.sin (needs numpy)",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.work == "numpy":
        try:
            import numpy  # noqa: F401  (fail here, not in every thread)
        except ImportError:
            print(f"native-release: --work numpy needs numpy, which {sys.executable} lacks; pip install numpy",
                  file=sys.stderr)
            sys.exit(2)
    counts = [0] * args.threads
    stop = threading.Event()
    progress = _common.Progress("native-release", "MiB", lambda: sum(counts))
    workers = [
        _common.start_thread(f"{args.work}-{i + 1}", native_worker, i, counts, stop, WORK[args.work], args.size)
        for i in range(args.threads)
    ]
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish()


if __name__ == "__main__":
    main()
