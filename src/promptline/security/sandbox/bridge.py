"""The egress bridge: the first program in a bubblewrap sandbox whose network goes through the
egress proxy (standard library only: ``python -I -S bridge.py SOCKET ARGV...``).

The sandbox's network namespace has nothing but its own loopback. The bridge listens on
127.0.0.1 there, points the proxy variables of the command's environment at itself, forks
the command, and forwards each connection it accepts to the proxy's Unix socket (``SOCKET``,
bound into the sandbox), which decides where it may go. It ends as the command ends, with its
exit status (or its signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import socket
import sys
import threading

PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
PR_SET_PDEATHSIG = 1
CHUNK = 64 * 1024


def pump(source: socket.socket, target: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``target``'s sending side."""
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_RDWR)


def forward(client: socket.socket, path: str) -> None:
    """Join ``client`` to a new connection to the proxy (both closed when both ways end)."""
    proxy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proxy.connect(path)
    except OSError as exc:
        os.write(2, f"promptline egress: the proxy does not answer: {exc.strerror}\n".encode())
        proxy.close()
        client.close()
        return
    back = threading.Thread(target=pump, args=(proxy, client), daemon=True)
    back.start()
    pump(client, proxy)
    back.join()
    client.close()
    proxy.close()


def start(argv: list[str], env: dict[str, str]) -> int:
    """Fork ``argv`` with ``env``; the child's pid."""
    child = os.fork()
    if child == 0:
        try:
            for number in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(number, signal.SIG_DFL)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(2, f"cannot start {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    return child


def child_ended(child: int) -> int:
    """A descriptor that becomes readable when ``child`` ends: its pidfd, or (on kernels
    before 5.3) a pipe that SIGCHLD writes to."""
    try:
        return os.pidfd_open(child)
    except (AttributeError, OSError):
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.signal(signal.SIGCHLD, lambda number, frame: None)
        signal.set_wakeup_fd(write_end)
        # Ended before the handler was set? (Asked without reaping it.)
        if os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            os.write(write_end, b"\0")
        return read_end


def main() -> int:
    path = sys.argv[1]
    argv = sys.argv[2:]
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.stack_size(256 * 1024)  # many connections stay within a memory limit
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = dict(os.environ)
    env.update(dict.fromkeys(PROXY_VARIABLES, url))
    env.update(dict.fromkeys(NO_PROXY_VARIABLES, ""))
    child = start(argv, env)
    ended = child_ended(child)
    watch = selectors.DefaultSelector()
    watch.register(listener, selectors.EVENT_READ)
    watch.register(ended, selectors.EVENT_READ)
    while True:
        ready = {key.fileobj for key, _ in watch.select()}
        if ended in ready:
            break
        with contextlib.suppress(OSError):
            client, _ = listener.accept()
            threading.Thread(target=forward, args=(client, path), daemon=True).start()
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):  # end the same way, so that the launcher reports the signal
        number = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL's cannot be set, nor needs it
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return 128 + number
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main())
