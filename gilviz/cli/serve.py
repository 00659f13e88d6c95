"""gilviz serve: the app in a browser, through textual-serve (`pip install 'gilviz[serve]'`).

Each browser page starts its own `gilviz run TARGET` (or `gilviz replay FILE`) under Textual's
web driver; closing the page ends it, and with it the workload. So does serve's end, however it
came: stopped, serve closes its pages; killed, the kernel tells each page's app (live.end_with_serve).
The input is checked here, once, before anything listens.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shlex
import socket
import sys

from ..errors import UserError
from .live import SERVE_PID
from .options import Parser, resolve_target, settings_from, split_target

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _serve_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """serve's own options come first; the rest is what the page runs."""
    lead, rest = [], list(argv)
    while rest and rest[0].split("=", 1)[0] in ("--host", "--port", "--public-url", "-h", "--help"):
        tok = rest.pop(0)
        lead.append(tok)
        if "=" not in tok and tok not in ("-h", "--help") and rest:
            lead.append(rest.pop(0))
    return lead, rest


def _is_recording(path: str) -> bool:
    """A file gilviz recorded (a script that happens to have no .py is a target, not one)."""
    if path.endswith(".gilviz"):
        return True
    if not os.path.isfile(path) or path.endswith(".py"):
        return False
    from ..recording import read

    try:
        records = read(path)
        next(records)
        records.close()
        return True
    except UserError:
        return False


def page_command(rest: list[str]) -> tuple[list[str], str]:
    """The gilviz command each page runs, checked now, and what to call it."""
    from .live import _parser

    if len(rest) == 1 and _is_recording(rest[0]):
        from ..recording import read

        if not os.path.isfile(rest[0]):
            raise UserError(f"no recording at {rest[0]}")
        records = read(rest[0])
        next(records)  # not a recording: one line, now
        records.close()
        return ["replay", os.path.abspath(rest[0])], f"the replay of {rest[0]}"
    opts, target = split_target(rest)
    args = _parser("gilviz serve", "").parse_args(opts)
    settings_from(args)
    if not target:
        from .live import _default_target

        target = _default_target()
    resolved = resolve_target(target, args.python)
    if resolved.get("pid") is not None:
        raise UserError("gilviz serve starts what it shows, for each page: give it a target or a recording, not --pid")
    return ["run", *opts, *target], "gilviz run " + " ".join(target)


def check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port must be from 1 to 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(f"--host {host} is not an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:  # (the port is not the matter)
                raise UserError(f"--host {host} is not an address of this machine ({e.strerror}); "
                                "give one it has, or 0.0.0.0 for all") from None
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); give another --port") from None


def cmd_serve(argv: list[str]) -> int:
    lead, rest = _serve_options(argv)
    p = Parser(prog="gilviz serve", description="The app in a browser: gilviz serve [--host H] [--port P] "
                                                "[TARGET | FILE]. Each page runs its own.")
    p.add_argument("--host", default="localhost", help="address to listen on (default localhost: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--public-url", help="the address browsers use to reach it, when not http://HOST:PORT")
    args = p.parse_args(lead)
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UserError("gilviz serve needs textual-serve: pip install 'gilviz[serve]'") from None
    command, what = page_command(rest)
    check_port(args.host, args.port)
    # exec: the page's app is serve's own child, not a shell's, so that it learns when serve dies
    line = "exec " + shlex.join([sys.executable, "-m", "gilviz", *command])
    os.environ[SERVE_PID] = str(os.getpid())  # textual-serve hands its environment to each page
    local = args.host in LOCAL_HOSTS
    pages: set[asyncio.Task] = set()

    class GilvizServer(Server):
        async def handle_websocket(self, request):
            """A page's whole life, known so that stopping serve can close it."""
            page = asyncio.current_task()
            pages.add(page)
            try:
                return await super().handle_websocket(request)
            finally:
                pages.discard(page)

        async def on_shutdown(self, app) -> None:
            """Stopping serve (Ctrl+C, SIGTERM) closes the open pages now, as aiohttp would after a
            minute: textual-serve then asks each page's app to quit and waits until it has ended."""
            for page in pages:
                page.cancel()

        async def on_startup(self, app) -> None:  # textual-serve's banner, said our way
            print(f"gilviz: serving {what} at {self.public_url}; each page runs its own. "
                  + ("Only this machine can open it (--host 0.0.0.0 lets others in). " if local else
                     f"Anyone who can reach this machine on port {args.port} can open it and start it. ")
                  + "Ctrl+C stops it.", file=sys.stderr, flush=True)

    server = GilvizServer(line, host=args.host, port=args.port, title=f"gilviz: {what}", public_url=args.public_url)
    server.serve()
    return 0
