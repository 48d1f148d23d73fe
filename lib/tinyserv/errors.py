"""The one error type: every expected failure becomes a TinyservError, caught once in main()."""

import argparse
import os
import sys


class TinyservError(Exception):
    """Something the user can fix; main() prints it as one line and exits 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is a TinyservError like any other (one line, exit 1)."""

    def error(self, message):
        command = self.prog.split(" ", 1)
        raise TinyservError("%s (see '%s --help')" % (message, " ".join(command)))


def guarded(body):
    """Run a CLI's body: a TinyservError is one line on stderr and exit 1, Ctrl-C exit 130."""
    try:
        return body() or 0
    except TinyservError as e:
        if os.environ.get("TINYSERV_DEBUG") == "1":
            raise
        from .printer import error
        error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (a pipe into head): say nothing, and let exit's flush go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def parse(parser, argv):
    """Parse argv; for `run`, a leading '--' only separates the command from our options."""
    args = parser.parse_args(argv)
    if args.verb == "run" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args
