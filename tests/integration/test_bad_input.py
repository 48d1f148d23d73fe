"""Bad input is refused in one line on stderr, with exit code 1, no traceback, and nothing created or changed.

All cases share one server holding one deployed app ({app} in the tables) whose repository is {repo};
{plain} is an empty directory that is not a git repository.
"""

import os
import types

import pytest

from localserver import TINYSERV_REMOTE, node_app, unique_name
from support import describe, run

TOO_LONG = "a" * 31
INVALID_NAMES = ["../x", "a;b", "has space", "Caps", "", TOO_LONG, "ends.git", "9starts-with-digit"]

CLIENT_CASES = [
    # (id, cwd, args, words the message must contain)
    *[(f"apps:create {name!r}", "plain", ["apps:create", name], ["invalid app name"]) for name in INVALID_NAMES],
    ("apps:create '-starts-with-dash'", "plain", ["apps:create", "-starts-with-dash"], ["-starts-with-dash"]),
    ("-a '../x' on ps", "plain", ["ps", "-a", "../x"], ["invalid app name"]),
    ("-a 'a;b' on config", "plain", ["config", "-a", "a;b"], ["invalid app name"]),
    ("-a 'has space' on logs", "plain", ["logs", "-a", "has space"], ["invalid app name"]),
    ("-a 'Caps' on apps:info", "plain", ["apps:info", "-a", "Caps"], ["invalid app name"]),
    ("-a '' on releases", "plain", ["releases", "-a", ""], []),
    ("-a 31 chars on config:set", "plain", ["config:set", "-a", TOO_LONG, "X=1"], ["invalid app name"]),
    ("-a '../x' on run", "plain", ["run", "-a", "../x", "true"], ["invalid app name"]),
    ("-a 'a;b' on rollback", "plain", ["rollback", "-a", "a;b"], ["invalid app name"]),
    ("apps:destroy '../x'", "plain", ["apps:destroy", "../x", "--confirm", "../x"], ["invalid app name"]),
    ("apps:create of an existing app", "plain", ["apps:create", "{app}"], ["already exists"]),
    ("apps:create where the tinyserv remote names another app", "repo", ["apps:create", "{fresh}"], ["{app}"]),
    ("no app in this directory", "plain", ["ps"], ["-a"]),
    ("unknown app on ps", "plain", ["ps", "-a", "no-such-app"], ["no-such-app"]),
    ("unknown app on config:set", "plain", ["config:set", "-a", "no-such-app", "X=1"], ["no-such-app"]),
    ("unknown app on logs", "plain", ["logs", "-a", "no-such-app"], ["no-such-app"]),
    ("unknown app on run", "plain", ["run", "-a", "no-such-app", "true"], ["no-such-app"]),
    ("unknown app on apps:destroy", "plain", ["apps:destroy", "no-such-app", "--confirm", "no-such-app"],
     ["no-such-app"]),
    ("unknown command", "plain", ["frobnicate"], ["frobnicate"]),
    ("unknown command with a known prefix", "repo", ["apps:frobnicate"], ["apps:frobnicate"]),
    ("config key starting with a digit", "repo", ["config:set", "1BAD=x"], ["1BAD"]),
    ("config key with a dash", "repo", ["config:set", "BAD-KEY=x"], ["BAD-KEY"]),
    ("empty config key", "repo", ["config:set", "=x"], []),
    ("config:set without '='", "repo", ["config:set", "NOEQUALS"], ["NOEQUALS"]),
    ("one bad key among good ones sets nothing", "repo", ["config:set", "GOOD=1", "BAD KEY=2"], ["BAD KEY"]),
    ("invalid key on config:get", "repo", ["config:get", "a b"], ["a b"]),
    ("invalid key on config:unset", "repo", ["config:unset", "x;y"], ["x;y"]),
    ("config:unset of a key that is not set", "repo", ["config:unset", "NOT_SET"], ["NOT_SET"]),
    ("ps:scale web=2", "repo", ["ps:scale", "web=2"], ["reverse proxy"]),
    ("ps:scale of an unknown process type", "repo", ["ps:scale", "nosuch=1"], ["nosuch"]),
    ("ps:scale to a negative count", "repo", ["ps:scale", "web=-1"], ["web=-1"]),
    ("apps:destroy without --confirm and no terminal", "repo", ["apps:destroy"], ["--confirm"]),
    ("apps:destroy NAME without --confirm and no terminal", "plain", ["apps:destroy", "{app}"], ["--confirm"]),
    ("apps:destroy with the wrong --confirm", "repo", ["apps:destroy", "--confirm", "wrong-name"], ["wrong-name"]),
    ("rollback to a release that does not exist", "repo", ["rollback", "v99"], ["v99"]),
    ("releases:info of garbage", "repo", ["releases:info", "latest"], ["latest"]),
]

REMOTE_CASES = [
    # tinyserv-remote checks names itself: over ssh, its arguments come from anyone with a key.
    ("apps:create '../x'", ["apps:create", "../x"]),
    ("apps:create 'a;b'", ["apps:create", "a;b"]),
    ("apps:destroy '../x'", ["apps:destroy", "../x"]),
    ("ps '../../etc'", ["ps", "../../etc"]),
    ("config:set 'Caps'", ["config:set", "Caps"]),
    ("logs '../x'", ["logs", "../x"]),
    ("unknown command", ["frobnicate"]),
]


@pytest.fixture(scope="module")
def world(module_server, tmp_path_factory):
    """One deployed app with its repository, and a plain directory; shared by every case."""
    base = tmp_path_factory.mktemp("bad-input")
    app = module_server.new_app(base, node_app("still here"), prefix="existing")
    module_server.push(app)
    plain = base / unique_name("plain")
    plain.mkdir()
    return types.SimpleNamespace(server=module_server, app=app, plain=str(plain), fresh=unique_name("fresh"))


def fill(text, world):
    return text.format(app=world.app.name, fresh=world.fresh)


def assert_refused_in_one_line(result, must_contain):
    __tracebackhide__ = True
    shown = describe(result)
    assert result.returncode == 1, shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert len(result.stderr.splitlines()) == 1 and result.stderr.endswith("\n"), shown
    assert result.stderr.startswith("tinyserv: "), shown
    for words in must_contain:
        assert words in result.stderr, shown


@pytest.mark.parametrize("cwd, args, must_contain", [c[1:] for c in CLIENT_CASES], ids=[c[0] for c in CLIENT_CASES])
def test_bad_input_to_tinyserv_is_refused_in_one_line_and_changes_nothing(world, cwd, args, must_contain):
    server = world.server
    before = server.snapshot()
    result = server.tinyserv(*[fill(a, world) for a in args], cwd=world.app.path if cwd == "repo" else world.plain,
                             check=False)
    assert_refused_in_one_line(result, [fill(w, world) for w in must_contain])
    assert server.snapshot() == before
    assert server.git("remote", "get-url", "tinyserv", cwd=world.app.path).stdout.strip().endswith(
        f"/{world.app.name}.git")


@pytest.mark.parametrize("args", [c[1] for c in REMOTE_CASES], ids=[c[0] for c in REMOTE_CASES])
def test_bad_input_to_tinyserv_remote_is_refused_in_one_line_and_changes_nothing(world, args):
    server = world.server
    before = server.snapshot()
    result = run([TINYSERV_REMOTE, *args], env=server.env, input="{}", cwd=world.plain, check=False)
    assert_refused_in_one_line(result, [])
    assert server.snapshot() == before
    assert not os.path.exists(os.path.join(server.root, "x"))
