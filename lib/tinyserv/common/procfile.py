"""Procfile parsing (pure: text in, data out)."""

import re

from tinyserv.common.errors import TinyservError

LINE = re.compile(r"([A-Za-z0-9_-]+):\s*(.*?)\s*\Z")


def parse_procfile(text):
    """Return {type: command} in file order; blank lines and # comments are skipped."""
    types = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "\0" in line:
            raise TinyservError("Procfile line %d contains a NUL byte" % number)
        match = LINE.match(stripped)
        if not match or not match.group(2):
            raise TinyservError("Procfile line %d is not 'type: command': %r" % (number, line))
        ptype, command = match.groups()
        if ptype in types:
            raise TinyservError("Procfile line %d declares %r twice" % (number, ptype))
        types[ptype] = command
    return types


def process_types(types):
    """The types that run as processes: everything but the release phase."""
    return [t for t in types if t != "release"]
