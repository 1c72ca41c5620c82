"""``promptline init``: the first-run wizard. It asks for providers (and how to find their
keys), tests each with one call, asks which channels to enable, and writes a commented
``config.yaml`` that `validate_config` accepted. ``--non-interactive`` takes it all from flags."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

from promptline.cli.init_config import (
    CHANNELS,
    ENV_NAME,
    KINDS,
    PROVIDER_NAME,
    InitAnswers,
    ProviderEntry,
    ProviderKind,
    check_provider,
    render_config,
)
from promptline.cli.runtime import CliOptions, console, fail

__all__ = ["InitFlags", "init"]

DEFAULT_CHOICE = "demo"


@dataclass
class InitFlags:
    """The command line of ``promptline init``."""

    non_interactive: bool = False
    force: bool = False
    skip_test: bool = False
    providers: list[str] = field(default_factory=list)
    api_key_env: list[str] = field(default_factory=list)
    api_key: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    base_url: list[str] = field(default_factory=list)
    compatible_name: str = "compatible"
    default_model: str | None = None
    channels: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8080


def init(options: CliOptions, flags: InitFlags) -> None:
    """Ask (or read the flags), test, validate, write."""
    from promptline.config import config_path

    target = Path(options.config).expanduser().absolute() if options.config else config_path()
    if target.exists() and not flags.force:
        fail(
            f"{target} exists already; init does not overwrite it",
            hint="edit it, check it with `promptline config validate`, or run `promptline init "
            "--force` to replace it (the old file is kept as config.yaml.bak)",
        )
    if flags.non_interactive:
        answers = _from_flags(flags)
        if not flags.skip_test:
            for entry in answers.providers:
                _check(entry)
    else:
        answers = _ask(flags, target)
    _write(target, answers, force=flags.force)


# -- interactive ------------------------------------------------------------------------------


def _ask(flags: InitFlags, target: Path) -> InitAnswers:
    click.echo(f"PromptLine setup: this writes {target}.\n")
    entries: list[ProviderEntry] = []
    for choice in _ask_choices():
        entry = _ask_provider(KINDS[choice], taken={e.name for e in entries})
        if not flags.skip_test:
            _check(entry)
        entries = [e for e in entries if e.name != entry.name] + [entry]
    ids = [model_id for entry in entries for model_id in entry.model_ids()]
    default = ids[0]
    if len(ids) > 1:
        default = click.prompt(
            "Default model (used when an agent names none)",
            type=click.Choice(ids),
            default=ids[0],
            show_choices=True,
        )
    click.echo("\nChannels:")
    channels = {
        name: click.confirm(f"  enable {name} ({description})?", default=True)
        for name, description in CHANNELS.items()
    }
    port = click.prompt("Gateway port", type=click.IntRange(1, 65535), default=flags.port)
    return InitAnswers(entries, default, channels, host=flags.host, port=port)


def _ask_choices() -> list[str]:
    click.echo("Model providers:")
    names = list(KINDS)
    for number, name in enumerate(names, 1):
        click.echo(f"  {number}. {name:<11} {KINDS[name].title}")
    while True:
        raw = click.prompt("Which? (numbers or names, comma-separated)", default=DEFAULT_CHOICE)
        chosen: list[str] = []
        wrong: list[str] = []
        for part in (p.strip() for p in raw.split(",")):
            if not part:
                continue
            name = names[int(part) - 1] if part.isdigit() and 0 < int(part) <= len(names) else part
            if name not in KINDS:
                wrong.append(part)
            elif name not in chosen:
                chosen.append(name)
        if chosen and not wrong:
            return chosen
        click.echo(f"  not a provider: {', '.join(wrong) or '(none)'}; choose from the list")


def _ask_provider(kind: ProviderKind, *, taken: set[str]) -> ProviderEntry:
    click.echo(f"\n{kind.title}")
    if kind.choice == "demo":
        return ProviderEntry(kind, kind.name, list(kind.models))
    name = kind.name
    if kind.needs_base_url:
        name = click.prompt("  name in the config", default=kind.name, value_proc=_provider_name)
    if name in taken:
        click.echo(f"  {name} is configured already: this one replaces it")
    base_url = kind.base_url
    if kind.needs_base_url or kind.base_url:
        base_url = click.prompt(
            "  base URL"
            + (" (the API root, usually ending in /v1)" if kind.needs_base_url else ""),
            default=kind.base_url,
            value_proc=_http_url,
        )
    entry = ProviderEntry(kind, name, [], base_url=base_url)
    needs_key = kind.key_env is not None and (
        not kind.key_optional or click.confirm("  does it need an API key?", default=False)
    )
    if needs_key:
        _ask_key(entry, default_env=_default_env(kind, name))
    default_models = ", ".join(kind.models) or None
    raw = click.prompt("  models (comma-separated)", default=default_models)
    entry.models = _split(raw)
    return entry


def _ask_key(entry: ProviderEntry, *, default_env: str) -> None:
    how = click.prompt(
        "  API key: read it from an environment variable (recommended), or paste it",
        type=click.Choice(["env", "paste"]),
        default="env",
    )
    if how == "env":
        entry.api_key_env = click.prompt(
            "  environment variable", default=default_env, value_proc=_env_name
        )
        if not os.environ.get(entry.api_key_env):
            click.echo(
                f"  note: {entry.api_key_env} is not set in this shell; export it before "
                "starting PromptLine"
            )
        return
    entry.api_key = click.prompt("  API key (not shown)", hide_input=True)
    click.echo("  the key will be written into the config file (made readable by you only)")


def _default_env(kind: ProviderKind, name: str) -> str:
    if kind.needs_base_url:
        return f"{name.upper().replace('-', '_')}_API_KEY"
    return kind.key_env or f"{name.upper()}_API_KEY"


def _provider_name(value: str) -> str:
    value = value.strip()
    if not PROVIDER_NAME.match(value):
        raise click.BadParameter("use lower-case letters, digits, - and _, starting with a letter")
    return value


def _http_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise click.BadParameter("give an http:// or https:// URL")
    return value


def _env_name(value: str) -> str:
    value = value.strip().removeprefix("$").strip("{}")
    if not ENV_NAME.match(value):
        raise click.BadParameter("an environment variable name: letters, digits and _")
    return value


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


# -- non-interactive --------------------------------------------------------------------------


def _from_flags(flags: InitFlags) -> InitAnswers:
    choices = list(dict.fromkeys(flags.providers or [DEFAULT_CHOICE]))
    for choice in choices:
        if choice not in KINDS:
            _usage(f"--provider {choice}: choose from {', '.join(KINDS)}")
    per = {
        option: _per_provider(option, values, choices)
        for option, values in (
            ("--api-key-env", flags.api_key_env),
            ("--api-key", flags.api_key),
            ("--model", flags.models),
            ("--base-url", flags.base_url),
        )
    }
    entries = []
    for choice in choices:
        kind = KINDS[choice]
        name = _provider_name(flags.compatible_name) if kind.needs_base_url else kind.name
        models = [m for value in per["--model"].get(choice, []) for m in _split(value)]
        entry = ProviderEntry(kind, name, models or list(kind.models))
        if kind.choice == "demo":
            entries.append(entry)
            continue
        if not entry.models:
            _usage(f"--model {choice}=NAME: say which models {choice} serves")
        urls = per["--base-url"].get(choice, [])
        entry.base_url = _http_url(urls[-1]) if urls else kind.base_url
        if kind.needs_base_url and not entry.base_url:
            _usage(f"--base-url {choice}=URL: an OpenAI-compatible server needs its URL")
        keys, envs = per["--api-key"].get(choice, []), per["--api-key-env"].get(choice, [])
        if keys and envs:
            _usage(f"{choice}: give --api-key or --api-key-env, not both")
        if keys:
            entry.api_key = keys[-1]
        elif envs:
            entry.api_key_env = _env_name(envs[-1])
        elif kind.key_env and not kind.key_optional:
            entry.api_key_env = kind.key_env
        entries.append(entry)
    ids = [model_id for entry in entries for model_id in entry.model_ids()]
    default = flags.default_model or ids[0]
    if default not in ids:
        _usage(f"--default-model {default}: not one of the models configured ({', '.join(ids)})")
    channels = {name: (not flags.channels or name in flags.channels) for name in CHANNELS}
    return InitAnswers(entries, default, channels, host=flags.host, port=flags.port)


def _per_provider(option: str, values: list[str], choices: list[str]) -> dict[str, list[str]]:
    """``[PROVIDER=]VALUE`` values by provider; a value without a provider belongs to the one
    provider given (and is a usage error when there are several)."""
    result: dict[str, list[str]] = {}
    for value in values:
        prefix, eq, rest = value.partition("=")
        if eq and prefix in choices:
            result.setdefault(prefix, []).append(rest)
        elif len(choices) == 1:
            result.setdefault(choices[0], []).append(value)
        else:
            _usage(f"{option} {value}: with several providers write {option} PROVIDER=VALUE")
    return result


def _usage(message: str) -> None:
    raise click.UsageError(message)


# -- checking and writing ---------------------------------------------------------------------


def _check(entry: ProviderEntry) -> None:
    out = console()
    model_id = entry.model_ids()[0] if entry.models else entry.name
    out.print(f"  testing {model_id} ...", end=" ", markup=False, highlight=False)
    result = check_provider(entry)
    if result.ok:
        out.print(f"[green]ok[/], {result.message}", markup=True, highlight=False)
    else:
        out.print(f"[red]failed[/]: {result.message}", markup=True, highlight=False)
        out.print("  (the setup goes on; fix it later in the config file)", style="dim")


def _write(target: Path, answers: InitAnswers, *, force: bool) -> None:
    from promptline.config import validate_config
    from promptline.storage.files import private_dir

    text = render_config(answers)
    private_dir(target.parent)
    draft = target.with_name(f".{target.name}.init")
    with contextlib.suppress(FileNotFoundError):
        draft.unlink()
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    # The file alone is checked: profile and PROMPTLINE__* variables of this shell are not its.
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("PROMPTLINE__", "PROMPTLINE_PROF"))
    }
    environ.pop("PROMPTLINE_CONFIG", None)
    try:
        problems = validate_config(draft, environ=environ)
    except BaseException:
        draft.unlink()
        raise
    if problems:
        draft.unlink()
        fail(
            "the configuration made from these answers does not validate:\n  "
            + "\n  ".join(problems),
            hint="this is a bug of `promptline init`; nothing was written",
        )
    if target.exists():
        if not force:
            draft.unlink()
            fail(f"{target} appeared while init ran; nothing was written")
        os.replace(target, target.with_name(target.name + ".bak"))
    os.replace(draft, target)
    _print_next(target, answers)


def _print_next(target: Path, answers: InitAnswers) -> None:
    out = console()
    out.print(f"[green]wrote[/] {target} (mode 0600)", markup=True, highlight=False)
    unset = [var for var in answers.env_vars if not os.environ.get(var)]
    steps = [(f"export {var}=...", "the config reads it") for var in unset]
    steps += [
        ("promptline config validate", "check it"),
        ("promptline chat", "talk to an agent"),
        ("promptline start", "the gateway, in the background"),
        ("promptline service install", "... or as a systemd user service"),
    ]
    width = max(len(command) for command, _ in steps) + 2
    out.print("next:")
    for command, why in steps:
        out.print(f"  {command:<{width}}# {why}", markup=False, highlight=False)
