"""The one error type: every expected failure becomes a TinyservError, caught once in main()."""

import argparse
import os
import sys


class TinyservError(Exception):
    """Something the user can fix; main() prints it as one line and exits 1.

    details: lines that explain it (a web's last output), printed above that line.
    """

    def __init__(self, message, details=()):
        super().__init__(message)
        self.details = list(details)


def terminal_width():
    """The width argparse asks shutil for (COLUMNS, else the terminal's, else 80), without importing shutil:
    argparse makes a formatter for every argument it adds, and most command lines print no help."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with the width found without shutil."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position, width or terminal_width() - 2)


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The same, keeping the description's line breaks."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is a TinyservError like any other (one line, exit 1)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        command = self.prog.split(" ", 1)
        raise TinyservError("%s (see '%s --help')" % (message, " ".join(command)))


def guarded(body):
    """Run a CLI's body: every failure is one line on stderr and exit 1 (a traceback only with
    TINYSERV_DEBUG=1); Ctrl-C is exit 130; a reader that went away ends output quietly."""
    try:
        return body() or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (a pipe into head): say nothing, and let exit's flush go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - the one boundary: whatever happened, one line
        if os.environ.get("TINYSERV_DEBUG") == "1":
            raise
        from tinyserv.common.printer import error
        error(one_line(e), getattr(e, "details", ()))
        quiet_stdout()  # a failure on writing (a broken pipe) must not turn into another at exit's flush
        return 1


def quiet_stdout():
    """Flush stdout now; if its reader went away, point it at /dev/null so exit's flush has nowhere to fail."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def one_line(e):
    """What went wrong, in one line, for any exception that reaches main()."""
    if isinstance(e, TinyservError):
        return str(e)
    if isinstance(e, OSError):
        where = " (%s)" % e.filename if e.filename else ""
        return "%s%s" % (e.strerror or e, where)
    if isinstance(e, EOFError):
        return "no answer: standard input was closed"
    return "unexpected error: %s: %s (set TINYSERV_DEBUG=1 to see where)" % (type(e).__name__, e)


def parse(parser, argv):
    """Parse argv; for `run`, a leading '--' only separates the command from our options."""
    args = parser.parse_args(argv)
    if args.verb == "run" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    return args
