"""The cells of docs/installation.md's "Who can do what" table that no other test held (issue 16).

A key limited with --apps or --push-only may push, and a push runs the pushed build (npm runs the package's
`postinstall`): that build is the key's own code. Each build here runs probe.sh, which writes down who it ran as,
whether it could read another app's state under $TINYSERV_ROOT, write into the deploy user's home and use sudo;
the app then serves that record. In single-user mode (the `server` fixture) the answers are yes, yes, no: the
table documents that reality. In root mode (`root_server`) they are its app's user, no, no, no.
"""

import json
import shlex

import pytest

from helpers import REAL_SSH, ssh_options
from support import describe, make_app, run, wait_for_http

TIMEOUT = 180

# Records what the build (running as whoever tinyserv ran it as) may do; the app serves probe.txt.
PROBE = """{
  echo "key: %(key)s"
  echo "user: $(id -un)"
  if other=$(tr '\\n' ' ' 2>/dev/null <%(root)s/apps/%(other)s/history.json); then echo "read: $other"; else echo "read: denied"; fi
  if echo planted > /home/deploy/planted-by-%(key)s 2>/dev/null; then echo "deploy home: written"
  else echo "deploy home: denied"; fi
  if sudo -n true 2>/dev/null; then echo "sudo: yes"; else echo "sudo: no"; fi
} > probe.txt
"""

SERVE_PROBE = ("require('http').createServer((q, r) => r.end(require('fs').readFileSync(__dirname + '/probe.txt')))"
               ".listen(process.env.PORT);\n")


def probing_files(key, other, root):
    # The description changes package.json with each key, so the push reinstalls (and runs postinstall) rather
    # than reuse the dependencies of the push before.
    package = {"name": "who", "version": "1.0.0", "private": True, "description": f"probe as {key} of {other}",
               "scripts": {"postinstall": "sh probe.sh"}}
    return {"package.json": json.dumps(package) + "\n", "Procfile": "web: node index.js\n",
            "index.js": SERVE_PROBE, "probe.sh": PROBE % {"key": key, "root": root, "other": other}}


def commit(repo, files):
    for name, text in files.items():
        (repo / name).write_text(text)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", "probe as another key"], cwd=repo)


def make_keyed(server, base, prefix):
    """Apps PREFIX-one (pushed by the limited keys) and PREFIX-two (deployed, SECRET set); keys ci and pusher."""
    one, two = prefix + "-one", prefix + "-two"
    repos = {}
    for name in (one, two):
        other = one if name == two else two
        repos[name] = make_app(base / name, probing_files("full", other, server.tinyserv_root))
        run(["tinyserv", "apps:create", name], cwd=repos[name], env=server.env, timeout=TIMEOUT)
    run(["git", "push", "tinyserv", "main"], cwd=repos[two], env=server.env, timeout=TIMEOUT)
    run(["tinyserv", "config:set", "SECRET=secret-of-two"], cwd=repos[two], env=server.env, timeout=TIMEOUT)
    keys = {}
    for key, limits in (("ci", f"--apps {one}"), ("pusher", f"--apps {one} --push-only")):
        path = base / key
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", str(path)])
        server.ssh(f"tinyserv-remote keys:add {key} {limits}", input=(base / (key + ".pub")).read_text())
        env = dict(server.env, TINYSERV_SSH_REUSE="0")
        env["GIT_SSH_COMMAND"] = shlex.join([REAL_SSH] + ssh_options(path))
        keys[key] = env
    keys["full"] = server.env  # the test run's own key: a plain line of authorized_keys
    return {"server": server, "one": one, "two": two, "repos": repos, "keys": keys}


def destroy(keyed):
    server = keyed["server"]
    for key in keyed["keys"]:
        if key != "full":
            server.ssh(f"tinyserv-remote keys:remove {key}", check=False)
        server.ssh(f"rm -f /home/deploy/planted-by-{key}", check=False)
    for name, repo in keyed["repos"].items():
        run(["tinyserv", "apps:destroy", "--confirm", name], cwd=repo, env=server.env, check=False, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def single(server, tmp_path_factory):
    keyed = make_keyed(server, tmp_path_factory.mktemp("who-single"), "who")
    try:
        yield keyed
    finally:
        destroy(keyed)


@pytest.fixture(scope="module")
def rooted(root_server, tmp_path_factory):
    keyed = make_keyed(root_server, tmp_path_factory.mktemp("who-root"), "wr")
    try:
        yield keyed
    finally:
        destroy(keyed)


def push_probe(keyed, key):
    """Push app one with `key`, its build probing as that key; return the probe's lines, as the app serves them."""
    repo = keyed["repos"][keyed["one"]]
    commit(repo, probing_files(key, keyed["two"], keyed["server"].tinyserv_root))
    pushed = run(["git", "push", "tinyserv", "main"], cwd=repo, env=keyed["keys"][key], check=False,
                 timeout=TIMEOUT)
    assert pushed.returncode == 0 and "Released v" in pushed.stderr, describe(pushed)
    info = json.loads(run(["tinyserv", "apps:info", "--json"], cwd=repo, env=keyed["server"].env).stdout)
    _, body = wait_for_http(keyed["server"].url(info["port"]), contains=f"key: {key}\n", timeout=60)
    return dict(line.split(": ", 1) for line in body.splitlines() if ": " in line)


@pytest.mark.parametrize("key", ["full", "ci", "pusher"])
def test_single_user_a_limited_keys_build_reads_another_app_and_writes_as_the_deploy_user(single, key):
    probe = push_probe(single, key)
    assert probe["user"] == "deploy", probe
    assert "secret-of-two" in probe["read"], probe  # another app's config, from tinyserv's own state
    assert probe["deploy home"] == "written", probe
    planted = single["server"].ssh(f"stat -c %U /home/deploy/planted-by-{key} && cat /home/deploy/planted-by-{key}")
    assert planted.stdout.split() == ["deploy", "planted"], describe(planted)
    assert probe["sudo"] == "no", probe


def test_single_user_nothing_of_tinyservs_runs_as_root_and_the_deploy_user_has_no_sudo(single):
    server = single["server"]
    # PID 1 is the container's init (tini running the test image's entrypoint), standing in for the OS's own.
    processes = [line.split(None, 2)[1:] for line in
                 server.root_host.check_output("ps -eo pid=,user:32=,args=").splitlines()
                 if line.strip() and line.split()[0] != "1"]
    tinyservs = [(user, args) for user, args in processes if "tinyserv" in args]
    assert any(user == "deploy" and "tinyserv-remote" in args for user, args in tinyservs), processes
    assert [(user, args) for user, args in tinyservs if user == "root"] == [], processes
    sudo = server.ssh("sudo -n true", check=False)
    assert sudo.returncode != 0, describe(sudo)  # 127 when sudo is absent, 1 when it asks for a password


@pytest.mark.parametrize("key", ["ci", "pusher"])
def test_root_mode_a_limited_keys_build_runs_as_its_apps_user_and_reaches_nothing_else(rooted, key):
    probe = push_probe(rooted, key)
    assert probe["user"] == "ts-" + rooted["one"], probe
    assert probe["read"] == "denied", probe
    assert probe["deploy home"] == "denied", probe
    assert probe["sudo"] == "no", probe
    absent = rooted["server"].ssh(f"test ! -e /home/deploy/planted-by-{key}", check=False)
    assert absent.returncode == 0, describe(absent)


def test_root_mode_an_app_limited_keys_run_runs_as_its_apps_user(rooted):
    repo = rooted["repos"][rooted["one"]]
    root = rooted["server"].tinyserv_root
    commit(repo, probing_files("ci", rooted["two"], root))  # deployed by this key, whichever tests ran before (the
    pushed = run(["git", "push", "tinyserv", "main"], cwd=repo, env=rooted["keys"]["ci"], check=False,
                 timeout=TIMEOUT)  # probe's page may be an earlier key's: npm reuses the dependencies)
    assert pushed.returncode == 0 and "Released v" in pushed.stderr, describe(pushed)
    ran = run(["tinyserv", "run", "id -un"], cwd=repo, env=rooted["keys"]["ci"], check=False, timeout=TIMEOUT)
    assert ran.returncode == 0 and ran.stdout.strip() == "ts-" + rooted["one"], describe(ran)
    other = run(["tinyserv", "run", "-a", rooted["two"], "id -un"], cwd=repo, env=rooted["keys"]["ci"],
                check=False, timeout=TIMEOUT)
    assert other.returncode != 0 and "which this key may not touch" in other.stderr, describe(other)


def test_root_mode_a_full_key_reads_every_app(rooted):
    repo = rooted["repos"][rooted["one"]]
    ran = run(["tinyserv", "run", "-a", rooted["two"], "echo $SECRET"], cwd=repo, env=rooted["keys"]["full"],
              check=False, timeout=TIMEOUT)
    assert ran.returncode == 0 and ran.stdout.strip() == "secret-of-two", describe(ran)
