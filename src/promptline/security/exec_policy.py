"""The exec policy of ``shell_execute``: a command line parsed into the simple commands it runs.

`parse_command` reads a command line with the shell's grammar (``bashlex``) and returns every
simple command it would run, wherever it sits: in a pipeline, a list (``&&``, ``||``, ``;``,
``&``), a subshell or group, a command or process substitution, or the string of ``sh -c``
(parsed again, up to `MAX_DEPTH` shells deep). Wrappers (``env``, ``nohup``, ``timeout``,
``nice``, ``sudo``, ``exec``, ``command``, ``time``, ``xargs``) are taken off, so that the
program they run is what a rule judges; a part keeps every form it can be matched in
(`ShellPart.forms`).

Some parts need approval whatever the rules say (`floor`): a pipe, here-document or
here-string into an interpreter, a redirection out of the workspace, a program whose name is
only known at run time, a command hidden where the parser cannot see it, a program run as
another user. A command line the parser cannot read has no parts and an `ShellCommand.error`.

`approval_binding` is what a remembered approval of a command line is bound to: its words
and operators, the folder it runs in and the SHA-256 of every script it runs.

``bashlex`` is imported on first use: only ``shell_execute`` calls need it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "INTERPRETERS",
    "MAX_DEPTH",
    "SHELL_TOOL",
    "ShellCommand",
    "ShellPart",
    "approval_binding",
    "floor",
    "parse_command",
    "script_hashes",
    "shown",
]

SHELL_TOOL = "shell_execute"
"""The tool whose ``command`` argument this policy parses."""

MAX_DEPTH = 3
"""How many shells deep (``sh -c "sh -c '...'"``) a command string is parsed; deeper asks."""

INTERPRETERS = frozenset(
    {
        "python",
        "pypy",
        "ipython",
        "sh",
        "bash",
        "zsh",
        "dash",
        "ksh",
        "mksh",
        "fish",
        "csh",
        "tcsh",
        "node",
        "nodejs",
        "deno",
        "bun",
        "perl",
        "ruby",
        "irb",
        "php",
        "lua",
        "luajit",
        "osascript",
        "pwsh",
        "powershell",
        "tclsh",
        "wish",
        "Rscript",
        "julia",
        "groovy",
        "jshell",
    }
)
"""Programs that run the code they read (a version suffix, as in ``python3.11``, is ignored)."""

_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "mksh"})
_AS_ANOTHER_USER = frozenset({"sudo", "doas", "su", "runuser", "pkexec"})
_MOVES = frozenset({"cd", "pushd", "popd"})
_HARMLESS_TARGETS = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
_STDIN_FEEDS = frozenset({"<<", "<<-", "<<<"})
_FD_TYPES = frozenset({">&", "<&"})
_FILE_TYPES = frozenset({">", ">>", "<", ">|", "<>", "&>", "&>>", ">&", "<&"})
_MAX_SHOWN = 120

# Options that take a value, per wrapper (the value is skipped with its option).
_VALUED = {
    "env": frozenset({"-u", "--unset", "-C", "--chdir"}),
    "timeout": frozenset({"-s", "--signal", "-k", "--kill-after"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "sudo": frozenset(
        {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-T", "-U", "--user", "--group"}
    ),
    "doas": frozenset({"-u", "-C"}),
    "exec": frozenset({"-a"}),
    "time": frozenset({"-f", "-o", "--format", "--output"}),
    "xargs": frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file"}),
    "nohup": frozenset(),
    "command": frozenset(),
    "builtin": frozenset(),
}


@dataclass(frozen=True, slots=True)
class ShellPart:
    """One simple command of a command line, as the shell would run it.

    ``text`` is the command as written; ``argv`` its assignments and words after quote
    removal; ``forms`` the texts a rule's patterns are matched against: the whole command,
    then the command with each wrapper taken off (``sudo nohup rm x``, ``nohup rm x``,
    ``rm x``), variables set in front of it kept in front; ``bare`` the same forms without
    those variables (a rule that denies or asks is matched against both). ``reason`` is
    set when the part needs approval whatever the rules say, as far as the parser alone can
    tell (`floor` adds what depends on the workspace). ``targets`` are the files it
    redirects to or from, ``scripts`` the script files it runs.
    """

    text: str
    argv: tuple[str, ...]
    forms: tuple[str, ...]
    reason: str | None = None
    targets: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()
    bare: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShellCommand:
    """A parsed command line: its parts in the order they appear, or why it has none.

    ``shape`` is the command's words (as written), operators and redirections, without the
    spacing; ``moves`` tells whether it changes folder (``cd``), after which no relative
    redirection target can be placed.
    """

    text: str
    parts: tuple[ShellPart, ...] = ()
    error: str | None = None
    shape: tuple[Any, ...] = ()
    moves: bool = False

    def label(self, index: int) -> str:
        """How a reason names part ``index`` (0-based): `` `rm x` (part 2 of `ls; rm x`)``."""
        part = self.parts[index]
        if len(self.parts) == 1 and part.text.strip() == self.text.strip():
            return shown(part.text)
        return f"{shown(part.text)} (part {index + 1} of {shown(self.text)})"


def parse_command(command: str) -> ShellCommand:
    """The parts of ``command``; a command line that cannot be parsed comes back with its
    ``error`` set and no parts (it needs approval). Results are cached."""
    return _parse(command)


@functools.lru_cache(maxsize=512)
def _parse(command: str) -> ShellCommand:
    walker = _Walker()
    error = walker.read(command, depth=0, piped=False, outer=())
    if error is None and not walker.parts:
        error = "it holds no command"
    if error is not None:
        return ShellCommand(command, error=error, shape=("unparsed", command))
    return ShellCommand(
        command,
        parts=tuple(walker.parts),
        shape=tuple(walker.shape),
        moves=walker.moves,
    )


def floor(
    parsed: ShellCommand, *, workspace: Path | None = None, cwd: str = "."
) -> tuple[int | None, str] | None:
    """Why ``parsed`` needs approval whatever the rules say: ``(part index, why)``, the index
    being ``None`` when the whole line cannot be parsed; ``None`` when nothing does.

    Redirection targets are placed relative to ``cwd`` in ``workspace`` (symlinks resolved);
    without a workspace, a target counts as outside when it is absolute, starts with ``~``
    or climbs out with ``..``.
    """
    if parsed.error is not None:
        return None, f"it cannot be parsed as a shell command ({parsed.error})"
    for index, part in enumerate(parsed.parts):
        if part.reason is not None:
            return index, part.reason
        for target in part.targets:
            if target in _HARMLESS_TARGETS:
                continue
            if parsed.moves and not os.path.isabs(target):
                return index, f"it redirects to `{target}` after changing folder"
            if _outside(target, workspace, cwd):
                return index, f"it redirects to `{target}`, outside the workspace"
    return None


def script_hashes(
    parsed: ShellCommand, *, workspace: Path | None = None, cwd: str = "."
) -> dict[str, str]:
    """The SHA-256 of every script file ``parsed`` runs (``python3 x.py``, ``./run.sh``,
    ``source env.sh``), by path as written; ``missing`` for a path that is no readable file."""
    try:
        base = _base(workspace, cwd)
    except ValueError:  # a NUL in the folder: no file can be found there
        base = None
    found: dict[str, str] = {}
    for part in parsed.parts:
        for script in part.scripts:
            path = Path(script) if os.path.isabs(script) or base is None else base / script
            try:
                found[script] = hashlib.sha256(path.read_bytes()).hexdigest()
            except (OSError, ValueError):
                found[script] = "missing"
    return found


def approval_binding(command: str, *, workspace: Path | None = None, cwd: str = ".") -> str:
    """What an approval of ``command`` is bound to, as a SHA-256 hex digest: its words (as
    written), operators and redirections, the folder it runs in, and the content of every
    script it runs. Spacing does not change it; any other change does, and so does a changed
    script."""
    parsed = parse_command(command)
    folder = os.path.normpath(cwd.strip() or ".")
    body = {
        "shape": parsed.shape,
        "cwd": folder,
        "scripts": script_hashes(parsed, workspace=workspace, cwd=cwd),
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


# -- walking the tree ------------------------------------------------------------------------


@dataclass(slots=True)
class _Walker:
    parts: list[ShellPart] = field(default_factory=list)
    shape: list[Any] = field(default_factory=list)
    moves: bool = False

    def read(self, source: str, *, depth: int, piped: bool, outer: tuple[str, ...]) -> str | None:
        """Parse ``source`` and add its parts; the parser's complaint when it cannot."""
        import bashlex  # only shell commands need the parser

        try:
            for tree in bashlex.parse(source):
                self._node(tree, _Context(source, depth, piped, outer))
        except Exception as exc:  # bashlex raises several kinds; each means "ask"
            return f"{type(exc).__name__}: {exc}"
        return None

    def _node(self, node: Any, ctx: _Context) -> None:
        kind = node.kind
        if kind == "command":
            self._command(node, ctx)
        elif kind == "pipeline":
            piped = ctx.piped
            for child in node.parts:
                if child.kind == "pipe":
                    piped = True
                    self._emit(ctx, ("op", child.pipe))
                else:
                    self._node(child, ctx.with_pipe(piped))
        elif kind == "operator":
            self._emit(ctx, ("op", node.op))
        elif kind == "reservedword":
            self._emit(ctx, ("word", node.word))
        elif kind in ("word", "assignment"):
            self._emit(ctx, ("word", _raw(node, ctx.source)))
            hidden = self._substitutions(node, ctx)
            if hidden is not None:
                self.parts.append(ShellPart(_raw(node, ctx.source), (node.word,), (), hidden))
        else:
            for child in _children(node):
                self._node(child, ctx)

    def _substitutions(self, word: Any, ctx: _Context) -> str | None:
        """Walk the commands inside ``word``; why it hides one the parser cannot see."""
        hidden = None
        for sub in getattr(word, "parts", None) or ():
            if sub.kind in ("commandsubstitution", "processsubstitution"):
                self._emit(ctx, ("sub", sub.kind))
                self._node(sub.command, ctx)
                self._emit(ctx, ("end", sub.kind))
            elif sub.kind == "parameter" and _runs_code(sub.value):
                hidden = f"it hides a command in `${{{sub.value}}}`"
        return hidden

    def _command(self, node: Any, ctx: _Context) -> None:
        text = _raw(node, ctx.source)
        assigns: list[str] = []
        words: list[Any] = []
        targets: list[str] = []
        reason: str | None = None
        stdin_fed = ctx.piped
        stdin_file: str | None = None
        slot = len(self.parts)  # the command comes before the commands inside its words
        self._emit(ctx, ("command",))
        for child in node.parts:
            if child.kind == "assignment":
                assigns.append(child.word)
            elif child.kind == "word":
                words.append(child)
            if child.kind in ("assignment", "word"):
                self._emit(ctx, ("word", _raw(child, ctx.source)))
                reason = self._substitutions(child, ctx) or reason
            elif child.kind == "redirect":
                why, target, feeds = self._redirect(child, ctx)
                reason = reason or why
                stdin_fed = stdin_fed or feeds
                if target is not None:
                    targets.append(target)
                    if child.type == "<":
                        stdin_file = target
        self._emit(ctx, ("end", "command"))
        if not words:
            argv = tuple(assigns)
            part = ShellPart(text, argv, (" ".join(argv),), reason, tuple(targets))
            self.parts.insert(slot, part)
            return
        self._program(text, assigns, words, ctx, reason, targets, stdin_fed, stdin_file, slot)

    def _redirect(self, node: Any, ctx: _Context) -> tuple[str | None, str | None, bool]:
        """(why it needs approval, the file it names, whether it feeds stdin)."""
        kind = node.type
        output = node.output
        if kind in ("<<", "<<-"):
            body = getattr(getattr(node, "heredoc", None), "value", "") or ""
            self._emit(ctx, ("heredoc", kind, _raw(output, ctx.source), body))
            if _runs_code(body):
                return "its here-document runs a command", None, True
            return None, None, True
        if isinstance(output, int):
            self._emit(ctx, ("redirect", kind, output))
            return None, None, False
        self._emit(ctx, ("redirect", kind, _raw(output, ctx.source)))
        hidden = self._substitutions(output, ctx)
        if kind == "<<<":
            return hidden, None, True
        if kind in _FD_TYPES and (output.word.isdigit() or output.word == "-"):
            return None, None, False
        if kind not in _FILE_TYPES:
            return hidden or f"it uses the redirection `{kind}`", None, False
        if getattr(output, "parts", None) or output.word.startswith("~"):
            return (
                hidden or f"its redirection target `{output.word}` is only known at run time",
                None,
                False,
            )
        if _is_pattern(output.word):
            return f"its redirection target `{output.word}` is a pattern", None, False
        return hidden, output.word, False

    def _program(
        self,
        text: str,
        assigns: list[str],
        words: list[Any],
        ctx: _Context,
        reason: str | None,
        targets: list[str],
        stdin_fed: bool,
        stdin_file: str | None,
        slot: int,
    ) -> None:
        argv = [w.word for w in words]
        starts = [0]
        added = 0
        env = list(assigns)
        chain = list(ctx.outer)
        i = 0
        while True:
            head = words[i]
            if head.parts or _is_pattern(head.word):
                reason = reason or f"its program name `{head.word}` is only known at run time"
                break
            name = os.path.basename(head.word)
            chain.append(name)
            if name in _AS_ANOTHER_USER:
                reason = reason or f"it runs as another user (`{name}`)"
            if name in _MOVES or (name == "env" and _has_option(argv[i + 1 :], "-C", "--chdir")):
                self.moves = True
            if name in _SHELLS or name == "eval":
                prefixes = [env, [*assigns, *argv[:i]]]
                nested = self._shell_string(name, words, i, ctx, prefixes, chain, stdin_fed)
                if isinstance(nested, str):
                    reason = reason or nested
                    break
                if nested is None:
                    if reason is not None:
                        part = ShellPart(text, tuple([*assigns, *argv]), (text,), reason)
                        self.parts.insert(slot, part)
                    return
            if name not in _VALUED:
                break
            if name == "command" and _has_option(argv[i + 1 :], "-v", "-V"):
                break
            if name == "env" and _has_option(argv[i + 1 :], "-S", "--split-string"):
                reason = reason or "it splits a string into a command (`env -S`)"
                break
            if name == "time" and _has_option(argv[i + 1 :], "-o", "--output"):
                out = _option_value(argv[i + 1 :], "-o", "--output")
                if out is not None:
                    targets.append(out)
            inner, moved = _skip_options(name, argv, i + 1)
            env.extend(moved)
            if inner >= len(argv):
                break  # the wrapper alone (`env`, `nohup` with nothing after it)
            i = inner
            starts.append(i)
            if name == "xargs":
                # The command xargs runs gets the arguments it reads: `...` stands for them.
                added = added or len(starts) - 1
        forms = [" ".join([*assigns, *argv])]
        forms += [" ".join([*env, *argv[s:]]) for s in starts[1:]]
        bare = [" ".join(argv[s:]) for s in starts]
        if added:
            forms[added:] = [f + " ..." for f in forms[added:]]
            bare[added:] = [f + " ..." for f in bare[added:]]
        program = os.path.basename(argv[i])
        if reason is None and program == "find":
            reason = _find_action(argv[i + 1 :])
        if reason is None and stdin_fed and any(_interpreter(n) for n in chain):
            feeder = next(n for n in reversed(chain) if _interpreter(n))
            reason = f"it feeds a pipe or here-document into the interpreter `{feeder}`"
        scripts = _scripts(argv[i:], program, stdin_file)
        self.parts.insert(
            slot,
            ShellPart(
                text,
                tuple([*assigns, *argv]),
                tuple(dict.fromkeys(forms)),
                reason,
                tuple(targets),
                scripts,
                tuple(dict.fromkeys(bare)),
            ),
        )

    def _shell_string(
        self,
        name: str,
        words: list[Any],
        i: int,
        ctx: _Context,
        prefixes: list[list[str]],
        chain: list[str],
        stdin_fed: bool,
    ) -> str | bool | None:
        """Parse the string of ``sh -c STRING`` or ``eval WORDS`` as commands of their own,
        each matched with the variables and wrappers of ``prefixes`` in front of it.

        False: no string here (``sh script.sh``); None: its commands were added; otherwise
        why it needs approval."""
        rest = words[i + 1 :]
        if name == "eval":
            strings = rest
        else:
            strings = []
            seen_c = False
            for w in rest:
                if not seen_c and w.word.startswith(("-", "+")) and w.word not in ("-", "--"):
                    seen_c = "c" in w.word[1:] and not w.word.startswith("--")
                    continue
                if seen_c:
                    strings = [w]
                break
            if not seen_c:
                return False
            if not strings:
                return "its `-c` has no command string"
        if any(w.parts for w in strings):
            return f"the command string of `{name}` is only known at run time"
        if ctx.depth + 1 > MAX_DEPTH:
            return f"it nests shells more than {MAX_DEPTH} deep"
        texts = [_literal(w, ctx.source) for w in strings]
        if any(t is None for t in texts):
            return f"the command string of `{name}` is quoted in a way that reads two ways"
        source = " ".join(t for t in texts if t is not None)
        inner = _Walker(shape=[])
        error = inner.read(source, depth=ctx.depth + 1, piped=stdin_fed, outer=tuple(chain))
        if error is not None:
            return f"the command string of `{name}` cannot be parsed ({error})"
        for part in inner.parts:
            # The inner command keeps what stands before the shell: its variables always,
            # and its wrappers (`sudo`) in a form of its own.
            forms = tuple(" ".join([*prefix, f]) for prefix in prefixes for f in part.forms)
            self.parts.append(
                ShellPart(
                    part.text,
                    part.argv,
                    tuple(dict.fromkeys(forms)),
                    part.reason,
                    part.targets,
                    part.scripts,
                    part.bare,
                )
            )
        self.moves = self.moves or inner.moves
        return None

    def _emit(self, ctx: _Context, item: tuple[Any, ...]) -> None:
        if ctx.depth == 0:
            self.shape.append(item)


@dataclass(frozen=True, slots=True)
class _Context:
    source: str
    depth: int
    piped: bool
    outer: tuple[str, ...]

    def with_pipe(self, piped: bool) -> _Context:
        return _Context(self.source, self.depth, piped, self.outer)


# -- helpers ---------------------------------------------------------------------------------


def _children(node: Any) -> Iterable[Any]:
    for name in ("parts", "list"):
        children = getattr(node, name, None)
        if children:
            yield from children
    command = getattr(node, "command", None)
    if command is not None:
        yield command


def _raw(node: Any, source: str) -> str:
    start, end = node.pos
    return source[start:end]


def _literal(word: Any, source: str) -> str | None:
    """The text of a word without expansions, once its quotes are removed; None unless two
    readers (the parser's and `shlex`) agree on it, since this text is parsed again."""
    try:
        tokens = shlex.split(_raw(word, source))
    except ValueError:
        return None
    if len(tokens) != 1 or tokens[0] != word.word:
        return None
    return str(word.word)


def _is_pattern(word: str) -> bool:
    """Whether the shell may expand ``word`` into other words: file names (``[`` alone is
    the test command) or braces (``{rm,-rf,x}``)."""
    return (
        "*" in word
        or "?" in word
        or ("[" in word and "]" in word[word.index("[") + 1 :])
        or ("{" in word and "}" in word[word.index("{") + 1 :])
    )


def _runs_code(text: str) -> bool:
    """Whether expanding ``text`` (a here-document, a ``${...}``) can run a command."""
    return "$(" in text or "`" in text or "<(" in text or ">(" in text


_FIND_RUNS = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
_FIND_WRITES = frozenset({"-delete", "-fprint", "-fprint0", "-fprintf", "-fls"})


def _find_action(args: list[str]) -> str | None:
    """Why a ``find`` with these arguments is more than a search, or None: it runs programs
    (``-exec``, ``-execdir``, ``-ok``, ``-okdir``), deletes or writes files."""
    for arg in args:
        if arg in _FIND_RUNS:
            return f"it runs a program for each file it finds (`find {arg}`)"
        if arg in _FIND_WRITES:
            return f"it deletes or writes files (`find {arg}`)"
    return None


def _interpreter(name: str) -> bool:
    return name in INTERPRETERS or name.rstrip("0123456789.") in INTERPRETERS


def _has_option(args: list[str], *options: str) -> bool:
    for arg in args:
        if arg == "--" or not arg.startswith("-"):
            return False
        if any(arg == o or arg.startswith(o + "=") for o in options):
            return True
        short = [o for o in options if len(o) == 2]
        if not arg.startswith("--") and any(arg.startswith(o) for o in short):
            return True
    return False


def _option_value(args: list[str], short: str, long: str) -> str | None:
    for k, arg in enumerate(args):
        if arg in (short, long):
            return args[k + 1] if k + 1 < len(args) else None
        if arg.startswith(long + "="):
            return arg[len(long) + 1 :]
        if arg.startswith(short) and len(arg) > 2:
            return arg[2:]
    return None


def _skip_options(name: str, argv: list[str], start: int) -> tuple[int, list[str]]:
    """Where the command a wrapper runs starts, and the assignments it sets on the way."""
    valued = _VALUED[name]
    assigns: list[str] = []
    k = start
    while k < len(argv):
        arg = argv[k]
        if arg == "--":
            return k + 1, assigns
        if name in ("env", "sudo") and "=" in arg and not arg.startswith("-"):
            assigns.append(arg)
            k += 1
            continue
        if not arg.startswith("-") or arg == "-":
            if arg == "-" and name == "env":
                k += 1
                continue
            break
        k += 2 if arg in valued else 1
    if name == "timeout" and k < len(argv):
        k += 1  # the duration
    return k, assigns


def _scripts(argv: list[str], program: str, stdin_file: str | None) -> tuple[str, ...]:
    """The script files a command runs: the program itself when it is a path, the first
    operand of an interpreter, the file of ``source`` / ``.``, a file fed to an interpreter."""
    found: list[str] = []
    if "/" in argv[0]:
        found.append(argv[0])
    if program in ("source", ".") and len(argv) > 1:
        found.append(argv[1])
    elif _interpreter(program):
        for arg in argv[1:]:
            if arg in ("-c", "-e", "-m", "-E", "--eval") or (
                arg.startswith("-") and not arg.startswith("--") and arg[-1:] in ("c", "e")
            ):
                break
            if arg.startswith("-"):
                continue
            found.append(arg)
            break
        if stdin_file is not None:
            found.append(stdin_file)
    return tuple(dict.fromkeys(found))


def _base(workspace: Path | None, cwd: str) -> Path | None:
    if workspace is None:
        return None
    root = Path(os.path.realpath(workspace))
    return Path(os.path.realpath(root / (cwd.strip() or ".")))


def _outside(target: str, workspace: Path | None, cwd: str) -> bool:
    try:
        return _placed_outside(target, workspace, cwd)
    except ValueError:  # a NUL byte: no path the policy can place
        return True


def _placed_outside(target: str, workspace: Path | None, cwd: str) -> bool:
    if workspace is None:
        if os.path.isabs(target):
            return True
        lexical = os.path.normpath(os.path.join(cwd.strip() or ".", target))
        return lexical == ".." or lexical.startswith(".." + os.sep)
    root = Path(os.path.realpath(workspace))
    base = _base(workspace, cwd) or root
    real = Path(os.path.realpath(target if os.path.isabs(target) else base / target))
    return real != root and root not in real.parents


def shown(text: str) -> str:
    """A command as a reason shows it: in backticks, on one line (a new line as ``\\n``),
    cut to 120 characters."""
    text = " ".join(text.strip().replace("\n", "\\n").split())
    return f"`{text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + '...'}`"
