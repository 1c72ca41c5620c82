"""``promptline serve``: the gateway on uvicorn, inside the app's lifetime, with a graceful
stop on SIGTERM/SIGINT (stop accepting, let runs reach a safe point, flush the log)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from promptline.core.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

    from promptline.config.settings import Settings

__all__ = [
    "ServeInfo",
    "ServerStack",
    "is_loopback",
    "keep_admin_key",
    "run_serving",
    "serve",
    "server_stack",
]

_log = logging.getLogger("promptline.gateway")
T = TypeVar("T")


@dataclass(frozen=True)
class ServerStack:
    """The event loop and the HTTP/1.1 parser the gateway is served with: uvloop and
    httptools where they are installed (the default install has them where they build),
    else Python's asyncio and h11, which do the same, more slowly."""

    loop: Literal["uvloop", "asyncio"]
    http: Literal["httptools", "h11"]

    def __str__(self) -> str:
        return f"event loop {self.loop}, HTTP {self.http}"


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def server_stack() -> ServerStack:
    """uvloop and httptools when they import, each on its own; asyncio and h11 otherwise."""
    return ServerStack(
        loop="uvloop" if _importable("uvloop") else "asyncio",
        http="httptools" if _importable("httptools") else "h11",
    )


def _running_loop_kind() -> Literal["uvloop", "asyncio"]:
    """Which event loop runs this coroutine (the caller chose it, see `run_serving`)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.partition(".")[0] == "uvloop" else "asyncio"


def run_serving(main: Callable[[], Awaitable[T]], *, stack: ServerStack | None = None) -> T:
    """Run ``main`` (`serve`, typically) to completion on the event loop of ``stack``
    (default: `server_stack`): uvloop's when it is installed, asyncio's otherwise."""
    chosen = server_stack() if stack is None else stack
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if chosen.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop

    async def call() -> T:
        return await main()

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(call())


@dataclass
class ServeInfo:
    """Where the gateway listens; on the first start, the admin key made then and the file
    that keeps it (``<home>/admin.key``, None if it could not be written)."""

    host: str
    port: int
    websocket_port: int | None = None
    admin_key: str | None = None
    admin_key_file: Path | None = None
    urls: list[str] = field(default_factory=list)
    stack: ServerStack | None = None
    """The event loop and HTTP parser serving (see `ServerStack`)."""


def keep_admin_key(key: str, path: Path | None = None) -> Path | None:
    """Write ``key`` to ``path`` (default ``<home>/admin.key``), readable by its owner only, so
    that the steps after a first start (`promptline status`, scripts, curl) have a key; None,
    with a warning in the log, when it cannot be written (the key is still shown once)."""
    from promptline.config.home import admin_key_path
    from promptline.storage.files import write_atomically

    target = admin_key_path() if path is None else path
    try:
        write_atomically(target, f"{key}\n".encode("ascii"))
    except OSError as exc:
        _log.warning("the admin key could not be kept in %s: %s", target, exc.strerror or exc)
        return None
    return target


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: connections accepted on it inherit it, and asyncio turns Nagle's
    # algorithm off only for sockets that say TCP. With it on, a response written in two
    # parts (uvicorn writes the head, then the body) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="is another server on that port? choose another with --port or gateway.port",
        ) from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    auth: bool | None = None,
    on_ready: Callable[[ServeInfo], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation), then stop gracefully."""
    import uvicorn

    from promptline.app import build_app
    from promptline.gateway.app import create_gateway
    from promptline.security.auth import KeyStore

    gw = settings.gateway
    host = host or gw.host
    port = gw.port if port is None else port
    use_auth = gw.auth if auth is None else auth
    if not use_auth and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve {host} without authentication",
            hint="keep gateway.auth on, or bind a loopback address such as 127.0.0.1",
        )
    if not is_loopback(host) and not gw.allow_insecure_public_bind:
        raise ConfigError(
            f"refusing to listen on {host}: the gateway speaks plain HTTP, so API keys and "
            "conversations would cross the network unencrypted",
            hint="bind 127.0.0.1 and put a TLS proxy in front (see docs/deploy.md), or, with "
            "TLS in front on another host or on a network you trust, set "
            "gateway.allow_insecure_public_bind: true",
            key="gateway.host",
        )
    _close_home()
    sockets = [_listen(host, port)]
    ws_port = gw.websocket_port
    if ws_port is not None and ws_port != port:
        sockets.append(_listen(host, ws_port))
    try:
        async with build_app(settings) as app, contextlib.AsyncExitStack() as lifespan:
            await app.start_runtime()
            app.start_session_sweep()
            info = ServeInfo(host=host, port=sockets[0].getsockname()[1])
            if len(sockets) > 1:
                info.websocket_port = sockets[1].getsockname()[1]
            keys = KeyStore(app.state, clock=app.clock)
            if use_auth and not await keys.any():
                made, info.admin_key = await keys.create(
                    "admin", role="admin", name="made on the first start"
                )
                await app.audit.record(
                    "key.created",
                    actor="system",
                    tenant_id=made.tenant_id,
                    target=made.key_id,
                    source="first start",
                    details={"user_id": made.user_id, "role": made.role, "name": made.name},
                )
                info.admin_key_file = keep_admin_key(info.admin_key)
            api = create_gateway(app, auth=use_auth)
            if use_auth:
                # The signing keys of access tokens: made (0600) on the first start.
                api.state.gateway.tokens.signing.ensure()
            # The ASGI app's lifespan (what runs while it serves, such as /mcp's session
            # manager) is entered here, around every listener, rather than by uvicorn per
            # listener: it closes before the app does, however serving ends.
            await lifespan.enter_async_context(api.router.lifespan_context(api))
            grace = max(1, round(settings.agent.shutdown_timeout_secs))
            http: Literal["httptools", "h11"] = "httptools" if _importable("httptools") else "h11"
            info.stack = ServerStack(loop=_running_loop_kind(), http=http)
            servers = [
                _server(
                    uvicorn.Config(
                        api,
                        lifespan="off",
                        http=http,
                        # The process's logging (`configure_logging`) formats uvicorn's records
                        # too; uvicorn's own access lines are replaced by `AccessLog`'s.
                        log_config=None,
                        log_level=log_level,
                        access_log=False,
                        ws_max_size=gw.ws_max_frame_bytes,
                        ws_ping_interval=gw.ws_heartbeat_secs,
                        ws_ping_timeout=gw.ws_heartbeat_secs,
                        timeout_graceful_shutdown=grace,
                    )
                )
                for _ in sockets
            ]
            shown = "localhost" if host in ("127.0.0.1", "::1") else host
            info.urls = [f"http://{shown}:{info.port}"]
            if info.websocket_port:
                info.urls.append(f"ws://{shown}:{info.websocket_port}/v1/ws")
            stopping = api.state.gateway.stopping
            with _stop_on_signals(servers, stopping), _frozen_heap():
                tasks = [
                    asyncio.create_task(server.serve(sockets=[sock]))
                    for server, sock in zip(servers, sockets, strict=True)
                ]
                while not all(s.started for s in servers):
                    if any(t.done() for t in tasks):
                        break
                    await asyncio.sleep(0.01)
                if all(s.started for s in servers):
                    from promptline.gateway.logs import announce

                    announce("serving with %s", info.stack)
                    if on_ready is not None:
                        on_ready(info)
                try:
                    await asyncio.gather(*tasks)
                finally:
                    stopping.set()
                    for server in servers:
                        server.should_exit = True
                    await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sock in sockets:
            sock.close()


def _close_home() -> None:
    """The home folder of an older version (0755) closed to others, as new homes are made:
    what it holds (keys, logs, the database) is no one else's business."""
    from promptline.config.home import promptline_home
    from promptline.storage.files import make_private

    make_private(promptline_home())


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves signals to `serve` (which stops every listener, then the
    app, in order) instead of re-raising them once it has stopped."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep what start-up made (modules, settings, the app's services) out of the garbage
    collector's way while serving: its collections then walk only what requests made, which
    shortens requests a little and the slowest ones most (see docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _stop_on_signals(servers: list[uvicorn.Server], stopping: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        stopping.set()
        for server in servers:
            server.should_exit = True

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
