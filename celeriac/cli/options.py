"""Options that several commands share."""

from __future__ import annotations

import click

#: ``--name``: narrow a command to the workflows of one name.
name_option = click.option("--name", help="Only workflows with this name.")
