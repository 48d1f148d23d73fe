"""Deploy keys through a real sshd (issue 9): a restricted key pushes and manages its app and nothing else.

The test run's own key stays a plain line of deploy's authorized_keys (full access, as every key has without
keys:add); the keys added here get tinyserv's forced command. Apps are key-... and destroyed at the end.
"""

import json
import shlex

import pytest

from helpers import REAL_SSH, ssh_options
from support import describe, make_app, run, wait_for_http


@pytest.fixture(scope="module")
def keyed(server, tmp_path_factory):
    """Two apps, and three new keys: ci (only app one), pusher (app one, push only), spare (removed by a test)."""
    base = tmp_path_factory.mktemp("keys")
    made = []
    names = {}
    for short in ("one", "two"):
        name = f"key-{short}"
        repo = make_app(base / name, {"package.json": '{"name": "k", "version": "1.0.0"}\n',
                                      "Procfile": "web: node index.js\n",
                                      "index.js": "require('http').createServer((q, r) => r.end(%s))"
                                                  ".listen(process.env.PORT);\n" % json.dumps(short)})
        run(["tinyserv", "apps:create", name], cwd=repo, env=server.env)
        made.append((name, repo))
        names[short] = (name, repo)
    keys = {}
    for key in ("ci", "pusher", "spare"):
        path = base / key
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", str(path)])
        keys[key] = path
    pub = lambda key: (base / (key + ".pub")).read_text()  # noqa: E731
    one = names["one"][0]
    server.ssh(f"tinyserv-remote keys:add ci --apps {one}", input=pub("ci"))
    server.ssh(f"tinyserv-remote keys:add pusher --apps {one} --push-only", input=pub("pusher"))
    server.ssh("tinyserv-remote keys:add spare", input=pub("spare"))
    try:
        yield {"server": server, "one": names["one"], "two": names["two"], "keys": keys}
    finally:
        for key in ("ci", "pusher", "spare"):
            server.ssh(f"tinyserv-remote keys:remove {key}", check=False)
        for name, repo in made:
            run(["tinyserv", "apps:destroy", "--confirm", name], cwd=repo, env=server.env, check=False)


def env_with(keyed, key):
    """The client's environment with ssh (and so git and tinyserv) logging in with `key`."""
    server = keyed["server"]
    env = dict(server.env)
    env["GIT_SSH_COMMAND"] = shlex.join([REAL_SSH] + ssh_options(keyed["keys"][key]))
    return env


def ssh_as(keyed, key, *args):
    server = keyed["server"]
    return run([REAL_SSH, *ssh_options(keyed["keys"][key]), "-p", str(server.port(22)), *args, "deploy@127.0.0.1"]
               if not args or args[0].startswith("-") else
               [REAL_SSH, *ssh_options(keyed["keys"][key]), "-p", str(server.port(22)), "deploy@127.0.0.1", *args],
               check=False, timeout=30)


def test_a_restricted_key_pushes_and_manages_its_own_app(keyed):
    name, repo = keyed["one"]
    env = env_with(keyed, "ci")
    pushed = run(["git", "push", "tinyserv", "main"], cwd=repo, env=env)
    assert "Released v" in pushed.stderr, describe(pushed)
    info = json.loads(run(["tinyserv", "apps:info", "--json"], cwd=repo, env=env).stdout)
    wait_for_http(keyed["server"].url(info["port"]), contains="one", timeout=30)
    run(["tinyserv", "config:set", "GREETING=hi"], cwd=repo, env=env)
    ran = run(["tinyserv", "run", "echo $GREETING"], cwd=repo, env=env)
    assert ran.stdout.strip() == "hi", describe(ran)
    listed = json.loads(run(["tinyserv", "apps", "--json"], cwd=repo, env=env).stdout)
    assert [a["name"] for a in listed] == [name]


@pytest.mark.parametrize("key, args, says", [
    ("ci", [], "no shell here"),
    ("ci", ["id"], "'id' is not one of them"),
    ("ci", ["sh", "-c", "id"], "'sh' is not one of them"),
    ("ci", ["tinyserv-remote hook key-one"], "'hook' is not a client command"),
    ("ci", ["tinyserv-remote ps key-two"], "which this key may not touch"),
    ("ci", ["tinyserv-remote keys"], "needs a key that is not limited"),
    ("pusher", ["tinyserv-remote run -- key-one id"], "--push-only"),
    ("pusher", ["tinyserv-remote ps key-one"], "--push-only"),
])
def test_a_restricted_key_gets_one_line_for_anything_else(keyed, key, args, says):
    result = ssh_as(keyed, key, *args)
    assert result.returncode == 1 and says in result.stderr and "Traceback" not in result.stderr, describe(result)
    assert result.stdout == "", describe(result)


def test_a_restricted_key_cannot_push_to_another_app_or_forward_ports(keyed):
    _, repo = keyed["one"]
    two = keyed["two"][0]
    url = f"ssh://deploy@127.0.0.1:{keyed['server'].port(22)}/home/deploy/tinyserv/repos/{two}.git"
    refused = run(["git", "push", url, "main"], cwd=repo, env=env_with(keyed, "ci"), check=False)
    assert refused.returncode != 0 and "which this key may not touch" in refused.stderr, describe(refused)
    server = keyed["server"]
    # The server allows forwarding (the run's own key, a line tinyserv did not write, gets sshd's banner) ...
    full = run([REAL_SSH, *ssh_options(server.key), "-p", str(server.port(22)), "-W", "127.0.0.1:22",
                "deploy@127.0.0.1"], input="", check=False, timeout=30)
    assert full.stdout.startswith("SSH-2.0-"), describe(full)
    # ... but not for a deploy key: `restrict`.
    forwarded = ssh_as(keyed, "ci", "-W", "127.0.0.1:22")
    assert forwarded.returncode == 255 and "forwarding failed" in forwarded.stderr, describe(forwarded)
    assert not forwarded.stdout.startswith("SSH-2.0-"), describe(forwarded)


def test_a_push_only_key_pushes(keyed):
    _, repo = keyed["one"]
    run(["git", "commit", "-q", "--allow-empty", "-m", "again"], cwd=repo)
    pushed = run(["git", "push", "tinyserv", "main"], cwd=repo, env=env_with(keyed, "pusher"))
    assert "Released v" in pushed.stderr, describe(pushed)


def test_a_push_only_key_cannot_clone_its_app(keyed, tmp_path):
    name = keyed["one"][0]
    url = f"ssh://deploy@127.0.0.1:{keyed['server'].port(22)}/home/deploy/tinyserv/repos/{name}.git"
    cloned = run(["git", "clone", url, str(tmp_path / "copy")], env=env_with(keyed, "pusher"), check=False)
    assert cloned.returncode != 0 and "may not fetch or clone" in cloned.stderr, describe(cloned)
    assert "Traceback" not in cloned.stderr and not (tmp_path / "copy" / ".git" / "HEAD").exists(), describe(cloned)
    fetched = run(["git", "clone", url, str(tmp_path / "ci-copy")], env=env_with(keyed, "ci"), check=False)
    assert fetched.returncode == 0, describe(fetched)  # an app-limited key may still fetch its app


def test_a_full_key_manages_keys_and_a_removed_key_is_locked_out(keyed):
    listed = json.loads(ssh_as(keyed, "spare", "tinyserv-remote keys").stdout)
    assert {k["name"] for k in listed} == {"ci", "pusher", "spare"}
    ps = ssh_as(keyed, "spare", "tinyserv-remote ps key-two")
    assert ps.returncode == 0, describe(ps)
    keyed["server"].ssh("tinyserv-remote keys:remove spare")
    locked = ssh_as(keyed, "spare", "tinyserv-remote ps key-two")
    assert locked.returncode == 255 and "Permission denied" in locked.stderr, describe(locked)
    assert keyed["server"].ssh("true").returncode == 0, "the test's own key (a line tinyserv did not write) works"
