"""Bad input is refused in one line on stderr, with exit code 1, no traceback, and nothing created or changed.

All cases share one server holding one deployed app ({app} in the tables) whose repository is {repo};
{plain} is an empty directory that is not a git repository.
"""

import os
import time
import types

import pytest

from localserver import TINYSERV_REMOTE, unique_name
from support import describe, node_app, run

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
    ("ps:scale web=21", "repo", ["ps:scale", "web=21"], ["at most 20"]),
    ("ps:scale of an unknown process type", "repo", ["ps:scale", "nosuch=1"], ["nosuch"]),
    ("ps:scale to a negative count", "repo", ["ps:scale", "web=-1"], ["web=-1"]),
    ("apps:destroy without --confirm and no terminal", "repo", ["apps:destroy"], ["--confirm"]),
    ("apps:destroy NAME without --confirm and no terminal", "plain", ["apps:destroy", "{app}"], ["--confirm"]),
    ("apps:destroy with the wrong --confirm", "repo", ["apps:destroy", "--confirm", "wrong-name"], ["wrong-name"]),
    ("rollback to a release that does not exist", "repo", ["rollback", "v99"], ["v99"]),
    ("releases:info of garbage", "repo", ["releases:info", "latest"], ["latest"]),
    # Names tinyserv sets itself, and settings with values they cannot take.
    *[(f"config:set {key}", "repo", ["config:set", f"{key}=1"], [key, "set by tinyserv"])
      for key in ("PORT", "DYNO", "PS", "TINYSERV_APP", "TINYSERV_RELEASE", "TINYSERV_INSTANCE")],
    ("config:set TINYSERV_BOOT_TIMEOUT=soon", "repo", ["config:set", "TINYSERV_BOOT_TIMEOUT=soon"],
     ["TINYSERV_BOOT_TIMEOUT", "'soon'"]),
    ("config:set TINYSERV_BOOT_TIMEOUT=0", "repo", ["config:set", "TINYSERV_BOOT_TIMEOUT=0"], ["from 1 to 3600"]),
    ("config:set TINYSERV_STOP_TIMEOUT=-1", "repo", ["config:set", "TINYSERV_STOP_TIMEOUT=-1"], ["'-1'"]),
    ("config:set TINYSERV_BUILD_TIMEOUT=1e9", "repo", ["config:set", "TINYSERV_BUILD_TIMEOUT=1e9"], ["'1e9'"]),
    ("config:set of 40 KB", "repo", ["config:set", "BIG=" + "x" * 40000], ["over the limit", "32 KiB"]),
    ("ps:restart of an instance that does not exist", "repo", ["ps:restart", "web.99"], ["web.99", "web.1"]),
    ("ps:restart web.0", "repo", ["ps:restart", "web.0"], ["web.0"]),
    ("ps:restart web.x", "repo", ["ps:restart", "web.x"], ["web.x"]),
    ("ps:scale over 100 of a type", "repo", ["ps:scale", "worker=101"], ["at most 100"]),
    ("ps:scale 1100 of a type", "repo", ["ps:scale", "worker=1100"], ["at most 100"]),
    ("ps:scale web=99999 names web's own limit", "repo", ["ps:scale", "web=99999"], ["web runs at most 20"]),
    ("releases -n -1", "repo", ["releases", "-n", "-1"], ["-n"]),
    ("domains:add -x.test", "repo", ["domains:add", "-x.test"], ["invalid domain '-x.test'"]),
    ("domains:remove -x.test", "repo", ["domains:remove", "-x.test"], ["invalid domain '-x.test'"]),
    ("releases -n 0", "repo", ["releases", "-n", "0"], ["-n"]),
    ("logs -n -1", "repo", ["logs", "-n", "-1"], ["-n"]),
]

REMOTE_CASES = [
    # tinyserv-remote checks everything itself: over ssh, its arguments and input come from anyone with a key.
    # (id, arguments, standard input, words the message must contain)
    ("apps:create '../x'", ["apps:create", "../x"], "{}", ["invalid app name"]),
    ("apps:create 'a;b'", ["apps:create", "a;b"], "{}", ["invalid app name"]),
    ("apps:destroy '../x'", ["apps:destroy", "../x"], "{}", ["invalid app name"]),
    ("ps '../../etc'", ["ps", "../../etc"], "{}", ["invalid app name"]),
    ("config:set 'Caps'", ["config:set", "Caps"], "{}", ["invalid app name"]),
    ("logs '../x'", ["logs", "../x"], "{}", ["invalid app name"]),
    ("unknown command", ["frobnicate"], "{}", ["frobnicate"]),
    ("a NUL byte in a config value", ["config:set", "{app}"], '{"pairs": ["A=x\\u0000y"]}', ["NUL byte"]),
    ("a 1 MB config value", ["config:set", "{app}"], '{"pairs": ["A=%s"]}' % ("x" * 1000000), ["32 KiB"]),
    ("a config pair that is not text", ["config:set", "{app}"], '{"pairs": [1]}', ["KEY=VALUE"]),
    ("config pairs that are not a list", ["config:set", "{app}"], '{"pairs": {"A": "1"}}', ["KEY=VALUE"]),
    ("config:set PORT", ["config:set", "{app}"], '{"pairs": ["PORT=1"]}', ["PORT", "set by tinyserv"]),
    ("config:set TINYSERV_APP", ["config:set", "{app}"], '{"pairs": ["TINYSERV_APP=x"]}', ["TINYSERV_APP"]),
    ("config:set a key with a NUL", ["config:set", "{app}"], '{"pairs": ["A\\u0000B=1"]}', ["invalid config key"]),
    ("config:set a field it does not take", ["config:set", "{app}"], '{"vars": {"A": "1"}}', ["'vars'"]),
    ("config:set with 'by' that is not text", ["config:set", "{app}"], '{"pairs": ["A=1"], "by": 5}', ["'by'"]),
    ("config:unset keys that are not text", ["config:unset", "{app}"], '{"keys": [1]}', ["config:unset needs"]),
    ("standard input that is not JSON", ["config:set", "{app}"], "A=1", ["expected JSON"]),
    ("standard input that is a JSON list", ["config:set", "{app}"], "[]", ["JSON object"]),
    ("ps:scale to a negative count", ["ps:scale", "{app}", "web=-1"], "{}", ["TYPE=N"]),
    ("ps:scale to a word", ["ps:scale", "{app}", "web=true"], "{}", ["TYPE=N"]),
    ("ps:scale to 1100", ["ps:scale", "{app}", "worker=1100"], "{}", ["at most 100"]),
    ("ps:scale web to 1100", ["ps:scale", "{app}", "web=1100"], "{}", ["web runs at most 20"]),
    ("ps:scale of nothing", ["ps:scale", "{app}"], "{}", ["ps:scale needs TYPE=N"]),
    ("ps:restart web.99", ["ps:restart", "{app}", "web.99"], "{}", ["web.99"]),
    ("releases -n -1", ["releases", "{app}", "-n", "-1"], "{}", ["-n"]),
    ("logs -n -1", ["logs", "{app}", "-n", "-1"], "{}", ["-n"]),
    ("rollback v0", ["rollback", "{app}", "v0"], "{}", ["v0"]),
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


@pytest.mark.parametrize("args, stdin, must_contain", [c[1:] for c in REMOTE_CASES], ids=[c[0] for c in REMOTE_CASES])
def test_bad_input_to_tinyserv_remote_is_refused_in_one_line_and_changes_nothing(world, args, stdin, must_contain):
    server = world.server
    before = server.snapshot()
    result = run([TINYSERV_REMOTE, *[fill(a, world) for a in args]], env=server.env, input=stdin, cwd=world.plain,
                 check=False)
    assert_refused_in_one_line(result, must_contain)
    assert server.snapshot() == before
    assert not os.path.exists(os.path.join(server.root, "x"))


# --- the environment: a root that cannot be one, a full disk, a read-only root, a broken ssh, Ctrl-D ---------------


def in_namespace(server, script, mount):
    """Run sh -c script as root of a user and mount namespace of its own, after `mount` (a mount command line
    acting on $ROOT, the server's root): works for root and other users alike, and touches nothing outside."""
    env = dict(server.env, ROOT=server.root)
    return run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", f"{mount} && {script}"],
               env=env, check=False)


def assert_one_line_from_namespace(result, must_contain):
    """The script ends with `echo exit=$?` after the command under test: its stderr is the command's."""
    __tracebackhide__ = True
    shown = describe(result)
    assert result.stdout.strip().splitlines()[-1:] == ["exit=1"], shown
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, shown
    assert result.stderr.startswith("tinyserv: ") and all(w in result.stderr for w in must_contain), shown


def test_a_root_that_is_a_file_is_refused_in_one_line(tmp_path):
    from localserver import LocalServer
    server = LocalServer(tmp_path / "not-a-directory")
    (tmp_path / "not-a-directory").write_text("")
    for args in (["apps"], ["apps:create", "x"]):
        result = server.tinyserv(*args, cwd=str(tmp_path), check=False)
        assert_refused_in_one_line(result, ["TINYSERV_ROOT", "is not a directory"])
    assert (tmp_path / "not-a-directory").read_text() == ""
    os.close(server.port_lock)


def on_a_full_disk(server, script):
    """Make app `first` on a 2 MB tmpfs root, fill the disk, then run script (its `echo exit=$?` on stdout)."""
    return in_namespace(server, 'tinyserv-remote apps:create first </dev/null >/dev/null && '
                                '(head -c 4000000 /dev/zero > "$ROOT/filler" 2>/dev/null; true) && ' + script,
                        'mount -t tmpfs -o size=2m tmpfs "$ROOT"')


def test_a_full_disk_is_one_line_and_leaves_no_half_made_app(server, tmp_path):
    result = on_a_full_disk(server, 'tinyserv-remote apps:create second </dev/null; echo "exit=$?"; '
                                    'ls "$ROOT/releases" "$ROOT/repos" >&2')
    shown = describe(result)
    assert result.stdout.strip().splitlines()[-1:] == ["exit=1"], shown
    lines = result.stderr.splitlines()
    assert lines[0].startswith("tinyserv: ") and "No space left on device" in lines[0], shown
    assert "Traceback" not in result.stderr and "second" not in result.stderr.split("\n", 1)[1], shown


def test_config_set_on_a_full_disk_is_one_line_and_changes_nothing(server, tmp_path):
    result = on_a_full_disk(server, 'echo \'{"pairs": ["A=1"]}\' | tinyserv-remote config:set first; '
                                    'echo "exit=$?"; tinyserv-remote config first </dev/null >&2')
    shown = describe(result)
    assert result.stdout.strip().splitlines()[-1:] == ["exit=1"], shown
    first, rest = result.stderr.split("\n", 1)
    assert first.startswith("tinyserv: cannot write ") and first.endswith("No space left on device"), shown
    assert rest.strip() == "{}", "the config must be unchanged\n" + shown


def test_a_read_only_root_is_one_line(server, tmp_path):
    server.remote("apps:create", "ro-app")
    result = in_namespace(server, 'tinyserv-remote apps:create other </dev/null; echo "exit=$?"',
                          'mount --bind "$ROOT" "$ROOT" && mount -o remount,bind,ro "$ROOT"')
    assert_one_line_from_namespace(result, ["Read-only file system"])


@pytest.mark.parametrize("ssh", ["/nonexistent/ssh", "ssh -o 'unbalanced", " "])
@pytest.mark.parametrize("command", [["logs", "-a", "x"], ["run", "-a", "x", "true"], ["ps", "-a", "x"]])
def test_a_broken_git_ssh_command_is_one_line(tmp_path, ssh, command):
    env = dict(os.environ, TINYSERV_REMOTE="deploy@tinyserv.invalid", GIT_SSH_COMMAND=ssh)
    result = run([os.path.join(os.path.dirname(TINYSERV_REMOTE), "tinyserv"), *command], env=env,
                 cwd=str(tmp_path), check=False)
    assert_refused_in_one_line(result, ["GIT_SSH_COMMAND"])


def read_pty(fd, until, timeout=30):
    """Read a terminal's output until `until` appears in it (None: until it closes); fail after timeout s."""
    import select
    output, deadline = b"", time.monotonic() + timeout
    while until is None or until not in output:
        assert time.monotonic() < deadline, f"timed out waiting for {until!r} on the terminal: {output!r}"
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the other side closed: EIO on Linux
                chunk = b""
            if not chunk:
                assert until is None, f"the terminal closed before {until!r}: {output!r}"
                break
            output += chunk
    return output


def test_ctrl_d_at_the_destroy_prompt_destroys_nothing(world):
    import pty
    server = world.server
    before = server.snapshot()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(world.app.path)
        os.execve(os.path.join(os.path.dirname(TINYSERV_REMOTE), "tinyserv"), ["tinyserv", "apps:destroy"], server.env)
    output = read_pty(fd, until=b"To proceed, type")
    os.write(fd, b"\x04")  # Ctrl-D: end of input on a terminal
    output += read_pty(fd, until=None)
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 1, text
    assert "tinyserv: no confirmation given: nothing was destroyed" in text and "Traceback" not in text, text
    assert server.snapshot() == before
