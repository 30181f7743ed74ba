"""`portatlas serve`: the atlas in the browser (a local web server; docs/web.md)."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable
import json
import socket
import contextlib
import signal
import threading
import gc
import select
import time

from portatlas.cli.common import parser
from portatlas.errors import PortatlasError, UsageError
from portatlas.parsing import parse_port
from portatlas.web.config import WebConfig, local_hosts
from portatlas.atlas import Atlas
from portatlas.web.feedback import FeedbackStore
from portatlas.web.checks import Checker

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8357
MAX_WORKERS = 16


def main(argv: list[str]) -> int:
    p = parser("portatlas serve", "Serve the atlas as web pages and a JSON API. Binds "
               f"{DEFAULT_HOST}:{DEFAULT_PORT} by default and prints its URL.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", default=str(DEFAULT_PORT),
                   help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--allow-check", action="append", metavar="TARGETS", default=[],
                   help="let the browser check ports on these hosts only (comma-separated "
                        "names or addresses; repeatable). Off by default.")
    p.add_argument("--feedback-db", metavar="PATH",
                   help="where 'Was this page helpful?' answers go (default "
                        "$PORTATLAS_FEEDBACK_DB or <data dir>/feedback.sqlite3)")
    p.add_argument("--snapshots", metavar="PATH",
                   help="snapshots shown under 'Latest changes' (default: beside the database, "
                        "or $PORTATLAS_SNAPSHOTS; docs/changes.md)")
    p.add_argument("--workers", default="1",
                   help=f"server processes (1-{MAX_WORKERS}; default 1). More use more cores.")
    p.add_argument("--access-log", action="store_true", help="log every request to stderr")
    p.add_argument("--request-timeout", default="10", metavar="S",
                   help="seconds a client has to send a whole request (0.5-300; default 10); "
                        "slower and silent connections are closed")
    p.add_argument("--max-connections", default=None, metavar="N",
                   help="most open connections (16-100000; default: 4096, or less when the "
                        "descriptor limit is lower)")
    args = p.parse_args(argv)


    port = parse_port(args.port)
    if not args.workers.isdigit() or not 1 <= int(args.workers) <= MAX_WORKERS:
        raise UsageError(f"--workers must be a number from 1 to {MAX_WORKERS}")
    workers = int(args.workers)
    targets = [t.strip() for value in args.allow_check for t in value.split(",") if t.strip()]
    if args.allow_check and not targets:
        raise UsageError("--allow-check needs at least one host name or address")
    if workers > 1 and not hasattr(os, "fork"):
        workers = 1  # no fork on this platform: one process serves

    import uvicorn  # noqa: F401  (a missing dependency is reported before anything starts)


    config = WebConfig(args.db, feedback_db=args.feedback_db, allow_check=targets,
                       request_timeout=_seconds(args.request_timeout, "--request-timeout",
                                                0.5, 300),
                       max_connections=_count(args.max_connections, "--max-connections",
                                              16, 100000),
                       snapshots=args.snapshots)
    _prepare(config)
    sock = _bind(args.host, port)
    actual_port = sock.getsockname()[1]
    config.allowed_hosts = local_hosts(args.host, actual_port)
    info = _announcement(args.host, actual_port, workers, config)

    def ready() -> None:
        if args.json:
            print(_json_line(info))  # one line, so a supervisor can read it as it comes
        else:
            print(f"portatlas: the atlas is at {info['url']}  (Ctrl-C stops it)")
            if config.allowed_hosts is None:
                print("portatlas: note: listening beyond this machine; anyone who can reach "
                      f"{args.host}:{actual_port} can use it", file=sys.stderr)
        sys.stdout.flush()

    if workers == 1:
        _serve_one(config, sock, args.access_log, ready)
    else:
        _serve_many(config, sock, args.access_log, workers, ready)
    return 0


def _seconds(text: str, name: str, lo: float, hi: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:  # also refuses nan and inf
        raise UsageError(f"{name} must be a number of seconds from {lo:g} to {hi:g}")
    return value


def _count(text: str | None, name: str, lo: int, hi: int) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and lo <= int(text) <= hi):
        raise UsageError(f"{name} must be a whole number from {lo} to {hi}")
    return int(text)


def _json_line(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _prepare(config: Any) -> None:
    """Fail before listening: build the registry database if there is none, open feedback."""

    atlas = Atlas(config.db_path, notify=lambda msg: print(msg, file=sys.stderr))
    atlas.close()
    FeedbackStore(config.feedback_db).close()
    if config.allow_check:
        Checker(config.allow_check)  # resolves and validates the allow-list now


def _bind(host: str, port: int):
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise PortatlasError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def _announcement(host: str, port: int, workers: int, config: Any) -> dict[str, Any]:
    shown = host
    if host in ("0.0.0.0", ""):
        shown = "127.0.0.1"
    elif host == "::":
        shown = "::1"
    url_host = f"[{shown}]" if ":" in shown else shown

    atlas = Atlas(config.db_path, autobuild=False)
    source = atlas.source_label
    atlas.close()
    return {"schema": "portatlas.serve/1", "url": f"http://{url_host}:{port}/", "host": host,
            "port": port, "pid": os.getpid(), "workers": workers,
            "database": str(config.db_path), "feedback_db": str(config.feedback_db),
            "source": source, "allow_check": list(config.allow_check)}


def _uvicorn_config(app: Any, access_log: bool, config: Any = None):
    import uvicorn  # optional: uvicorn is the web extra; `serve --help` works without it

    # optional: web.protocol subclasses uvicorn's protocol (web extra)
    from portatlas.web.protocol import GuardedProtocol, Limits

    # request timeout and connection cap (portatlas/web/protocol.py, docs/web.md)
    limits = Limits(getattr(config, "request_timeout", None) or 10.0,
                    getattr(config, "max_connections", None))
    protocol = type("PortatlasHTTP", (GuardedProtocol,), {"limits": limits})
    return uvicorn.Config(app, loop="auto", http=protocol, ws="none", lifespan="off",
                          access_log=access_log, log_level="info" if access_log else "warning",
                          proxy_headers=False,  # never trust X-Forwarded-For: rate limits use the peer
                          server_header=False, timeout_keep_alive=5, backlog=2048)


def _server_class():
    import uvicorn  # optional: uvicorn (web extra), as in _uvicorn_config

    class Server(uvicorn.Server):
        """uvicorn's server, telling when it accepts requests, and ending quietly on a signal
        (uvicorn re-raises the signal after shutdown, which would look like a crash)."""

        on_ready: Callable[[], None] = staticmethod(lambda: None)

        async def startup(self, sockets=None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                self.on_ready()

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def _freeze_heap() -> None:
    """In a server process (not in create_app, whose callers may be tests or other programs):
    the preloaded registry is hundreds of thousands of long-lived objects; moving them out of
    the collector's view keeps full collections (and their pauses) short."""

    gc.collect()
    gc.freeze()


def _serve_one(config: Any, sock: Any, access_log: bool, ready: Callable[[], None]) -> None:
    from portatlas.web.app import create_app  # optional: web.app needs starlette (web extra)

    app = create_app(config)
    _freeze_heap()
    server = _server_class()(_uvicorn_config(app, access_log, config))
    server.on_ready = ready
    server.run(sockets=[sock])


def _serve_many(config: Any, sock: Any, access_log: bool, workers: int,
                ready: Callable[[], None]) -> None:
    """Fork workers that share the listening socket; each loads its own Atlas (an SQLite
    connection must not cross a fork). Announce once every worker accepts requests; if one
    dies, stop them all."""

    read_end, write_end = os.pipe()
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # worker
            os.close(read_end)
            code = 0
            try:
                # optional: web.app needs starlette (web extra)
                from portatlas.web.app import create_app

                signal.signal(signal.SIGINT, signal.SIG_DFL)
                app = create_app(config)
                _freeze_heap()
                server = _server_class()(_uvicorn_config(app, access_log, config))
                server.on_ready = lambda: os.write(write_end, b"r")
                server.run(sockets=[sock])
            except BaseException as exc:  # report, never fall back into the parent's code
                print(f"portatlas: error: worker {os.getpid()}: {exc}", file=sys.stderr)
                code = 4
            finally:
                os._exit(code)
        children.append(pid)
    os.close(write_end)
    sock.close()

    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    announced, ready_count = False, 0
    alive = set(children)
    failed = False
    try:
        deadline = time.monotonic() + 120
        while alive and not stopping:
            if not announced:
                readable, _, _ = select.select([read_end], [], [], 0.2)
                if readable:
                    chunk = os.read(read_end, 64)
                    ready_count += len(chunk)
                    if ready_count >= workers:
                        announced = True
                        ready()
                elif time.monotonic() > deadline:
                    print("portatlas: error: workers did not start in time", file=sys.stderr)
                    failed = True
                    break
            else:
                time.sleep(0.2)
            for pid in list(alive):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if done:
                    alive.discard(pid)
                    if not stopping:
                        failed = True
            if failed:
                print("portatlas: error: a worker stopped unexpectedly; stopping the server",
                      file=sys.stderr)
                break
    finally:
        for pid in alive:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        end = time.monotonic() + 10
        while alive and time.monotonic() < end:
            for pid in list(alive):
                done, _status = os.waitpid(pid, os.WNOHANG)
                if done:
                    alive.discard(pid)
            time.sleep(0.05)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(read_end)
    if failed:
        raise PortatlasError("the web server stopped because a worker failed")
