"""A local service that echoes what it receives after a delay, for the I/O scenarios.

It is a bare asyncio protocol, so a delay costs its event loop nothing and shutting the
loop down leaves no task behind to cancel.
"""

import asyncio
import socket

import _common


class DelayedEcho(asyncio.Protocol):
    """Sends every chunk back `delay_s` seconds after it arrives."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.delay_s > 0:
            asyncio.get_running_loop().call_later(self.delay_s, self._send, data)
        else:
            self.transport.write(data)

    def _send(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)


async def start(delay_s: float, listener: socket.socket):
    """Starts the service on the running loop, accepting on `listener`."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: DelayedEcho(delay_s), sock=listener)


def serve_forever(listener: socket.socket, delay_s: float) -> None:
    """Runs the service until the process ends: the target of a child process."""

    async def run() -> None:
        server = await start(delay_s, listener)
        await server.serve_forever()

    asyncio.run(run())


def start_service(name: str, delay_s: float):
    """Runs the service in a child process named `name`; returns its address and the process."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    process = _common.start_process(name, serve_forever, listener, delay_s)
    return listener.getsockname(), process


def request(connection: socket.socket, replies) -> None:
    """One blocking round trip: while it waits for the answer, the thread holds no GIL."""
    connection.sendall(b"request\n")
    replies.readline()


def client_worker(slot: int, counts, stop, address) -> None:
    """Makes one request after another on a connection of its own until stopped."""
    with socket.create_connection(address) as connection, connection.makefile("rb") as replies:
        while not stop.is_set():
            request(connection, replies)
            counts[slot] += 1
