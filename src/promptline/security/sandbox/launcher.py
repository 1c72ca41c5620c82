"""The small program between PromptLine and a sandboxed command (standard library only: it is
run as a file by the interpreter, ``python -I -S launcher.py CONFIG ARGV...``).

It makes itself a child subreaper, so that a process whose parent ended (one that called
``setsid`` to leave the group, say) is adopted by it rather than by init and stays in its
tree; forks the command with the kernel limits of CONFIG applied; counts the processes of its
tree while the command runs and kills the whole tree past ``max_processes``; and, once the
command ends, kills what it left behind. It writes one JSON line to the file descriptor
``status_fd``: how the command ended and which limit, if any, it hit.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
POLL_SECS = 0.02


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as file:
                found.extend(int(word) for word in file.read().split())
        except OSError:
            continue
    return found


def tree(root: int) -> set[int]:
    """Every descendant of ``root``."""
    seen: set[int] = set()
    todo = children(root)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children(pid))
    return seen


def kill_tree(root: int) -> None:
    """Stop every descendant (so none forks meanwhile), then kill them all."""
    stopped: set[int] = set()
    for _ in range(50):
        new = tree(root) - stopped
        if not new:
            break
        for pid in new:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped | tree(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def reap_all(root: int) -> None:
    """Kill and reap what is left below this process (bounded by a few seconds)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        kill_tree(root)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.005)


def clamped(name: str, value: int, hard: int) -> tuple[int, int]:
    """The (soft, hard) pair that sets limit ``name`` to ``value`` without going above the
    current ``hard`` limit (an unprivileged process may lower it, never raise it). CPU time
    gets a hard limit a second above the soft one: SIGXCPU first, then SIGKILL."""
    wanted = value + 1 if name == "RLIMIT_CPU" else value
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    return min(value, wanted), wanted


def main() -> int:
    config = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    status_fd: int = config["status_fd"]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != config["parent"]:  # PromptLine ended before the line above
        return 1
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    me = os.getpid()
    child = os.fork()
    if child == 0:
        try:
            os.close(status_fd)
            # Python ignores these; the command gets the default actions, as from a shell.
            for number in (signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(number, signal.SIG_DFL)
            for name, value in config["rlimits"].items():
                which = getattr(resource, name)
                resource.setrlimit(which, clamped(name, value, resource.getrlimit(which)[1]))
            os.execvp(argv[0], argv)
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            os.write(2, f"cannot start {argv[0]}: {why}\n".encode())
            os._exit(127)
    status: dict[str, object] = {}
    max_processes: int | None = config.get("max_processes")
    while "exit" not in status:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == child:
            if os.WIFSIGNALED(code):
                status["exit"] = -os.WTERMSIG(code)
            else:
                status["exit"] = os.WEXITSTATUS(code)
            # A command that gave up when RLIMIT_NPROC refused a fork still left them.
            count = len(tree(me))
            if max_processes is not None and count > max_processes:
                status.update(limit="processes", count=count)
            break
        if pid:
            continue  # an adopted orphan ended
        if max_processes is not None:
            count = len(tree(me))
            if count > max_processes:
                kill_tree(me)
                status.update(limit="processes", count=count)
                status["exit"] = -signal.SIGKILL
                break
        time.sleep(POLL_SECS)
    reap_all(me)
    os.write(status_fd, (json.dumps(status) + "\n").encode())
    os.close(status_fd)
    exit_code = status.get("exit", 1)
    assert isinstance(exit_code, int)
    return 128 - exit_code if exit_code < 0 else exit_code


if __name__ == "__main__":
    sys.exit(main())
