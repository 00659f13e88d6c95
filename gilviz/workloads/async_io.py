"""asyncio: many requests in flight on one thread; blocking calls go to a thread pool.

An event loop runs a local service that answers after --latency ms and, on the same
thread, --tasks client coroutines calling it: while one coroutine awaits its answer, the
loop runs the others. Code that can only block (a plain socket call here) is handed to a
thread pool with run_in_executor, where each pool thread waits in its own call.
On the timeline: one busy event-loop thread, pool threads blocked on I/O.
"""

import asyncio
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import _common
import _echo

POLL_STOP_S = 0.05
_pool_connection = threading.local()


async def async_client(address, counts) -> None:
    """A coroutine making one request after another; each await lets the others run."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        while True:
            writer.write(b"request\n")
            await writer.drain()
            await reader.readline()
            counts[0] += 1
    finally:
        writer.close()


def blocking_request(address) -> None:
    """A call that can only block; runs in a pool thread, on that thread's own connection."""
    if not hasattr(_pool_connection, "socket"):
        _pool_connection.socket = socket.create_connection(address)
        _pool_connection.replies = _pool_connection.socket.makefile("rb")
    _echo.request(_pool_connection.socket, _pool_connection.replies)


async def blocking_client(pool, address, counts, stop) -> None:
    """Hands blocking requests to the pool until stopped (a pool call cannot be cancelled)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        await loop.run_in_executor(pool, blocking_request, address)
        counts[1] += 1


async def exercise(args, counts, stop) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    server = await _echo.start(args.latency / 1000, listener)
    address = listener.getsockname()
    pool = ThreadPoolExecutor(args.threads or 1, thread_name_prefix="pool", initializer=_common.name_os_thread)
    async_clients = [asyncio.ensure_future(async_client(address, counts)) for _ in range(args.tasks)]
    blocking_clients = [
        asyncio.ensure_future(blocking_client(pool, address, counts, stop)) for _ in range(args.threads)
    ]
    while not stop.is_set():
        await asyncio.sleep(POLL_STOP_S)
    for client in async_clients:
        client.cancel()
    await asyncio.gather(*async_clients, *blocking_clients, return_exceptions=True)
    pool.shutdown(wait=True)  # no call is left in it, so this returns at once
    server.close()


def run_event_loop(args, counts, stop) -> None:
    asyncio.run(exercise(args, counts, stop))


def build_parser():
    parser = _common.make_parser(__doc__)
    parser.add_argument("--tasks", type=_common.positive_int, default=100, help="client coroutines on the event loop")
    parser.add_argument(
        "--threads", type=_common.non_negative_int, default=4, help="pool threads making blocking requests"
    )
    parser.add_argument(
        "--latency", type=_common.non_negative_float, default=20.0, help="ms the service takes to answer"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    counts = [0, 0]  # async requests, blocking requests: both counted on the event-loop thread
    stop = threading.Event()
    progress = _common.Progress("asyncio", "requests", lambda: sum(counts))
    workers = [_common.start_thread("event-loop", run_event_loop, args, counts, stop)]
    _common.supervise(workers, stop.set, progress, args.duration)
    progress.finish(result={"async": counts[0], "blocking": counts[1]})


if __name__ == "__main__":
    main()
