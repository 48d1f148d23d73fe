"""The one error type: every expected failure becomes a TinyservError."""

import argparse


class TinyservError(Exception):
    """Something the user can fix; main() prints it as one line and exits 1."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line is a TinyservError like any other (one line, exit 1)."""

    def error(self, message):
        command = self.prog.split(" ", 1)
        raise TinyservError("%s (see '%s --help')" % (message, " ".join(command)))
