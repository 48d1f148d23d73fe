"""local.py's pure parts: which processes run with which PORT, and how their output is prefixed."""

import io

import pytest

from tinyserv.cli import local
from tinyserv.common.errors import TinyservError
from tinyserv.cli.local import Prefixer, Process, plan

TYPES = {"release": "./migrate", "web": "node web.js", "worker": "node worker.js", "clock": "node clock.js"}


@pytest.mark.parametrize("wanted, port, expected", [
    ([], 5000, [Process("web.1", "node web.js", 5000), Process("worker.1", "node worker.js", 5100),
                Process("clock.1", "node clock.js", 5200)]),
    (["worker"], 5000, [Process("worker.1", "node worker.js", 5000)]),
    (["clock", "web"], 8080, [Process("clock.1", "node clock.js", 8080), Process("web.1", "node web.js", 8180)]),
    (["release"], 5000, [Process("release.1", "./migrate", 5000)]),
])
def test_plan_runs_every_type_but_release_or_the_named_ones_with_ports_100_apart(wanted, port, expected):
    assert plan(TYPES, wanted, port) == expected


@pytest.mark.parametrize("types, wanted, port, message", [
    (TYPES, ["db"], 5000, "the Procfile has no process type 'db' \\(it has release, web, worker, clock\\)"),
    ({"release": "x"}, [], 5000, "declares no process type to run"),
    (TYPES, [], 65400, "-p must leave room for 3 port"),
    (TYPES, [], 0, "-p must leave room"),
])
def test_plan_refuses_what_cannot_run(types, wanted, port, message):
    with pytest.raises(TinyservError, match=message):
        plan(types, wanted, port)


def test_prefixer_prefixes_whole_lines_and_keeps_a_partial_one_until_it_ends():
    p = Prefixer("web.1", 8, "36", io.StringIO())
    assert p.feed(b"one\ntw") == "web.1    | one\n"
    assert p.feed(b"o\nthree\n") == "web.1    | two\nweb.1    | three\n"
    assert p.feed(b"four") == ""
    assert p.flush() == "web.1    | four\n"
    assert p.flush() == ""


def test_prefixer_survives_bytes_that_are_not_utf8():
    assert Prefixer("w.1", 3, "36", io.StringIO()).feed(b"\xff\xfe ok\n") == "w.1 | \ufffd\ufffd ok\n"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_prefixes_are_coloured_on_a_terminal_unless_no_color_is_set(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert Prefixer("web.1", 5, "36", Terminal()).feed(b"x\n") == "\033[36mweb.1 |\033[0m x\n"
    monkeypatch.setenv("NO_COLOR", "1")
    assert Prefixer("web.1", 5, "36", Terminal()).feed(b"x\n") == "web.1 | x\n"


def test_a_missing_default_env_file_is_fine_but_a_named_one_is_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env, count = local.environment(".env", explicit=False)
    assert count == 0 and env["PATH"]
    with pytest.raises(TinyservError, match="no environment file here"):
        local.environment("other.env", explicit=True)


def test_the_env_file_is_added_to_our_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FROM_SHELL", "shell")
    (tmp_path / ".env").write_text("GREETING='hi there'\nFROM_SHELL=file\n")
    env, count = local.environment(".env", explicit=False)
    assert (count, env["GREETING"], env["FROM_SHELL"]) == (2, "hi there", "file")
