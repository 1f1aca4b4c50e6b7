"""The ``command`` plugin kind: a ``python -m ic_zoo <name>`` subcommand.

    from ic_zoo import Command, register

    @register("command", "hello", description="say hello")
    class Hello(Command):
        def add_arguments(self, parser):
            parser.add_argument("--name", default="world")

        def run(self, args):
            print(f"hello {args.name}")
            return 0

The built-in ``flower2d``, ``explain-bench``, ``vebi`` and ``study`` commands are registered this way. A
command with its own sub-commands sets ``func`` per sub-parser in ``add_arguments`` (argparse's
``set_defaults(func=...)``) and leaves :meth:`run` alone.
"""
from __future__ import annotations


class Command:
    """Base class of a CLI subcommand plugin: :meth:`add_arguments` fills its parser, :meth:`run` does
    the work and returns the exit status. ``description`` is the line ``--help`` shows."""

    name: str = ""
    description: str = ""

    def add_arguments(self, parser) -> None:
        raise NotImplementedError

    def run(self, args) -> int:
        raise NotImplementedError(f"'{self.name}' needs a sub-command; see --help")
