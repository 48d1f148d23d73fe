"""The one error type: every expected failure becomes a TinyservError."""


class TinyservError(Exception):
    """Something the user can fix; main() prints it as one line and exits 1."""
