"""Hostile input, round 2 (issue 17 items 7, 8, 9, 11, 15, 16): each case gets one clear line, and a command
that fails changes nothing."""

import json
import os

import pytest

from localserver import TINYSERV, TINYSERV_REMOTE, local_server
from support import Running, describe, node_app, run


def assert_one_line(result, *words):
    """Refused: exit 1, one line on stderr starting 'tinyserv: ' and naming words, no traceback."""
    __tracebackhide__ = True
    shown = describe(result)
    assert result.returncode == 1, shown
    assert "Traceback" not in result.stdout + result.stderr and "unexpected error" not in result.stderr, shown
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("tinyserv: "), shown
    for word in words:
        assert word in lines[-1], shown


# --- 7: a backup whose output could not be written fails ---------------------------------------------------------


def test_a_backup_into_a_pipe_whose_reader_ends_fails_in_one_line(server, tmp_path):
    app = server.new_app(tmp_path, node_app("x"), prefix="bk")
    with open(os.path.join(server.root, "apps", app.name, "data", "big"), "wb") as f:
        f.write(os.urandom(2 * 1024 * 1024))  # more than a pipe holds, and gzip cannot shrink it
    result = run(["bash", "-c", '"$0" backup - | false; echo "exit=${PIPESTATUS[0]}" >&2', TINYSERV_REMOTE],
                 env=server.env, check=False)
    shown = describe(result)
    assert result.stderr.strip().splitlines()[-1] == "exit=1", shown
    assert "tinyserv: the backup failed" in result.stderr and "broken pipe" in result.stderr, shown
    assert "Traceback" not in result.stderr, shown


# --- 8: a restore never gives a domain a second app ----------------------------------------------------------------


def test_a_restore_whose_app_claims_a_domain_another_app_holds_here_is_refused_and_changes_nothing(server, tmp_path):
    app = server.new_app(tmp_path, node_app("from the archive"), prefix="dom")
    server.push(app)
    server.tinyserv("domains:add", "shop.test", cwd=app.path)
    archive = str(tmp_path / "server.tar.gz")
    server.remote("backup", archive)
    with local_server(tmp_path / "second" / "root") as second:
        holder = second.new_app(tmp_path / "second", node_app("already here"), prefix="holder")
        second.tinyserv("domains:add", "shop.test", cwd=holder.path)
        before = second.snapshot()
        refused = second.remote("restore", archive, check=False)
        assert_one_line(refused, "shop.test", holder.name, app.name, "nothing was changed")
        assert second.snapshot() == before
        assert not os.path.exists(os.path.join(second.root, "apps", app.name))


# --- 9: every file tinyserv reads from the user is a regular file, read up to a stated limit -----------------------

MEMORY_CAP = "ulimit -v 1000000"  # 1 GB of address space: on a tinyserv that reads /dev/zero whole, a MemoryError
#                                   instead of the machine's OOM killer


@pytest.fixture(scope="module")
def created(module_server, tmp_path_factory):
    """An app (not deployed: every read below is refused before anything travels) and a 2 MiB file."""
    base = tmp_path_factory.mktemp("files")
    app = module_server.new_app(base, node_app("x"), prefix="files")
    big = base / "big.env"
    big.write_text("A=%s\n" % ("x" * 2 * 1024 * 1024))
    return module_server, app, str(big)


FILE_CASES = [
    # (id, words after tinyserv or tinyserv-remote, words the one line must hold)
    ("config:push -e /dev/zero", ["config:push", "-e", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("config:pull -e /dev/zero", ["config:pull", "-e", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("config:push -e a 2 MiB file", ["config:push", "-e", "{big}"], ["larger than 1 MiB"]),
    ("config:pull -e a 2 MiB file", ["config:pull", "-e", "{big}"], ["larger than 1 MiB"]),
    ("config:push -e a directory", ["config:push", "-e", "/"], ["not a regular file"]),
    ("keys:add NAME /dev/zero", ["keys:add", "ci", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("certs:add /dev/zero /dev/zero", ["certs:add", "/dev/zero", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("local -e /dev/zero", ["local", "-e", "/dev/zero"], ["/dev/zero", "not a regular file"]),
    ("local -f /dev/zero", ["local", "-f", "/dev/zero"], ["/dev/zero", "not a regular file"]),
]

STDIN_CASES = [
    ("config:set < /dev/zero", ["config:set", "{app}"]),
    ("keys:add NAME < /dev/zero", ["keys:add", "ci"]),
    ("certs:add < /dev/zero", ["certs:add", "{app}"]),
]


@pytest.mark.parametrize("args, words", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_a_file_that_is_not_regular_or_too_large_is_refused_in_one_line(created, args, words):
    server, app, big = created
    before = server.snapshot()
    argv = [a.format(big=big) for a in args]
    result = run(["bash", "-c", MEMORY_CAP + ' && exec "$@"', "-", TINYSERV, *argv, "-a", app.name]
                 if argv[0] not in ("keys:add", "local") else
                 ["bash", "-c", MEMORY_CAP + ' && exec "$@"', "-", TINYSERV, *argv], cwd=app.path, env=server.env,
                 check=False, timeout=60)
    assert_one_line(result, *words)
    assert server.snapshot() == before


@pytest.mark.parametrize("args", [c[1] for c in STDIN_CASES], ids=[c[0] for c in STDIN_CASES])
def test_endless_standard_input_to_tinyserv_remote_is_refused_in_one_line(created, args):
    server, app, _ = created
    before = server.snapshot()
    result = run(["bash", "-c", MEMORY_CAP + ' && exec "$@" < /dev/zero', "-", TINYSERV_REMOTE,
                  *[a.format(app=app.name) for a in args]], env=server.env, check=False, timeout=60)
    assert_one_line(result, "standard input is larger than 1 MiB")
    assert server.snapshot() == before


# --- 11: a destroyed app's push, and JSON nested 100,000 deep: one line each --------------------------------------


@pytest.mark.parametrize("phase, files", [
    ("Running build script", {"package.json": json.dumps({"name": "a", "version": "1.0.0", "private": True,
                                                          "scripts": {"build": "echo at-$((40+2)); sleep 30"}})}),
    ("Running release command", {"Procfile": "web: node server.js\nrelease: echo at-$((40+2)); sleep 30\n"}),
    ("Checking that web boots", {"Procfile": "web: sleep 30; node server.js\n"}),
], ids=["during the build", "during the release command", "during the boot check"])
def test_apps_destroy_during_a_push_ends_the_push_with_one_line_saying_so(server, tmp_path, phase, files):
    app = server.new_app(tmp_path, node_app("x", extra=files), prefix="gone")
    push = Running(["git", "push", "tinyserv", "main"], cwd=app.path, env=server.env)
    push.wait_for(phase)
    if "web: sleep" not in files.get("Procfile", ""):
        push.wait_for("at-42")  # its command runs: echo said so
    server.tinyserv("apps:destroy", "--confirm", app.name, cwd=app.path)
    code = push.finish()
    assert code != 0, push.output
    assert "Traceback" not in push.output and "unexpected error" not in push.output, push.output
    assert "Push rejected: %s was destroyed during this push (apps:destroy): nothing was deployed" % app.name \
        in push.output, push.output
    assert app.name not in server.tinyserv("apps").stdout


@pytest.mark.parametrize("name, text", [
    ("app.json", "[" * 100000 + "]" * 100000),
    ("package.json", '{"a":' * 100000 + "1" + "}" * 100000),
], ids=["app.json", "package.json"])
def test_a_push_with_json_nested_100000_deep_is_rejected_in_one_line(server, tmp_path, name, text):
    app = server.new_app(tmp_path, node_app("x", extra={name: text}), prefix="deep")
    pushed = server.push(app, check=False)
    shown = describe(pushed)
    assert pushed.returncode != 0, shown
    assert "Traceback" not in pushed.stderr and "unexpected error" not in pushed.stderr, shown
    assert "Push rejected: %s nests too deeply to be read" % name in pushed.stderr, shown


# --- 15: a push from a shallow clone is refused before it is built ------------------------------------------------


def test_a_push_from_a_shallow_clone_is_refused_in_one_line_before_anything_is_built(server, tmp_path):
    app = server.new_app(tmp_path, node_app("one"), prefix="shallow")
    server.commit(app, node_app("two"))
    clone = str(tmp_path / "clone")
    run(["git", "clone", "-q", "--depth", "1", "file://" + app.path, clone])
    before = server.releases(app)
    pushed = server.git("push", os.path.join(server.root, "repos", app.name + ".git"), "main", cwd=clone, check=False)
    shown = describe(pushed)
    assert pushed.returncode != 0, shown
    assert "Building" not in pushed.stderr and "Released" not in pushed.stderr, shown
    assert "Push rejected: " in pushed.stderr and "shallow clone" in pushed.stderr, shown
    assert server.releases(app) == before
    assert not os.listdir(os.path.join(server.root, "apps", app.name, "builds"))


# --- 16: the small ones ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "{}"], ids=["empty", "an empty object"])
def test_an_app_whose_formation_json_is_damaged_is_broken_in_apps_not_up(server, tmp_path, content):
    app = server.new_app(tmp_path, node_app("x"), prefix="form")
    server.push(app)
    with open(os.path.join(server.root, "apps", app.name, "formation.json"), "w") as f:
        f.write(content)
    listed = {a["name"]: a for a in json.loads(server.tinyserv("apps", "--json").stdout)}
    assert listed[app.name]["state"] == "broken" and "formation.json is damaged" in listed[app.name]["error"]
    shown = server.tinyserv("apps")
    assert "broken: " in shown.stdout and "formation.json" in shown.stdout, describe(shown)


def test_maintenance_prints_json_with_json(server, tmp_path):
    app = server.new_app(tmp_path, node_app("x"), prefix="mnt")
    assert json.loads(server.tinyserv("maintenance", "--json", cwd=app.path).stdout) == {"maintenance": False}
    server.tinyserv("maintenance:on", cwd=app.path)
    assert json.loads(server.tinyserv("maintenance", "--json", cwd=app.path).stdout) == {"maintenance": True}
    assert server.tinyserv("maintenance", cwd=app.path).stdout == "on\n"


def test_apps_destroy_of_an_app_whose_data_directory_is_a_symlink_says_the_data_is_kept(server, tmp_path):
    app = server.new_app(tmp_path, node_app("x"), prefix="link")
    elsewhere = tmp_path / "big-disk"
    elsewhere.mkdir()
    (elsewhere / "photos").write_bytes(b"x" * 5000)
    data = os.path.join(server.root, "apps", app.name, "data")
    os.rmdir(data)
    os.symlink(elsewhere, data)
    out = server.tinyserv("apps:destroy", "--confirm", app.name, cwd=app.path).stdout
    assert "Destroying ⬢ %s... done: the link to its data directory (%s is kept) deleted" % (
        app.name, elsewhere) in out, out
    assert "4.9 KB" not in out and (elsewhere / "photos").stat().st_size == 5000
