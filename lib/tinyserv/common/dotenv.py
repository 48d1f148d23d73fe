"""The .env file of `tinyserv local`, `config:pull` and `config:push` (pure: text in, data out).

Heroku's format, as `heroku local` reads it:
  - one NAME=value per line; blank lines and lines starting with # are skipped; `export NAME=value` works too;
  - an unquoted value is the rest of the line with the spaces around it trimmed, up to a ` #` comment
    (a # inside a word, as in a#b, is part of it); nothing in it is special;
  - 'single quotes' keep everything inside as it is, newlines too (a value may go on over several lines);
  - "double quotes" understand \\n (a newline), \\t, \\", \\\\, \\$ and \\`; other backslashes stay;
  - quoted pieces next to each other are one value ('it'"'"'s' is it's): what `config --shell` and
    `config:pull` write, which a shell can also source;
  - after a quoted value only spaces and a # comment may follow. The last of two lines with one NAME wins.
"""

import re
import shlex

from tinyserv.common.errors import TinyservError

ASSIGNMENT = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*")
ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "$": "$", "`": "`"}


def parse_env(text, where=".env"):
    """{NAME: value} from the text of a .env file; a line that is none of the above is an error naming it."""
    values, pos, line = {}, 0, 1
    while pos < len(text):
        end = line_end(text, pos)
        stripped = text[pos:end].strip()
        if stripped and not stripped.startswith("#"):
            match = ASSIGNMENT.match(text, pos, end)
            if not match:
                raise TinyservError("%s line %d is not NAME=value: %r" % (where, line, text[pos:end]))
            start = line
            if match.end() < end and text[match.end()] in "'\"":
                value, end, line = quoted(text, match.end(), line, where)
            else:
                value = unquoted(text[match.end():end])
            values[match.group(1)] = value
            if "\0" in value:
                raise TinyservError("%s line %d: a value cannot hold a NUL byte" % (where, start))
        pos, line = end + 1, line + 1
    return values


def line_end(text, pos):
    """Where the line that pos is on ends."""
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def unquoted(rest):
    """An unquoted value: up to a comment (# after a space), trimmed."""
    return re.split(r"[ \t]#", rest, 1)[0].strip()


def quoted(text, pos, line, where):
    """Quoted pieces from pos on: (value, end of the line they end on, that line's number)."""
    value, start = [], line
    while pos < len(text) and text[pos] in "'\"":
        quote = text[pos]
        close = pos + 1
        piece = []
        while True:
            if close >= len(text):
                raise TinyservError("%s line %d: the %s quote is never closed" % (
                    where, start, "single" if quote == "'" else "double"))
            char = text[close]
            if char == quote:
                break
            if char == "\\" and quote == '"' and close + 1 < len(text) and text[close + 1] in ESCAPES:
                piece.append(ESCAPES[text[close + 1]])
                close += 2
                continue
            line += char == "\n"
            piece.append(char)
            close += 1
        value.append("".join(piece))
        pos = close + 1
    end = line_end(text, pos)
    rest = text[pos:end]
    if rest.strip() and not re.match(r"[ \t]+#", rest):
        raise TinyservError("%s line %d: only a # comment may follow a quoted value, not %r" % (where, line, rest))
    return "".join(value), end, line


def format_env(values):
    """.env text for {NAME: value}, sorted; parse_env reads it back exactly and a shell can source it."""
    return "".join("%s=%s\n" % (name, shlex.quote(value)) for name, value in sorted(values.items()))
