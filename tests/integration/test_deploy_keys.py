"""Deploy keys: authorized_keys lines with a forced command, and the door (ssh-serve) that lets through only
pushes and the client's own commands, on the apps a key may touch.

Here sshd's part is played by running `tinyserv-remote ssh-serve --key NAME` with SSH_ORIGINAL_COMMAND set,
as the forced command makes sshd do; tests/e2e/test_deploy_keys.py goes through a real sshd.
"""

import json
import os
import subprocess
import types

import pytest

from localserver import TINYSERV_REMOTE
from support import describe, node_app, run

KEYGEN = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]


def public_key(tmp_path, name):
    path = tmp_path / name
    run([*KEYGEN, "-C", f"{name}@laptop", "-f", str(path)])
    return (tmp_path / (name + ".pub")).read_text()


@pytest.fixture(scope="module")
def door(module_server, tmp_path_factory):
    """Two deployed apps; an authorized_keys with one line of the user's own; keys: full, shop-only, push-only."""
    base = tmp_path_factory.mktemp("keys")
    server = module_server
    authorized = base / "authorized_keys"
    authorized.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnLine+Of+the+users+own+key me@home\n")
    server.env["TINYSERV_AUTHORIZED_KEYS"] = str(authorized)
    shop = server.new_app(base, node_app("shop"), prefix="shop")
    blog = server.new_app(base, node_app("blog"), prefix="blog")
    for app in (shop, blog):
        server.push(app)
    keys = {"admin": public_key(base, "admin"), "ci": public_key(base, "ci"), "pusher": public_key(base, "pusher")}
    remote(server, "keys:add", "admin", stdin=keys["admin"])
    remote(server, "keys:add", "ci", "--apps", shop.name, stdin=keys["ci"])
    remote(server, "keys:add", "pusher", "--apps", shop.name, "--push-only", stdin=keys["pusher"])
    return types.SimpleNamespace(server=server, shop=shop, blog=blog, keys=keys, authorized=authorized, base=base)


def remote(server, *args, stdin="", check=True, env=None):
    return run([TINYSERV_REMOTE, *args], env=env or server.env, input=stdin, check=check)


def serve(door, key, original, stdin=""):
    """What sshd does for a key with a forced command: run it with the client's command in SSH_ORIGINAL_COMMAND."""
    env = dict(door.server.env, SSH_ORIGINAL_COMMAND=original)
    return remote(door.server, "ssh-serve", "--key", key, stdin=stdin, check=False, env=env)


def test_each_key_gets_a_forced_command_line_first_and_the_users_own_line_is_kept(door):
    lines = door.authorized.read_text().splitlines()
    assert len(lines) == 4 and lines[3].endswith("me@home"), lines
    for name, line in zip(["admin", "ci", "pusher"], lines):
        key = door.keys[name].strip()
        assert line.startswith('command="') and line.endswith(" " + key), line
        options = line[:-len(key) - 1]
        assert f'ssh-serve --key {name}",restrict' in options, line
        assert options.endswith(",pty") == (name != "pusher"), line
    assert os.stat(door.authorized).st_mode & 0o777 == 0o600


def test_keys_lists_names_apps_and_fingerprints_without_the_keys(door):
    shown = json.loads(remote(door.server, "keys").stdout)
    assert [(k["name"], k["apps"], k["push_only"], k["full"]) for k in shown] == [
        ("admin", None, False, True), ("ci", [door.shop.name], False, False),
        ("pusher", [door.shop.name], True, False)]
    assert all(k["fingerprint"].startswith("SHA256:") and "key" not in k for k in shown)


def app_arg(door, text):
    return text.format(shop=door.shop.name, blog=door.blog.name, repos=os.path.join(door.server.root, "repos"))


PWNED = "/tmp/tinyserv-door-test-ran-a-command"  # must never exist: the door ran something if it does
HOSTILE = [
    # (key, SSH_ORIGINAL_COMMAND, words the one line must contain)
    ("ci", "", "no shell here"),
    ("ci", "bash", "'bash' is not one of them"),
    ("ci", "sh -c id", "'sh' is not one of them"),
    ("ci", f"touch {PWNED}", "'touch' is not one of them"),
    ("ci", f"tinyserv-remote ps {{shop}}; touch {PWNED}", "unrecognized arguments"),
    ("ci", f"tinyserv-remote ps {{shop}} && touch {PWNED}", "unrecognized arguments"),
    ("ci", f"tinyserv-remote ps {{shop}} | touch {PWNED}", "unrecognized arguments"),
    ("ci", f"tinyserv-remote ps `touch {PWNED}`", "unrecognized arguments"),
    ("ci", f"tinyserv-remote ps $(touch {PWNED})", "unrecognized arguments"),
    ("ci", "tinyserv-remote ps `id`", "not `id`, which this key may not touch"),
    ("admin", "tinyserv-remote ps `id`", "invalid app name '`id`'"),
    ("ci", "tinyserv-remote ps '{shop}'';id", "cannot be split into words"),
    ("ci", "tinyserv-remote ps '{shop};id'", "not {shop};id, which this key may not touch"),
    ("admin", "tinyserv-remote ps '{shop};id'", "invalid app name"),
    ("ci", f"tinyserv-remote ps {{shop}}\ntouch {PWNED}", "one command on one line"),
    ("ci", "tinyserv-remote ps '{shop}", "cannot be split into words"),
    ("ci", "tinyserv-remote hook {shop}", "'hook' is not a client command"),
    ("ci", "tinyserv-remote supervise", "'supervise' is not a client command"),
    ("ci", "tinyserv-remote shutdown", "'shutdown' is not a client command"),
    ("ci", "tinyserv-remote ssh-serve --key admin", "'ssh-serve' is not a client command"),
    ("ci", "tinyserv-remote ps {blog}", "which this key may not touch"),
    ("ci", "tinyserv-remote config:set {blog}", "which this key may not touch"),
    ("ci", "tinyserv-remote apps:create other", "apps:create needs a key that is not limited"),
    ("ci", "tinyserv-remote keys", "keys needs a key that is not limited"),
    ("ci", "tinyserv-remote keys:remove admin", "keys:remove needs a key that is not limited"),
    ("ci", "tinyserv-remote backup -", "backup needs a key that is not limited"),
    ("ci", "tinyserv-remote restore /tmp/x.tar.gz", "'restore' is not a client command"),
    ("ci", "git-receive-pack '{repos}/{blog}.git'", "which this key may not touch"),
    ("ci", "git-receive-pack '{repos}/../{shop}.git'", "is not one of tinyserv's repositories"),
    ("ci", "git-receive-pack '/etc/{shop}.git'", "is not one of tinyserv's repositories"),
    ("ci", "git-receive-pack '{repos}/{shop}'", "is not one of tinyserv's repositories"),
    ("ci", "git-receive-pack '{repos}/nosuchapp.git'", "is not one of tinyserv's repositories"),
    ("ci", "git-upload-pack --upload-pack=touch '{repos}/{shop}.git'", "git may only name the repository"),
    ("ci", "git-upload-pack --strict '{repos}/{shop}.git'", "git may only name the repository"),
    ("ci", "git -c core.sshCommand=touch receive-pack '{repos}/{shop}.git'", "'git' is not one of them"),
    ("ci", "git-receive-pack -c x=y", "git may only name the repository"),
    ("ci", "git-receive-pack --help", "is an option, not a repository"),
    ("pusher", "tinyserv-remote run {shop} -- touch " + PWNED, "--push-only"),
    ("pusher", "tinyserv-remote ps {shop}", "--push-only"),
    ("pusher", "git-upload-pack '{repos}/{shop}.git'", "may not fetch or clone"),
    ("nobody", "tinyserv-remote ps {shop}", "no deploy key named 'nobody'"),
]


@pytest.mark.parametrize("key, original, words", HOSTILE, ids=[f"{c[0]}: {c[1]!r}" for c in HOSTILE])
def test_the_door_refuses_everything_but_pushes_and_client_commands_in_one_line(door, key, original, words):
    before = door.server.snapshot()
    result = serve(door, key, app_arg(door, original))
    shown = describe(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr, shown
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("tinyserv: "), shown
    assert app_arg(door, words) in result.stderr, shown
    assert not os.path.exists(PWNED), "the door ran something"
    assert door.server.snapshot() == before


def test_a_full_key_may_back_up_the_whole_server(door):
    env = dict(door.server.env, SSH_ORIGINAL_COMMAND="tinyserv-remote backup -")
    result = subprocess.run([TINYSERV_REMOTE, "ssh-serve", "--key", "admin"], env=env, capture_output=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0 and result.stdout[:2] == b"\x1f\x8b", result.stderr  # a gzip archive


def test_a_key_runs_client_commands_on_its_own_apps_and_sees_only_them(door):
    ps = serve(door, "ci", f"tinyserv-remote ps {door.shop.name}")
    assert ps.returncode == 0 and json.loads(ps.stdout)["instances"][0]["state"] == "up", describe(ps)
    listed = serve(door, "ci", "tinyserv-remote apps")
    assert [a["name"] for a in json.loads(listed.stdout)] == [door.shop.name], describe(listed)
    assert len(json.loads(serve(door, "admin", "tinyserv-remote apps").stdout)) == 2
    ran = serve(door, "ci", f"tinyserv-remote run -- {door.shop.name} echo hello from run")
    assert ran.stdout == "hello from run\n", describe(ran)


def test_keys_push_through_the_door_and_a_removed_key_is_locked_out(door, tmp_path):
    # git's ssh replaced by the door: GIT_SSH_COMMAND gets (host, command) and runs ssh-serve as sshd would.
    fake_ssh = tmp_path / "door-ssh"
    fake_ssh.write_text(f'#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND="$*" exec {TINYSERV_REMOTE} ssh-serve --key "$KEY"\n')
    fake_ssh.chmod(0o755)
    url = f"door:{door.server.root}/repos/{door.shop.name}.git"
    server = door.server
    server.git("remote", "add", "door", url, cwd=door.shop.path)
    server.commit(door.shop, node_app("shop v2"))
    env = dict(server.env, GIT_SSH_COMMAND=str(fake_ssh), KEY="pusher")
    pushed = run(["git", "push", "door", "main"], cwd=door.shop.path, env=env, check=False)
    assert pushed.returncode == 0 and "Released v" in pushed.stderr, describe(pushed)
    blog_url = f"door:{door.server.root}/repos/{door.blog.name}.git"
    refused = run(["git", "push", blog_url, "main"], cwd=door.shop.path, env=env, check=False)
    assert refused.returncode != 0 and "which this key may not touch" in refused.stderr, describe(refused)

    remote(server, "keys:remove", "pusher")
    assert "ssh-serve --key pusher" not in door.authorized.read_text()
    locked = serve(door, "pusher", f"git-receive-pack '{server.root}/repos/{door.shop.name}.git'")
    assert locked.returncode == 1 and "no deploy key named 'pusher'" in locked.stderr, describe(locked)


BAD_KEYS = [
    ("garbage", "not a key", "not an ssh public key"),
    ("two keys", "{admin}\n{admin}", "exactly one ssh public key"),
    ("options in front", 'command="sh" {admin}', "not an ssh public key"),
    ("damaged base64", "ssh-ed25519 AAAA!!!! me", "not base64"),
    ("a type its data is not", "ssh-rsa {admin_data} me", "not a ssh-rsa key"),
    ("the same key again", "{admin}", "already the deploy key 'admin'"),
]


@pytest.mark.parametrize("text, words", [c[1:] for c in BAD_KEYS], ids=[c[0] for c in BAD_KEYS])
def test_keys_add_refuses_what_is_not_one_new_public_key(door, text, words):
    before, lines = door.server.snapshot(), door.authorized.read_text()
    text = text.format(admin=door.keys["admin"].strip(), admin_data=door.keys["admin"].split()[1])
    result = remote(door.server, "keys:add", "new-key", stdin=text, check=False)
    assert result.returncode == 1 and words in result.stderr and len(result.stderr.splitlines()) == 1, describe(
        result)
    assert door.server.snapshot() == before and door.authorized.read_text() == lines


@pytest.mark.parametrize("name", ["", "-rf", "a b", "a;b", "x" * 65, "ü"])
def test_keys_add_refuses_a_bad_name(door, name):
    result = remote(door.server, "keys:add", "--", name, stdin=door.keys["admin"], check=False)
    assert result.returncode == 1 and "invalid key name" in result.stderr, describe(result)
