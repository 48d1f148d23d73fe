"""deploy.py: the pure parts of a push (hook input, settings, the hook script, formation)."""

import os
import subprocess

import pytest

from tinyserv.state import appstate, store
from tinyserv.deploy import push as deploy
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.state.layout import Layout

OLD = "a" * 40
NEW = "b" * 40


@pytest.mark.parametrize("text, updates", [
    ("", []),
    ("%s %s refs/heads/main\n" % (OLD, NEW), [(OLD, NEW, "refs/heads/main")]),
    ("%s %s refs/heads/main" % (deploy.ZERO, NEW), [(deploy.ZERO, NEW, "refs/heads/main")]),
    ("%s %s refs/heads/a\n%s %s refs/tags/v1\n" % (OLD, NEW, deploy.ZERO, NEW),
     [(OLD, NEW, "refs/heads/a"), (deploy.ZERO, NEW, "refs/tags/v1")]),
    ("\n  \ngarbage\n%s %s\n%s %s refs/heads/main extra\n" % (OLD, NEW, OLD, NEW), []),
    ("%s\t%s  refs/heads/main\r\n" % (OLD, NEW), [(OLD, NEW, "refs/heads/main")]),
])
def test_parse_updates_reads_old_new_ref_lines(text, updates):
    assert deploy.parse_updates(text) == updates


@pytest.mark.parametrize("config, seconds", [
    ({}, 60),
    ({"TINYSERV_BOOT_TIMEOUT": "5"}, 5),
    ({"TINYSERV_BOOT_TIMEOUT": "600"}, 600),
    ({"TINYSERV_BOOT_TIMEOUT": "0"}, 60),
    ({"TINYSERV_BOOT_TIMEOUT": "-5"}, 60),
    ({"TINYSERV_BOOT_TIMEOUT": "1.5"}, 60),
    ({"TINYSERV_BOOT_TIMEOUT": "soon"}, 60),
    ({"TINYSERV_BOOT_TIMEOUT": ""}, 60),
    ({"TINYSERV_BOOT_TIMEOUT": "²"}, 60),
])
def test_boot_timeout_comes_from_the_config_with_a_default(config, seconds):
    assert settings.boot_timeout(config) == seconds


@pytest.mark.parametrize("environ, keep", [
    ({}, 5),
    ({"TINYSERV_KEEP_BUILDS": "2"}, 2),
    ({"TINYSERV_KEEP_BUILDS": "0"}, 5),
    ({"TINYSERV_KEEP_BUILDS": "all"}, 5),
    ({"TINYSERV_KEEP_BUILDS": "²"}, 5),
])
def test_keep_builds_comes_from_the_environment_with_a_default(environ, keep):
    assert settings.keep_builds(environ) == keep


DEPLOYED = "c" * 40


@pytest.mark.parametrize("updates, push", [
    ([], None),
    ([(OLD, NEW, "refs/heads/main")], deploy.Push(OLD, NEW, "refs/heads/main")),
    ([(deploy.ZERO, NEW, "refs/heads/feature")], deploy.Push(deploy.ZERO, NEW, "refs/heads/feature")),
    ([(OLD, deploy.ZERO, "refs/heads/old-branch")], None),  # deleting a branch that is not deployed: fine
])
def test_plan_deploys_one_pushed_branch_and_lets_other_branches_be_deleted(updates, push):
    assert deploy.plan(updates, DEPLOYED) == push


@pytest.mark.parametrize("updates, message", [
    ([(deploy.ZERO, NEW, "refs/tags/v1")], "tinyserv deploys branches, and refs/tags/v1 is not one"),
    ([(OLD, NEW, "refs/heads/main"), (deploy.ZERO, NEW, "refs/tags/v1")], "refs/tags/v1 is not one"),
    ([(OLD, NEW, "refs/notes/commits")], "refs/notes/commits is not one"),
    ([(OLD, NEW, "refs/heads/a"), (OLD, NEW, "refs/heads/b")], "push one branch at a time"),
    ([(DEPLOYED, deploy.ZERO, "refs/heads/main")], "main is what this app runs: deleting it is refused"),
])
def test_plan_refuses_tags_several_branches_and_deleting_the_deployed_branch(updates, message):
    with pytest.raises(TinyservError, match=message.replace("[", r"\[")):
        deploy.plan(updates, DEPLOYED)


@pytest.fixture
def printing_remote(tmp_path):
    """A stand-in for tinyserv-remote that prints $TINYSERV_ROOT and its arguments, NUL-separated."""
    script = tmp_path / "it's a remote"
    script.write_text("printf '%s\\0' \"$TINYSERV_ROOT\" \"$@\"\n")
    return str(script)


@pytest.mark.parametrize("root", [
    "/srv/tinyserv",
    "/home/ann/my tinyserv",
    "/tmp/it's \"quoted\" $HOME `id`",
    "/tmp/new\nline",
])
def test_the_hook_exports_the_exact_root_and_runs_the_remote_hook(tmp_path, printing_remote, root):
    hook = tmp_path / "pre-receive"
    hook.write_text(deploy.hook_script(Layout(root), "myapp", ["/bin/sh"], printing_remote))
    subprocess.run(["sh", "-n", str(hook)], check=True)
    result = subprocess.run(["sh", str(hook)], capture_output=True, check=True, env={"PATH": os.defpath})
    assert result.stdout.decode().split("\0")[:-1] == [root, "hook", "myapp"]


def test_the_hook_starts_with_a_shebang_and_execs():
    script = deploy.hook_script(Layout("/srv/t"), "myapp", ["/usr/bin/python3", "-S"],
                                "/opt/tinyserv/bin/tinyserv-remote")
    assert script.startswith("#!/bin/sh\n")
    assert script.endswith("export TINYSERV_ROOT=/srv/t\nexec /usr/bin/python3 -S /opt/tinyserv/bin/tinyserv-remote "
                           "hook myapp\n")


@pytest.fixture
def app_dir(layout):
    os.makedirs(layout.app_dir("myapp"))
    return layout


def formation(layout):
    return store.read_json(layout.app_file("myapp", "formation.json"))


def test_ensure_formation_gives_every_process_type_one_instance(app_dir):
    appstate.ensure_formation(app_dir, "myapp", {"release": "m", "web": "a", "worker": "b"})
    assert formation(app_dir) == {"quantity": {"web": 1, "worker": 1}, "stopped": []}


def test_ensure_formation_keeps_scaled_counts_and_stopped_types(app_dir):
    store.write_json(app_dir.app_file("myapp", "formation.json"),
                     {"quantity": {"web": 0, "worker": 3}, "stopped": ["worker"]})
    appstate.ensure_formation(app_dir, "myapp", {"web": "a", "worker": "b", "clock": "c"})
    assert formation(app_dir) == {"quantity": {"web": 0, "worker": 3, "clock": 1}, "stopped": ["worker"]}


def test_ensure_formation_is_safe_to_run_twice(app_dir):
    procfile = {"web": "a"}
    appstate.ensure_formation(app_dir, "myapp", procfile)
    appstate.ensure_formation(app_dir, "myapp", procfile)
    assert formation(app_dir) == {"quantity": {"web": 1}, "stopped": []}
    assert os.stat(app_dir.app_file("myapp", "formation.json")).st_mode & 0o777 == 0o644


def test_the_hook_is_woken_by_the_deployer_s_exit_not_by_a_poll_coming_round():
    """After the deployer's output ends (it settled), the hook waits on a pidfd: the push's verdict follows the
    deployer's exit at once instead of up to 0.1 s later (measured: the last 0.1 s of many code-only pushes)."""
    import select

    from tinyserv.platform.procs import exit_fd  # what the hook watches the deployer with
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    watch = exit_fd(pid)
    try:
        assert watch is not None, "this kernel has pidfds (Linux 5.3+)"
        assert select.select([watch], [], [], 0)[0] == []  # still running
        os.close(w)  # let it end
        assert select.select([watch], [], [], 10)[0] == [watch]
    finally:
        os.close(watch)
        os.waitpid(pid, 0)
