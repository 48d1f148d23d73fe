"""Root mode set up in one command, under real systemd (issue 16): `tinyserv server:install --root root@HOST` on a
stock Debian server without a deploy user, two apps deployed as the deploy user, then the deploy user attacks.

What the deploy user (and so any key that acts as it) tries, and must not get:
  - root running code it wrote: it edits code under its home and plants locks and a pid file in run/, then the
    standby supervisor dies (root kills it, as a crash would) and the root supervisor starts another;
  - root changing owners through its symlink: apps/<new app> planted as a symlink to another app's directory
    before apps:create;
and what must keep working: deploy keys across an upgrade and a prune of old versions, both apps after a
reboot, and server:install as the deploy user refuses in one line. The tests share one server, in order.
"""

import json
import os
import re
import shlex
import shutil

import pytest

from support import describe, make_app, run, wait_for_http, wait_until
from helpers import node_app

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TIMEOUT = 240
APPS = ("ri-one", "ri-two")
EVIDENCE = "/tmp/tinyserv-e2e-ran-as-root"  # what the deploy user's planted code writes when it runs


def version_of(tree):
    """__version__ of the tinyserv tree at `tree`."""
    with open(os.path.join(tree, "lib", "tinyserv", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


VERSION = version_of(REPO)


def client(server, *args, cwd=None, check=True):
    """Run this tree's `tinyserv ARGS` against `server` as the deploy user (its TINYSERV_REMOTE, the test key)."""
    __tracebackhide__ = True
    return run([os.path.join(REPO, "bin", "tinyserv"), *args], cwd=cwd, env=server.env, check=check, timeout=TIMEOUT)


def root(server, command, **kwargs):
    __tracebackhide__ = True
    return server.ssh_as("root", command, **kwargs)


def deploy(server, command, **kwargs):
    __tracebackhide__ = True
    return server.ssh_as("deploy", command, **kwargs)


def install_root(server, tree=REPO):
    """`tinyserv server:install --root root@127.0.0.1:PORT` of the tree at `tree`; the completed process."""
    return run([os.path.join(tree, "bin", "tinyserv"), "server:install", "--root", server.root_remote],
               env=server.env, timeout=TIMEOUT, check=False)


def tree_of(tmp_path_factory, label):
    """A copy of this tree's bin/ and lib/ with another version: a new directory under /opt/tinyserv/versions."""
    tree = tmp_path_factory.mktemp(label)
    for part in ("bin", "lib"):
        shutil.copytree(os.path.join(REPO, part), tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    init = tree / "lib" / "tinyserv" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "%s"' % VERSION, '__version__ = "%s+%s"' % (VERSION, label)))
    assert version_of(str(tree)) == "%s+%s" % (VERSION, label)
    return str(tree)


def standby_pids(server):
    """Pids of the waiting standby supervisors (as root sees them)."""
    out = root(server, "pgrep -f -- '[s]upervise --standby' || true").stdout  # [s]: not this shell itself
    return [int(p) for p in out.split()]


def cmdline(server, pid):
    """(command line, real uid) of pid."""
    return root(server, "tr '\\0' ' ' < /proc/%d/cmdline; echo; awk '/^Uid:/ {print $2}' /proc/%d/status" % (
        pid, pid)).stdout.split("\n")


def port_of(server, name):
    """The app's port, asked through TINYSERV_REMOTE (its repository's remote names the port ssh had before a
    reboot)."""
    return json.loads(client(server, "apps:info", "-a", name, "--json").stdout)["port"]


@pytest.fixture(scope="module")
def rooted(root_server):
    """The systemd server after `server:install --root` (conftest's root_server): root mode, deploy user made,
    unit running."""
    return root_server


@pytest.fixture(scope="module")
def apps(rooted, tmp_path_factory):
    """Two node apps pushed as the deploy user; {name: repository}."""
    repos = {}
    for name in APPS:
        repo = make_app(str(tmp_path_factory.mktemp(name) / name), node_app("hello from %s" % name))
        client(rooted, "apps:create", name, cwd=repo)
        pushed = run(["git", "push", "tinyserv", "main"], cwd=repo, env=rooted.env, timeout=TIMEOUT, check=False)
        assert pushed.returncode == 0, describe(pushed)
        repos[name] = repo
    return repos


def test_the_install_makes_the_deploy_user_with_bash_and_roots_code(rooted):
    out = root(rooted, "getent passwd deploy | cut -d: -f7; stat -c '%U:%G %a' /opt/tinyserv "
                       "/opt/tinyserv/versions \"$(readlink -f /opt/tinyserv/current)\"; "
                       "find \"$(readlink -f /opt/tinyserv/current)\" ! -user root -o -perm /022 ! -type l | head -3")
    shell, *owners = out.stdout.strip().split("\n")
    assert shell == "/bin/bash", describe(out)
    assert owners == ["root:root 755"] * 3, describe(out)  # and find printed nothing: every file root's alone


def test_root_mode_runs_under_systemd_from_roots_code_and_ends_with_doctor(rooted):
    active = root(rooted, "systemctl is-enabled tinyserv; systemctl is-active tinyserv; "
                          "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value tinyserv)/cmdline")
    enabled, state, main = active.stdout.strip().split("\n")
    assert (enabled, state) == ("enabled", "active"), describe(active)
    assert "/opt/tinyserv/current/bin/tinyserv-remote supervise --boot" in main, describe(active)
    assert "=== tinyserv doctor" in rooted.installed.stdout, describe(rooted.installed)


def test_the_deploy_users_path_reaches_roots_code(rooted):
    found = deploy(rooted, "command -v tinyserv-remote")
    assert found.stdout.strip() == "/opt/tinyserv/current/bin/tinyserv-remote", describe(found)


def test_two_apps_deploy_and_serve_each_as_its_own_user(rooted, apps):
    for name, repo in apps.items():
        wait_for_http(rooted.url(port_of(rooted, name)), contains="hello from %s" % name, timeout=60)
        owner = root(rooted, "stat -c %%U /home/deploy/.tinyserv/apps/%s/data" % name)
        assert owner.stdout.strip() == "ts-" + name, describe(owner)


def test_an_app_gets_512_processes_unless_it_sets_tinyserv_nproc(rooted, apps):
    limit = client(rooted, "run", "-a", APPS[0], "grep", "Max processes", "/proc/self/limits")
    assert limit.stdout.split()[2:4] == ["512", "512"], describe(limit)


def test_root_never_runs_code_or_trusts_locks_the_deploy_user_planted(rooted, apps):
    """The deploy user writes a tinyserv-remote of its own where root mode's code used to live, holds the locks
    and writes a pid file in run/; the standby dies and the supervisor starts another: root's code, root's lock."""
    planted = ("import os\nopen(%r, 'a').write('%%d\\n' %% os.geteuid())\n" % EVIDENCE)
    deploy(rooted, "for d in ~/.tinyserv-code/current/bin ~/.tinyserv-code/versions/*/bin; do mkdir -p $d && "
                   "cat > $d/tinyserv-remote; done; chmod 777 %s 2>/dev/null; echo 1 > ~/.tinyserv/run/supervisor.pid; "
                   "for f in standby supervisor; do setsid -f flock ~/.tinyserv/run/$f.lock sleep 600 "
                   "</dev/null >/dev/null 2>&1; done" % os.path.dirname(EVIDENCE), input=planted)
    before = wait_until(lambda: standby_pids(rooted), 30, message="a standby supervisor waiting")
    root(rooted, "kill -9 %s" % " ".join(map(str, before)))  # as a crash would
    after = wait_until(lambda: [p for p in standby_pids(rooted) if p not in before], 30,
                       message="the supervisor to start another standby (the deploy user holds run/'s locks)")
    line, uid = cmdline(rooted, after[0])[:2]
    assert "/opt/tinyserv/" in line and ".tinyserv-code" not in line, line
    assert uid == "0", line  # its real uid: root (it works as the deploy user, and may take root back)
    evidence = root(rooted, "cat %s" % EVIDENCE, check=False)
    assert evidence.returncode != 0, "the deploy user's code ran: %s" % describe(evidence)


def test_a_symlink_planted_at_a_new_apps_directory_is_never_followed_as_root(rooted, apps, tmp_path):
    """apps/ri-evil -> apps/ri-bait before apps:create ri-evil: root must not hand ri-bait's directories to
    ri-evil's user (which would then own ri-bait's data)."""
    client(rooted, "apps:create", "ri-bait", cwd=str(tmp_path))
    deploy(rooted, "ln -s ~/.tinyserv/apps/ri-bait ~/.tinyserv/apps/ri-evil")
    created = client(rooted, "apps:create", "ri-evil", cwd=str(tmp_path), check=False)
    owners = root(rooted, "stat -c '%U:%G %a' /home/deploy/.tinyserv/apps/ri-bait/data "
                          "/home/deploy/.tinyserv/apps/ri-bait/builds")
    assert owners.stdout.split("\n")[:2] == ["ts-ri-bait:deploy 2770", "deploy:ts-ri-bait 750"], \
        "%s\n%s" % (describe(created), describe(owners))


def test_server_install_as_the_deploy_user_refuses_in_one_line(rooted):
    refused = client(rooted, "server:install", rooted.remote, check=False)
    assert refused.returncode == 1, describe(refused)
    assert refused.stderr.strip().count("\n") == 0 and "server:install --root root@" in refused.stderr, \
        describe(refused)


def test_deploy_keys_survive_an_upgrade_and_a_prune(rooted, apps, tmp_path_factory, tmp_path):
    key = tmp_path / "ci"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", str(key)])
    client(rooted, "keys:add", "ci", str(key) + ".pub", "--apps", APPS[0])
    first = root(rooted, "readlink -f /opt/tinyserv/current").stdout.strip()
    upgraded = install_root(rooted, tree_of(tmp_path_factory, "next"))
    assert upgraded.returncode == 0, describe(upgraded)
    now = root(rooted, "readlink -f /opt/tinyserv/current").stdout.strip()
    assert now != first
    root(rooted, "cd /opt/tinyserv/versions && for v in *; do [ \"$PWD/$v\" = %s ] || rm -rf \"$v\"; done" % now)
    env = dict(rooted.env, GIT_SSH_COMMAND=shlex.join(["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes",
                                                       "-o", "StrictHostKeyChecking=no",
                                                       "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]),
               PATH=os.pathsep.join([os.path.join(REPO, "bin"), os.environ["PATH"]]), TINYSERV_SSH_REUSE="0")
    listed = run([os.path.join(REPO, "bin", "tinyserv"), "ps", "-a", APPS[0]], env=env, check=False)
    assert listed.returncode == 0, describe(listed)
    lines = deploy(rooted, "grep -c 'opt/tinyserv/current/bin/tinyserv-remote ssh-serve --key ci' ~/.ssh/authorized_keys")
    assert lines.stdout.strip() == "1", describe(lines)


def test_after_a_reboot_both_apps_come_back_by_themselves(rooted, apps):
    rooted.reboot()
    for name, repo in apps.items():
        wait_for_http(rooted.url(port_of(rooted, name)), contains="hello from %s" % name, timeout=120)
