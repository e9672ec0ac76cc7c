"""``python -m celeriac.cli``."""

from celeriac.cli.commands import main

main(prog_name="celeriac")
