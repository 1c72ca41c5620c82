"""`promptline skills`: the skills agents are offered, and their switches.

Command bodies import what they need inside, so `promptline --help` stays fast."""

from __future__ import annotations

import click

from promptline.cli.runtime import CliOptions

pass_options = click.make_pass_decorator(CliOptions, ensure=True)


@click.group("skills")
def skills_group() -> None:
    """Skills: list, show, enable and disable them."""
