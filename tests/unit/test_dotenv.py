"""dotenv.py: the .env format of tinyserv local and config:pull/push, table-driven."""

import shlex
import subprocess

import pytest

from tinyserv.common.dotenv import format_env, parse_env
from tinyserv.common.errors import TinyservError


@pytest.mark.parametrize("text, expected", [
    ("A=1\n", {"A": "1"}),
    ("A=1", {"A": "1"}),
    ("\n# comment\n\nA=1\n  # indented comment\n", {"A": "1"}),
    ("export A=1\n", {"A": "1"}),
    ("A = 1\n", {"A": "1"}),
    ("GREETING=hello world\n", {"GREETING": "hello world"}),
    ("A=  spaced out  \n", {"A": "spaced out"}),
    ("A=value # a comment\n", {"A": "value"}),
    ("A=a#b\n", {"A": "a#b"}),
    ("A=#not-a-comment\n", {"A": "#not-a-comment"}),
    ("A=\n", {"A": ""}),
    ("A=$HOME `id` \\n\n", {"A": "$HOME `id` \\n"}),
    ("A='single # quoted'\n", {"A": "single # quoted"}),
    ("A='keeps \\n $HOME \"double\"'\n", {"A": 'keeps \\n $HOME "double"'}),
    ("A='two\nlines'\nB=2\n", {"A": "two\nlines", "B": "2"}),
    ('A="double # quoted"\n', {"A": "double # quoted"}),
    ('A="line\\nbreak\\ttab"\n', {"A": "line\nbreak\ttab"}),
    ('A="she said \\"hi\\" \\\\ \\$HOME \\`x\\`"\n', {"A": 'she said "hi" \\ $HOME `x`'}),
    ('A="other \\q backslash"\n', {"A": "other \\q backslash"}),
    ("A='it'\"'\"'s'\n", {"A": "it's"}),
    ("A='x' # comment after quotes\n", {"A": "x"}),
    ("A=''\n", {"A": ""}),
    ("A=1\nA=2\n", {"A": "2"}),
    ("A=héllo ⬢\n", {"A": "héllo ⬢"}),
    ("A=x\r\n", {"A": "x"}),
])
def test_parse_env_reads_herokus_format(text, expected):
    assert parse_env(text) == expected


@pytest.mark.parametrize("text, message", [
    ("just words\n", "line 1 is not NAME=value"),
    ("A=1\n1A=2\n", "line 2 is not NAME=value"),
    ("A-B=1\n", "line 1 is not NAME=value"),
    ("A='open\n", "line 1: the single quote is never closed"),
    ("A=1\nB=\"open\n\nC=3\n", "line 2: the double quote is never closed"),
    ("A='x'y\n", "line 1: only a # comment may follow a quoted value"),
    ("A='x'#y\n", "line 1: only a # comment may follow a quoted value"),
    ("A=a\0b\n", "line 1: a value cannot hold a NUL byte"),
])
def test_parse_env_names_the_line_that_is_wrong(text, message):
    with pytest.raises(TinyservError, match=message):
        parse_env(text, ".env")


def test_line_numbers_count_the_lines_a_quoted_value_spans():
    with pytest.raises(TinyservError, match="line 3 is not"):
        parse_env("A='one\ntwo'\noops\n")


VALUES = {"PLAIN": "x", "SPACES": "hello world", "QUOTES": "it's \"quoted\"", "HASH": "a # b", "DOLLAR": "$HOME",
          "NEWLINE": "one\ntwo", "EMPTY": "", "BACKSLASH": "a\\nb", "UNICODE": "héllo ⬢"}


def test_format_env_is_read_back_exactly():
    assert parse_env(format_env(VALUES)) == VALUES


def test_format_env_can_be_sourced_by_a_shell():
    script = format_env(VALUES) + "".join('printf "%%s\\0" "$%s"\n' % name for name in sorted(VALUES))
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout.decode()
    assert out.split("\0")[:-1] == [VALUES[name] for name in sorted(VALUES)]


def test_config_shell_output_is_a_valid_env_file():
    # `tinyserv config --shell > .env` writes KEY=shlex.quote(value) lines
    text = "".join("%s=%s\n" % (k, shlex.quote(v)) for k, v in VALUES.items())
    assert parse_env(text) == VALUES
