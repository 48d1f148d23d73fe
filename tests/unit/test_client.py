"""client.py, target.py and gitlocal.py: argument parsing, which app, and small formatting helpers."""

import argparse
import os
import subprocess

import pytest

from tinyserv.cli import client, gitlocal, target
from tinyserv.common import commands, printer
from tinyserv.common.errors import TinyservError


PARSER = client.parser()  # argparse parsers are reusable, and building one is the slow part


def parse(*argv):
    return vars(PARSER.parse_args(list(argv)))


@pytest.mark.parametrize("argv, expected", [
    (["apps"], {"app": None, "json": False}),
    (["apps", "--json"], {"json": True}),
    (["apps:create"], {"name": None, "app": None}),
    (["apps:create", "myapp", "--json"], {"name": "myapp", "json": True}),
    (["apps:destroy", "myapp", "--confirm", "myapp"], {"name": "myapp", "confirm": "myapp"}),
    (["apps:destroy", "-a", "myapp"], {"name": None, "app": "myapp", "confirm": None}),
    (["apps:info", "-a", "myapp", "--json"], {"app": "myapp", "json": True}),
    (["ps"], {"app": None, "json": False}),
    (["ps", "--app", "myapp"], {"app": "myapp"}),
    (["ps:scale", "web=1", "worker=2", "-a", "myapp"], {"changes": ["web=1", "worker=2"]}),
    (["ps:scale"], {"changes": []}),
    (["ps:restart"], {"target": None}),
    (["ps:restart", "web.1"], {"target": "web.1"}),
    (["ps:stop", "worker"], {"target": "worker"}),
    (["ps:start", "worker", "-a", "myapp"], {"target": "worker", "app": "myapp"}),
    (["restart", "-a", "myapp"], {"app": "myapp"}),
    (["logs"], {"num": 100, "following": False, "ps": None}),
    (["logs", "-n", "5", "-t", "--ps", "web"], {"num": 5, "following": True, "ps": "web"}),
    (["logs", "--num", "0", "--tail"], {"num": 0, "following": True}),
    (["run", "bash"], {"command": ["bash"]}),
    (["run", "-a", "myapp", "ls", "-la", "/"], {"app": "myapp", "command": ["ls", "-la", "/"]}),
    (["run", "sh", "-c", "echo $PORT", "-a", "x"], {"app": None, "command": ["sh", "-c", "echo $PORT", "-a", "x"]}),
    (["run"], {"command": []}),
    (["config"], {"json": False, "shell": False}),
    (["config", "--shell"], {"shell": True}),
    (["config:get", "GREETING"], {"key": "GREETING"}),
    (["config:set", "A=1", "B=x y", "C=a=b"], {"pairs": ["A=1", "B=x y", "C=a=b"]}),
    (["config:unset", "A", "B"], {"keys": ["A", "B"]}),
    (["releases"], {"num": None, "json": False}),
    (["releases", "-n", "3"], {"num": 3}),
    (["releases:info"], {"version": None}),
    (["releases:info", "v3", "--json"], {"version": "v3", "json": True}),
    (["rollback"], {"version": None}),
    (["rollback", "v2", "-a", "myapp"], {"version": "v2", "app": "myapp"}),
    (["version"], {"server": None, "json": False}),
    (["version", "ssh://deploy@host:2222", "--json"], {"server": "ssh://deploy@host:2222", "json": True}),
    (["server:install", "deploy@host"], {"server": "deploy@host"}),
    (["local"], {"types": [], "env": None, "procfile": "Procfile", "port": 5000, "timeout": 5}),
    (["local", "web", "worker", "-e", "dev.env", "-p", "6000", "-t", "1.5"],
     {"types": ["web", "worker"], "env": "dev.env", "port": 6000, "timeout": 1.5}),
    (["config:pull", "--overwrite"], {"env": ".env", "overwrite": True, "json": False}),
    (["config:push", "-e", "prod.env", "-a", "myapp"], {"env": "prod.env", "app": "myapp"}),
    (["open", "/admin"], {"path": "/admin"}),
    (["completion", "zsh"], {"shell": "zsh"}),
    (["storage", "--json"], {"json": True}),
    (["addons"], {"json": False}),
    (["addons:create", "heroku-postgresql:essential-0"], {"kind": "heroku-postgresql:essential-0"}),
    (["addons:destroy", "redis-1a2b3c4d", "--confirm", "myapp"], {"addon": "redis-1a2b3c4d", "confirm": "myapp"}),
    (["addons:info", "redis-1a2b3c4d", "--json"], {"addon": "redis-1a2b3c4d", "json": True}),
    (["pg:psql"], {"command": None, "database": None}),
    (["pg:psql", "-c", "select 1", "postgresql-1a2b3c4d"], {"command": "select 1", "database": "postgresql-1a2b3c4d"}),
    (["pg:backups"], {"database": None}),
    (["pg:backups:capture", "--json"], {"json": True}),
    (["pg:backups:restore", "b002", "--confirm", "myapp"], {"backup": "b002", "confirm": "myapp"}),
    (["pg:backups:download", "-o", "x.dump"], {"backup": None, "output": "x.dump"}),
    (["cron", "--json"], {"json": True}),
    (["backups:capture"], {"file": None}),
    (["backups:capture", "server.tar.gz"], {"file": "server.tar.gz"}),
])
def test_each_command_accepts_its_arguments(argv, expected):
    parsed = parse(*argv)
    assert parsed["verb"] == argv[0]
    assert {k: parsed[k] for k in expected} == expected


def test_every_declared_client_command_is_in_the_parser_and_has_a_client_method():
    for cmd in commands.client_commands():
        required = [a.options.get("choices", ["x"])[0] for a in commands.client_args(cmd)
                    if not a.flags[0].startswith("-") and a.options.get("nargs") is None]
        assert parse(cmd.name, *required)["verb"] == cmd.name
        assert callable(getattr(client.Client, client.method_name(cmd.name)))


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
    (["completion", "fish"], "invalid choice: 'fish'"),
    (["local", "-p", "x"], "invalid int value: 'x'"),
    (["server:install", "-a", "myapp"], "unrecognized arguments"),
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
    assert target.resolve_app(argparse.Namespace(app="myapp")) == "myapp"


def test_resolve_app_refuses_an_invalid_app_option():
    with pytest.raises(TinyservError, match="invalid app name '../etc'"):
        target.resolve_app(argparse.Namespace(app="../etc"))


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_resolve_app_reads_the_tinyserv_git_remote(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    git("remote", "add", "tinyserv", "deploy@host:/srv/tinyserv/repos/shop.git", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert target.resolve_app(argparse.Namespace(app=None)) == "shop"


def test_resolve_app_without_a_remote_says_what_to_do(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TinyservError, match="no app here: .*pass -a NAME"):
        target.resolve_app(argparse.Namespace(app=None))


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
    assert printer.ago(1_000_000 - seconds, now=1_000_000) == shown


@pytest.mark.parametrize("epoch, shown", [
    (1795842000, "2026-11-28T05:00:00Z"),
    (None, ""),
    (0, ""),
])
def test_iso_shows_utc_or_nothing(epoch, shown):
    assert printer.iso(epoch) == shown


def test_the_server_parses_what_the_client_sends_for_every_command():
    """One declaration, two parsers: each client command's request parses on the server to the same values."""
    from tinyserv.server import remote
    server = remote.parser()
    samples = {"ps:stop": ["web"], "ps:start": ["web"], "config:get": ["KEY"], "ps:scale": ["web=1", "worker=0"],
               "ps:restart": ["web.1"], "logs": ["-n", "5", "-t", "--ps", "web"], "run": ["ls", "-la", "--", "x"],
               "releases": ["-n", "3"], "releases:info": ["v2"], "rollback": ["v1"],
               "keys:add": ["ci", "ci.pub", "--apps", "a,b", "--push-only"], "keys:remove": ["ci"],
               "addons:create": ["redis"], "addons:destroy": ["redis-1a2b3c4d", "--confirm", "myapp"],
               "addons:info": ["redis-1a2b3c4d"], "pg:psql": ["-c", "select 1; -- 'quoted'", "postgresql-1a2b"],
               "pg:backups": ["postgresql-1a2b"], "pg:backups:restore": ["b001", "postgresql-1a2b"],
               "pg:backups:download": ["b003", "-o", "here.dump", "--database", "postgresql-1a2b"],
               "domains:add": ["www.x.org"], "domains:remove": ["www.x.org"], "certs:add": ["c.pem", "k.pem"],
               "certs:remove": ["x"], "features:enable": ["http-session-affinity"],
               "features:disable": ["http-session-affinity"], "scheduler:set": ["swarm"],
               "apps:create": ["x", "--scheduler", "swarm"]}
    for cmd in commands.client_commands():
        if cmd.serves is None:
            continue
        parsed = PARSER.parse_args([cmd.name, *samples.get(cmd.name, [])])
        words, payload = commands.request(cmd, parsed, "myapp" if cmd.app else None, "me@here")
        back = vars(server.parse_args(words))
        assert back.get("app") == ("myapp" if cmd.app else None)
        for a in commands.sent(cmd, commands.ARGV):
            assert back[commands.dest(a)] == getattr(parsed, commands.dest(a)), cmd.name
        assert set(payload) == {commands.dest(a) for a in commands.sent(cmd, commands.STDIN)} | (
            {"by"} if cmd.who else set()), cmd.name


def test_the_readme_command_table_is_made_from_the_declarations():
    import os
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    with open(readme) as f:
        text = f.read()
    table = text.split("<!-- commands:start -->\n", 1)[1].split("<!-- commands:end -->", 1)[0]
    assert table == commands.readme_table(), (
        "README.md's command table differs from lib/tinyserv/common/commands.py; make it from the declarations with:\n"
        "  python3 -c 'import sys; sys.path.insert(0, \"lib\"); from tinyserv import commands; "
        "print(commands.readme_table(), end=\"\")'")


@pytest.mark.parametrize("argv, app", [
    (["-a", "shop", "ps"], "shop"),
    (["ps", "-a", "shop"], "shop"),
    (["--app", "shop", "releases", "-n", "2"], "shop"),
    (["-a", "first", "ps", "-a", "second"], "second"),  # the one nearer the command wins
])
def test_the_app_option_goes_before_or_after_the_command(argv, app):
    assert target.resolve_app(PARSER.parse_args(argv)) == app


def test_r_names_another_git_remote_for_the_app_and_its_server(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    git("remote", "add", "tinyserv", "deploy@one:/srv/t/repos/shop.git", cwd=tmp_path)
    git("remote", "add", "staging", "ssh://deploy@two:2222/srv/t/repos/shop-staging.git", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TINYSERV_REMOTE", raising=False)
    for argv, app, spec in [(["ps"], "shop", "deploy@one"),
                            (["ps", "-r", "staging"], "shop-staging", "ssh://deploy@two:2222"),
                            (["-r", "staging", "logs"], "shop-staging", "ssh://deploy@two:2222")]:
        args = PARSER.parse_args(argv)
        assert (target.resolve_app(args), target.find_remote(args).spec) == (app, spec)
    with pytest.raises(TinyservError, match="no git remote named 'prod'"):
        target.resolve_app(PARSER.parse_args(["ps", "-r", "prod"]))


def test_a_named_app_goes_to_tinyserv_remote_and_so_do_apps_and_apps_create(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path), cwd=tmp_path)
    git("remote", "add", "tinyserv", "deploy@one:/srv/t/repos/shop.git", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    for argv in (["ps", "-a", "other"], ["apps"], ["apps:create", "new"]):
        assert target.find_remote(PARSER.parse_args(argv), {"TINYSERV_REMOTE": "deploy@three"}).spec == "deploy@three"


def test_a_command_without_an_app_refuses_one_before_it(capsys):
    assert client.main(["-a", "shop", "apps"]) == 1
    assert capsys.readouterr().err == "tinyserv: apps does not take -a/--app\n"


def test_a_download_never_writes_through_a_partial_file_someone_planted(tmp_path):
    import types
    from tinyserv.cli.client import Client
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    target = tmp_path / "latest.dump"
    os.symlink(victim, str(target) + ".partial")
    remote = types.SimpleNamespace(stream=lambda words, out: out.write(b"the dump") and 0)
    assert Client.save_stream(types.SimpleNamespace(remote=remote), ["pg:backups:download"], str(target)) == 0
    assert victim.read_bytes() == b"keep me" and target.read_bytes() == b"the dump"
    assert os.stat(target).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("argv, expected", [
    (["domains:add", "-x.test"], ["domains:add", "--", "-x.test"]),
    (["domains:add", "-x.test", "-a", "shop"], ["domains:add", "-a", "shop", "--", "-x.test"]),
    (["-a", "shop", "domains:remove", "-x.test"], ["-a", "shop", "domains:remove", "--", "-x.test"]),
    (["apps:create", "-starts-with-dash"], ["apps:create", "--", "-starts-with-dash"]),
    (["domains:add", "www.example.org", "-ashop"], ["domains:add", "www.example.org", "-ashop"]),
    (["domains:add", "--", "-x.test"], ["domains:add", "--", "-x.test"]),
    (["local", "-p", "-5"], ["local", "-p", "-5"]),
    (["releases", "-n", "-1"], ["releases", "-n", "-1"]),
    (["run", "ls", "-la"], ["run", "ls", "-la"]),
    (["domains", "--bogus"], ["domains", "--bogus"]),
    (["domains:add", "--help"], ["domains:add", "--help"]),
])
def test_a_word_starting_with_a_dash_that_is_no_option_is_the_commands_positional(argv, expected):
    assert client.stray_dashes_as_positionals(argv) == expected
