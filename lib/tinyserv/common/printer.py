"""All user-facing output: Heroku-style push steps, aligned tables, colour on a terminal."""

import json
import os
import re
import sys
import time

ARROW = "-----> "
INDENT = " " * len(ARROW)


def color(text, code, stream=None):
    """Wrap text in an ANSI colour when stream is a terminal, NO_COLOR is unset and TERM is not 'dumb'."""
    stream = stream or sys.stdout
    if (not getattr(stream, "isatty", lambda: False)() or os.environ.get("NO_COLOR")
            or os.environ.get("TERM") == "dumb"):
        return text
    return "\033[%sm%s\033[0m" % (code, text)


# Control characters (C0, DEL, C1) but tab and newline: what could move the cursor or rewrite the screen.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def escape(text):
    """Text that came from an app, a build or a commit, safe for a terminal: each control character but tab
    and newline shown as \\xNN (ESC as \\x1b), so none can move the cursor or rewrite the screen."""
    return CONTROL.sub(lambda m: "\\x%02x" % ord(m.group()), text)


def escaped(value):
    """A server's answer with every string in it escaped (for printing; --json prints the answer itself)."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {escape(k): escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escaped(v) for v in value]
    return value


class Steps:
    """Build output as Heroku prints it during `git push`."""

    def __init__(self, out=None):
        self.out = out or sys.stdout

    def step(self, text):
        self.write(ARROW + text)

    def detail(self, text):
        self.write(INDENT + text)

    def write(self, line):
        """One line; what a build or an app wrote is escaped on its way (see escape)."""
        self.out.write(escape(line.rstrip("\n")) + "\n")
        self.out.flush()


ANSI = re.compile(r"\033\[[0-9;]*m")


def visible_len(text):
    """Width on screen: colour codes take none."""
    return len(ANSI.sub("", text))


def table(rows, headers):
    """Rows of strings as left-aligned columns under a header line."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(visible_len(r[i]) for r in rows + [headers]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c + " " * (w - visible_len(c)) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def heading(text):
    """'=== text', as Heroku's CLI heads a section."""
    return color("=== " + text, "1")


def pairs(items):
    """'Key:   value' lines, aligned."""
    width = max((len(k) for k, _ in items), default=0) + 1
    return "\n".join(("%s:" % k).ljust(width) + " " + str(v) for k, v in items)


def dumps(value):
    """JSON for --json output."""
    return json.dumps(value, indent=2, sort_keys=True)


def error(message, details=(), stream=None):
    """The one-line error every failure ends in, below the lines that explain it (if any)."""
    stream = stream or sys.stderr
    for line in details:  # often a web's last output
        stream.write(INDENT + escape(line.rstrip("\n")) + "\n")
    stream.write(color("tinyserv: " + escape(message.replace("\n", " ")), "31", stream) + "\n")
    stream.flush()


def warning(message, stream=None):
    """A warning on stderr: something to fix that did not stop the command."""
    stream = stream or sys.stderr
    stream.write(color("tinyserv: warning: " + escape(message.replace("\n", " ")), "33", stream) + "\n")
    stream.flush()


def human(size):
    """1536 -> '1.5 KB' (powers of 1024, as du -h)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (size, unit)
        size /= 1024.0


def ago(epoch, now=None):
    """'3s', '4m', '2h', '5d'."""
    seconds = max(0, int((now or time.time()) - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def iso(epoch):
    """A time as UTC ISO 8601, or nothing for none."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else ""
