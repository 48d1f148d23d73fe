"""The developer's side over real ssh (issue 11): server:install into a bare Debian server, an upgrade while an app
answers, one laptop with two servers, and commands and git push sharing one ssh connection.

The servers here are the two `bare_servers` (no tinyserv on them until a test installs it); the session's `server`
is not used. Apps are named dev-...; the containers go away with the module.
"""

import json
import os
import shutil
import tempfile

import pytest

from support import describe, http_get, make_app, run, wait_until
from helpers import node_app, Poller

PREFIX = "dev-"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE_HOME = "/home/deploy/.tinyserv-code"
TIMEOUT = 180


def version_of(tree):
    """__version__ of the tinyserv tree at `tree`."""
    path = os.path.join(tree, "lib", "tinyserv", "__init__.py")
    namespace = {"__file__": path}
    with open(path) as f:
        exec(f.read(), namespace)
    return namespace["__version__"]


VERSION = version_of(REPO)


def client(server, *args, cwd=None, tree=REPO, env=None, check=True):
    """Run `tinyserv ARGS` of the tree at `tree` against `server` (its TINYSERV_REMOTE, the test key); env's
    values replace the server's (None removes one)."""
    __tracebackhide__ = True
    return run([os.path.join(tree, "bin", "tinyserv"), *args], cwd=cwd, env=environment(server, env),
               check=check, timeout=TIMEOUT)


def environment(server, changes=None):
    """server.env with changes (a value of None removes that variable)."""
    env = dict(server.env, **(changes or {}))
    return {k: v for k, v in env.items() if v is not None}


def install(server, tree=REPO):
    """`tinyserv server:install` of the tree at `tree` into `server`; the completed process."""
    return client(server, "server:install", server.remote, tree=tree)


def deploy(server, directory, name, text):
    """A node app answering `text` on `server`: created from a fresh repository and pushed; its repository."""
    repo = make_app(os.path.join(str(directory), name), node_app(text))
    client(server, "apps:create", name, cwd=repo)
    run(["git", "push", "tinyserv", "main"], cwd=repo, env=server.env, timeout=TIMEOUT)
    return repo


def app_url(server, repo):
    port = json.loads(client(server, "apps:info", "--json", cwd=repo).stdout)["port"]
    return server.url(port)


def web_pid(server, repo):
    instances = json.loads(client(server, "ps", "--json", cwd=repo).stdout)["instances"]
    return [i["pid"] for i in instances if i["name"] == "web.1"][0]


def supervisor(server):
    """(pid, command line) of the server's supervisor."""
    out = server.ssh("pid=$(cat ~/.tinyserv/run/supervisor.pid); echo $pid; tr '\\0' ' ' < /proc/$pid/cmdline").stdout
    pid, cmdline = out.split("\n", 1)
    return int(pid), cmdline.strip()


def connections(server):
    """How many ssh logins the server's sshd has accepted so far (it logs each to the container's output)."""
    return server.logs().count("Accepted publickey for deploy")


@pytest.fixture(scope="module")
def first(bare_servers):
    """bare1 with this version installed by `tinyserv server:install`, and what the install printed."""
    server = bare_servers[0]
    server.installed = install(server)
    return server


@pytest.fixture(scope="module")
def second(bare_servers):
    """bare2, installed as well."""
    server = bare_servers[1]
    server.installed = install(server)
    return server


@pytest.fixture(scope="module")
def newer_tree(tmp_path_factory):
    """A copy of this tree's bin/ and lib/ whose __version__ is newer: the next release, as far as a server can tell."""
    tree = tmp_path_factory.mktemp("newer")
    for part in ("bin", "lib"):
        shutil.copytree(os.path.join(REPO, part), tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    init = tree / "lib" / "tinyserv" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "%s"' % VERSION, '__version__ = "%s+next"' % VERSION))
    assert version_of(str(tree)) == VERSION + "+next"
    return str(tree)


def test_server_install_sets_up_a_bare_server_where_an_app_then_deploys(first, tmp_path):
    out = first.installed.stdout + first.installed.stderr
    assert "-----> Installing tinyserv %s on deploy@127.0.0.1" % VERSION in out, describe(first.installed)
    assert "ok    PATH over ssh" in out and "FAIL" not in out, describe(first.installed)
    home = first.ssh("command -v tinyserv-remote; readlink ~/.tinyserv-code/current; head -1 ~/.bashrc; "
                     "grep -c '>>> tinyserv >>>' ~/.bashrc; ls -a ~/.tinyserv-code/current").stdout.split("\n")
    assert home[0] == CODE_HOME + "/current/bin/tinyserv-remote"
    assert home[1].startswith("versions/%s-" % VERSION)
    assert home[2].startswith("# >>> tinyserv >>>") and home[3] == "1"
    assert sorted(home[4:-1]) == [".", "..", "bin", "lib"]  # bin/ and lib/ only: no clone, no .git
    repo = deploy(first, tmp_path, PREFIX + "first", "deployed on a fresh install")
    wait_until(lambda: http_get(app_url(first, repo)) == (200, "deployed on a fresh install"), 30,
               message="the app to answer")
    versions = client(first, "version", "--json").stdout
    assert json.loads(versions) == {"client": VERSION, "server": VERSION, "server_host": "deploy@127.0.0.1",
                                    "same": True}


def test_installing_a_newer_version_upgrades_the_server_while_the_app_answers_throughout(first, newer_tree,
                                                                                        tmp_path):
    repo = deploy(first, tmp_path, PREFIX + "steady", "steady")
    url = app_url(first, repo)
    pid_before, old_supervisor = web_pid(first, repo), supervisor(first)
    with Poller(url, interval=0.02) as poller:
        upgraded = install(first, tree=newer_tree)
        wait_until(lambda: len(poller.answers) > 10, 10, message="a few more polls after the upgrade")
    out = upgraded.stdout + upgraded.stderr
    assert "-----> Upgrading tinyserv %s+next on deploy@127.0.0.1 (it has %s)" % (VERSION, VERSION) in out, out
    assert "handed over from pid %d" % old_supervisor[0] in out, out
    wrong = [a for a in poller.answers if a != (200, "steady")]
    assert not wrong, f"the app did not answer on every poll during the upgrade: {poller.report()}\n{out}"
    assert web_pid(first, repo) == pid_before  # not restarted
    new_supervisor = supervisor(first)
    assert new_supervisor[0] != old_supervisor[0] and "+next" in new_supervisor[1], (old_supervisor, new_supervisor)
    assert first.ssh("grep -c '>>> tinyserv >>>' ~/.bashrc").stdout.strip() == "1"
    # Both sides of `tinyserv version`: the old client warns, the new one does not.
    old_client = client(first, "version")
    assert old_client.stdout == "tinyserv %s (this machine)\ntinyserv-remote %s+next (deploy@127.0.0.1)\n" % (
        VERSION, VERSION)
    assert "warning: the server has %s+next, this machine %s" % (VERSION, VERSION) in old_client.stderr
    assert client(first, "version", tree=newer_tree).stderr == ""
    # Pushes now run the new version's hook.
    run(["git", "commit", "-q", "--allow-empty", "-m", "again"], cwd=repo)
    pushed = run(["git", "push", "tinyserv", "main"], cwd=repo, env=first.env, timeout=TIMEOUT)
    assert "+next" in first.ssh("cat ~/.tinyserv/repos/%ssteady.git/hooks/pre-receive" % PREFIX).stdout, pushed


def test_commands_reach_the_server_each_apps_git_remote_names(first, second, tmp_path):
    a = make_app(str(tmp_path / "a"), node_app("a"))
    b = make_app(str(tmp_path / "b"), node_app("b"))
    client(first, "apps:create", PREFIX + "on-first", cwd=a)
    client(second, "apps:create", PREFIX + "on-second", cwd=b)
    # TINYSERV_REMOTE names the first server; the app in b lives on the second, and commands there go there.
    client(first, "config:set", "WHERE=second", cwd=b)
    assert json.loads(second.ssh("tinyserv-remote config %son-second </dev/null" % PREFIX).stdout) == {
        "WHERE": "second"}
    assert client(first, "config:get", "WHERE", cwd=b).stdout == "second\n"
    names = [app["name"] for app in json.loads(client(first, "apps", "--json", cwd=b).stdout)]
    assert PREFIX + "on-first" in names and PREFIX + "on-second" not in names  # `apps` lists TINYSERV_REMOTE's
    # -r names another git remote, before or after the command: the app and the server it points at.
    url_b = run(["git", "remote", "get-url", "tinyserv"], cwd=b).stdout.strip()
    run(["git", "remote", "add", "other", url_b], cwd=a)
    assert client(first, "-r", "other", "config:get", "WHERE", cwd=a).stdout == "second\n"
    assert client(first, "config:get", "WHERE", "-r", "other", cwd=a).stdout == "second\n"
    assert json.loads(client(first, "apps:info", "--json", cwd=a).stdout)["name"] == PREFIX + "on-first"


def test_commands_and_git_push_share_one_ssh_connection(first, tmp_path):
    runtime = tempfile.mkdtemp(prefix="ts-", dir="/tmp")  # socket paths must be short
    try:
        env = {"XDG_RUNTIME_DIR": runtime, "GIT_SSH_COMMAND": None}  # git runs `ssh` (the test's wrapper on PATH)
        shared = environment(first, env)
        repo = make_app(str(tmp_path / "shared"), node_app("shared"))
        before = connections(first)
        client(first, "apps:create", PREFIX + "shared", cwd=repo, env=env)
        assert "ControlMaster=auto" in run(["git", "config", "core.sshCommand"], cwd=repo).stdout
        for _ in range(3):
            client(first, "ps", cwd=repo, env=env)
        run(["git", "push", "tinyserv", "main"], cwd=repo, env=shared, timeout=TIMEOUT)
        client(first, "apps:info", cwd=repo, env=env)
        wait_until(lambda: connections(first) >= before + 1, 10, message="sshd to log the login")
        assert connections(first) == before + 1, first.logs()[-2000:]
        client(first, "ps", cwd=repo, env=dict(env, TINYSERV_SSH_REUSE="0"))
        wait_until(lambda: connections(first) == before + 2, 10, message="a second login without sharing")
    finally:
        run(["ssh", "-O", "exit", "-o", "ControlPath=%s/tinyserv-ssh/%%C" % runtime, "-p", str(first.port(22)),
             "deploy@127.0.0.1"], env=first.env, check=False)
        shutil.rmtree(runtime, ignore_errors=True)
