"""``python -m asm_dask.cli``: the command line."""

from .commands import command_line

command_line()
