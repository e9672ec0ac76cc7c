"""The ``celeriac`` command line (click): ``celeriac --help``."""

from celeriac.cli.commands import main

__all__ = ["main"]
