"""client.py and gitlocal.py: argument parsing, which app, and small formatting helpers."""

import argparse
import subprocess

import pytest

from tinyserv import client, gitlocal
from tinyserv.errors import TinyservError


PARSER = client.parser()  # argparse parsers are reusable, and building one is the slow part


def parse(*argv):
    return vars(PARSER.parse_args(list(argv)))


@pytest.mark.parametrize("argv, expected", [
    (["apps"], {"method": "apps", "app": None, "json": False}),
    (["apps", "--json"], {"json": True}),
    (["apps:create"], {"method": "apps_create", "name": None, "app": None}),
    (["apps:create", "myapp", "--json"], {"name": "myapp", "json": True}),
    (["apps:destroy", "myapp", "--confirm", "myapp"], {"method": "apps_destroy", "name": "myapp", "confirm": "myapp"}),
    (["apps:destroy", "-a", "myapp"], {"name": None, "app": "myapp", "confirm": None}),
    (["apps:info", "-a", "myapp", "--json"], {"method": "apps_info", "app": "myapp", "json": True}),
    (["ps"], {"method": "ps", "app": None, "json": False}),
    (["ps", "--app", "myapp"], {"app": "myapp"}),
    (["ps:scale", "web=1", "worker=2", "-a", "myapp"], {"method": "ps_scale", "changes": ["web=1", "worker=2"]}),
    (["ps:scale"], {"changes": []}),
    (["ps:restart"], {"method": "ps_restart", "target": None}),
    (["ps:restart", "web.1"], {"target": "web.1"}),
    (["ps:stop", "worker"], {"method": "ps_stop", "target": "worker"}),
    (["ps:start", "worker", "-a", "myapp"], {"method": "ps_start", "target": "worker", "app": "myapp"}),
    (["restart", "-a", "myapp"], {"method": "ps_restart", "app": "myapp"}),
    (["logs"], {"method": "logs", "num": 100, "tail": False, "ps": None}),
    (["logs", "-n", "5", "-t", "--ps", "web"], {"num": 5, "tail": True, "ps": "web"}),
    (["logs", "--num", "0", "--tail"], {"num": 0, "tail": True}),
    (["run", "bash"], {"method": "run", "command": ["bash"]}),
    (["run", "-a", "myapp", "ls", "-la", "/"], {"app": "myapp", "command": ["ls", "-la", "/"]}),
    (["run", "sh", "-c", "echo $PORT", "-a", "x"], {"app": None, "command": ["sh", "-c", "echo $PORT", "-a", "x"]}),
    (["run"], {"command": []}),
    (["config"], {"method": "config", "json": False, "shell": False}),
    (["config", "--shell"], {"shell": True}),
    (["config:get", "GREETING"], {"method": "config_get", "key": "GREETING"}),
    (["config:set", "A=1", "B=x y", "C=a=b"], {"method": "config_set", "pairs": ["A=1", "B=x y", "C=a=b"]}),
    (["config:unset", "A", "B"], {"method": "config_unset", "keys": ["A", "B"]}),
    (["releases"], {"method": "releases", "num": None, "json": False}),
    (["releases", "-n", "3"], {"num": 3}),
    (["releases:info"], {"method": "releases_info", "version": None}),
    (["releases:info", "v3", "--json"], {"version": "v3", "json": True}),
    (["rollback"], {"method": "rollback", "version": None}),
    (["rollback", "v2", "-a", "myapp"], {"version": "v2", "app": "myapp"}),
])
def test_each_command_accepts_its_arguments(argv, expected):
    parsed = parse(*argv)
    assert parsed["verb"] == argv[0]
    assert {k: parsed[k] for k in expected} == expected


def test_every_command_is_in_the_parser():
    for name, method, _, _ in client.COMMANDS:
        assert parse(*([name, "x"] if name in ("ps:stop", "ps:start", "config:get") else [name]))["method"] == method
        assert hasattr(client.Client, method)


@pytest.mark.parametrize("argv, message", [
    ([], "required: COMMAND"),
    (["deploy"], "invalid choice: 'deploy'"),
    (["apps", "--bogus"], "unrecognized arguments: --bogus"),
    (["apps:create", "-a", "myapp"], "unrecognized arguments"),
    (["apps", "-a", "myapp"], "unrecognized arguments"),
    (["ps:stop"], "required: TYPE"),
    (["ps:start", "-a", "myapp"], "required: TYPE"),
    (["config:get"], "required: KEY"),
    (["logs", "-n", "many"], "invalid int value: 'many'"),
    (["logs", "--ps"], "expected one argument"),
    (["releases", "-n", "x"], "invalid int value"),
    (["ps", "-a"], "expected one argument"),
    (["ps:restart", "web", "worker"], "unrecognized arguments: worker"),
])
def test_bad_commands_and_options_are_refused_with_one_error(argv, message):
    with pytest.raises(TinyservError, match=message):
        PARSER.parse_args(argv)


def test_a_subcommand_error_points_at_its_own_help():
    with pytest.raises(TinyservError, match=r"\(see 'tinyserv ps:stop --help'\)$"):
        PARSER.parse_args(["ps:stop"])


def test_a_top_level_error_points_at_the_main_help():
    with pytest.raises(TinyservError, match=r"\(see 'tinyserv --help'\)$"):
        PARSER.parse_args(["deploy"])


def test_main_prints_one_line_and_exits_1_for_a_bad_command(capsys):
    assert client.main(["deploy"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("tinyserv: argument COMMAND: invalid choice: 'deploy'")
    assert err.count("\n") == 1


def test_resolve_app_takes_the_app_option():
    assert client.resolve_app(argparse.Namespace(app="myapp")) == "myapp"


def test_resolve_app_refuses_an_invalid_app_option():
    with pytest.raises(TinyservError, match="invalid app name '../etc'"):
        client.resolve_app(argparse.Namespace(app="../etc"))


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_resolve_app_reads_the_tinyserv_git_remote(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    git("remote", "add", "tinyserv", "deploy@host:/srv/tinyserv/repos/shop.git", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert client.resolve_app(argparse.Namespace(app=None)) == "shop"


def test_resolve_app_without_a_remote_says_what_to_do(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TinyservError, match="no app here: .*pass -a NAME"):
        client.resolve_app(argparse.Namespace(app=None))


@pytest.mark.parametrize("url, app", [
    ("deploy@host:/x/repos/myapp.git", "myapp"),
    ("ssh://u@h:22/x/repos/myapp.git", "myapp"),
    ("/tmp/r/repos/myapp.git", "myapp"),
    ("/tmp/r/repos/myapp.git/", "myapp"),
    ("deploy@host:myapp.git", "myapp"),
    ("host:repos/my-app-2.git", "my-app-2"),
    ("ssh://u@h/x/repos/myapp", "myapp"),
])
def test_app_from_url_is_the_repository_name(url, app):
    assert gitlocal.app_from_url(url) == app


@pytest.mark.parametrize("seconds, shown", [
    (0, "0s"),
    (59, "59s"),
    (60, "1m"),
    (119, "1m"),
    (3599, "59m"),
    (3600, "1h"),
    (86399, "23h"),
    (86400, "1d"),
    (5 * 86400 + 3600, "5d"),
    (-30, "0s"),
])
def test_ago_shows_the_largest_whole_unit(seconds, shown):
    assert client.ago(1_000_000 - seconds, now=1_000_000) == shown


@pytest.mark.parametrize("epoch, shown", [
    (1795842000, "2026-11-28T05:00:00Z"),
    (None, ""),
    (0, ""),
])
def test_iso_shows_utc_or_nothing(epoch, shown):
    assert client.iso(epoch) == shown
