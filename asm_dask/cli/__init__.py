from .commands import command_line, main

__all__ = ["command_line", "main"]
