"""Ordinary faults over real ssh (issue 7): a push interrupted by a dropped connection or Ctrl-C, hostile input.

Apps here are named rel-... (the App helpers of helpers.py) and destroyed at the end of each test.
"""

import json
import os
import signal

import pytest

from support import describe, Running, wait_until
from helpers import ROOT, node_app, package_json

SLOW_BOOT = ("const delay = 1500; setTimeout(() => require('http').createServer((req, res) => res.end(%s))"
             ".listen(process.env.PORT), delay);\n")
SLOW_BUILD = "console.log('slow build: started'); setInterval(() => console.log('still building'), 200);\n"


def descendants(pid):
    """Every process below pid on this machine."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(name))
            except OSError:
                pass
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def push_in_background(app):
    return Running(["git", "push", "tinyserv", "main"], cwd=app.repo, env=app.server.env)


def server_side_of_push(app):
    """The server's processes of a push to app that still run (receive-pack, the hook, the deployer): pid + command."""
    # [k] and [h]: the pattern must not match the command line of the shell that runs pgrep.
    result = app.server.ssh(f"pgrep -a -u deploy -f 'receive-pac[k].*{app.name}.git|[h]ook {app.name}' || true")
    return result.stdout.splitlines()


def marked_leftovers(app):
    """Processes a build, a release command or a trial boot of app started that still run on the server."""
    script = (f"for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null | "
              f"grep -qE '^TINYSERV_INSTANCE=[^:]*:{app.name}:(build|trial|release)\\.' && echo ${{p#/proc/}}; "
              f"done; true")
    return app.server.ssh(script).stdout.split()


def assert_agreement(app, texts, push_code, push_output):
    """Once the push is over on the server: the branch, the current release and what serves are one commit."""
    __tracebackhide__ = True
    context = f"git push exited {push_code}:\n{push_output}"
    try:
        wait_until(lambda: not server_side_of_push(app), 90, message="the push to end on the server")
    except AssertionError as e:
        ps = app.server.ssh("ps -eo pid,ppid,pgid,sid,stat,etime,args --forest").stdout
        raise AssertionError(f"{e}; still running:\n{ps}\n{context}") from None
    pending = f"{ROOT}/apps/{app.name}/pending.json"
    wait_until(lambda: app.server.ssh(f"test -e {pending}", check=False).returncode == 1, 60,
               message=f"{pending} to go away\n{context}")
    main = app.on_disk()["main"]
    current = app.releases()[0]
    assert current["commit"] == main, f"releases says {current}, the branch is at {main}\n{context}"
    app.wait_serving(texts[main])
    assert wait_until(lambda: not marked_leftovers(app), 10, message="the push's processes to end") is True


def test_a_push_whose_ssh_connection_drops_during_the_switch_keeps_the_previous_release(new_app):
    app = new_app("drop", node_app("v1"))
    app.push()
    v1 = app.on_disk()["main"]
    v2 = app.commit({"index.js": SLOW_BOOT % json.dumps("v2")}, "slow to boot")
    push = push_in_background(app)
    push.wait_for("Launching web")
    # Killing git push's ssh is a connection that drops: sshd closes the session on the server.
    ssh = [pid for pid in descendants(push.proc.pid) if command_name(pid) == "ssh"]
    assert ssh, f"no ssh under git push (pid {push.proc.pid})\n{push.output}"
    for pid in ssh:
        os.kill(pid, signal.SIGKILL)
    code = push.finish()
    assert code != 0, push.output
    assert_agreement(app, {v1: "v1", v2: "v2"}, code, push.output)
    assert app.on_disk()["main"] == v1, "the push never got its verdict through: it must be undone"


def test_ctrl_c_during_a_build_over_ssh_stops_the_build_and_the_next_push_does_not_wait(new_app):
    app = new_app("ctrlc", node_app("v1"))
    app.push()
    v1 = app.on_disk()["main"]
    app.commit({"package.json": json.dumps({"name": "t", "version": "1.0.0", "scripts": {"build": "node b.js"}}),
                "b.js": SLOW_BUILD}, "a build that never ends")
    push = push_in_background(app)
    push.wait_for("slow build: started")
    push.signal_group(signal.SIGINT)
    code = push.finish()
    assert code != 0, push.output
    assert_agreement(app, {v1: "v1"}, code, push.output)
    app.commit({"package.json": package_json(), "b.js": "", "index.js": node_index_text("v2")}, "v2")
    result = app.push()
    assert "Waiting for another deploy" not in result.stderr, describe(result)
    app.wait_serving("v2")


def node_index_text(text):
    return node_app(text)["index.js"]


@pytest.mark.parametrize("stdin, words", [
    ('{"pairs": ["A=x\\u0000y"]}', "NUL byte"),
    ('{"pairs": ["A=%s"]}' % ("x" * 100000), "32 KiB"),
    ('{"pairs": ["PORT=1"]}', "set by tinyserv"),
    ('{"pairs": ["TINYSERV_BOOT_TIMEOUT=soon"]}', "TINYSERV_BOOT_TIMEOUT"),
    ("[]", "JSON object"),
])
def test_hostile_config_over_ssh_is_refused_in_one_line_and_changes_nothing(new_app, stdin, words):
    app = new_app("json", node_app("v1"))
    app.push()
    before = app.releases()
    result = app.server.ssh(f"tinyserv-remote config:set {app.name}", input=stdin, check=False)
    shown = describe(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr, shown
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr, shown
    assert app.releases() == before
    app.wait_serving("v1")
