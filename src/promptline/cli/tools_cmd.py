"""`promptline tools`: the registered tools, tool packages and the catalogue.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

import click

from promptline.cli.runtime import CliOptions

pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group("tools")
def tools_group() -> None:
    """Tools: list them, manage tool packages, search and install from catalogues."""
