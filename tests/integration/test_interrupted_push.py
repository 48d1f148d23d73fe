"""A push is a transaction: interrupted at any point, git, the ref, `releases` and what serves agree afterwards.

Each case pushes v2 of an app serving v1 and interrupts the push when a given line appears in its output: during
the build, during the boot check, during the switch, or just after "Released". The interruption is what users do or
suffer: Ctrl-C (SIGINT to the push's process group), a hang-up (SIGHUP), the hook's output reader going away
(git-receive-pack killed, as a dropped ssh session does), `git push` killed, or the hook itself killed. Afterwards the app serves exactly the release that
`releases` calls current, whose commit is where the branch points, and nothing the push started is left running.
"""

import os
import signal
import time

import pytest

from localserver import environ_of, live_pids
from support import http_get, node_app, Running, wait_until

SLOW_BUILD = "slow build: started"
DELAY_WEB = (
    'const http = require("http");\n'
    'const message = require("fs").readFileSync("message.txt", "utf8");\n'
    'const delay = Number(require("fs").readFileSync("delay.txt", "utf8"));\n'
    'setTimeout(() => http.createServer((req, res) => res.end(message)).listen(process.env.PORT), delay);\n')


def version(message, delay_ms=0, build_script=None):
    """An app whose web answers message after waiting delay_ms to listen; build_script runs at build time."""
    files = node_app(message)
    files.update({"server.js": DELAY_WEB, "message.txt": message, "delay.txt": str(delay_ms)})
    if build_script:
        files["package.json"] = ('{"name": "t", "version": "1.0.0", "private": true, '
                                 '"scripts": {"build": "node build.js"}}')
        files["build.js"] = build_script
    return files


# A build that would take ten minutes, printing progress as it goes.
SLOW_BUILD_JS = f'console.log("{SLOW_BUILD}"); setInterval(() => console.log("still building"), 200);\n'


class PushInProgress(Running):
    """`git push tinyserv main` running, to be interrupted in the middle."""

    def __init__(self, server, app):
        super().__init__(["git", "push", "tinyserv", "main"], cwd=app.path, env=server.env)
        self.app = app

    def interrupt(self, how):
        if how == "ctrl-c":
            self.signal_group(signal.SIGINT)
        elif how == "hang-up":
            self.signal_group(signal.SIGHUP)
        elif how == "receiver-killed":  # what a dropped ssh session does: the hook's reader goes away
            os.kill(parent_of(hook_pid(self.app.name)), signal.SIGKILL)
        elif how == "client-killed":
            os.kill(self.proc.pid, signal.SIGKILL)
        elif how == "hook-killed":
            os.kill(hook_pid(self.app.name), signal.SIGKILL)
        else:
            raise ValueError(how)


def hook_pid(app):
    """The pre-receive hook's process: `tinyserv-remote hook APP` in the push's session (the deployer,
    forked from it with the same command line, has a session of its own)."""
    for pid in live_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                session = int(f.read().rsplit(")", 1)[1].split()[4])
        except OSError:
            continue
        if b"hook" in words and app.encode() in words and session != pid:
            return pid
    raise AssertionError(f"no hook process of {app}")


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def branch_tip(server, app):
    repo = os.path.join(server.root, "repos", app.name + ".git")
    return server.git("--git-dir", repo, "rev-parse", "-q", "--verify", "refs/heads/main", cwd=server.root,
                      check=False).stdout.strip()


def leftovers(app):
    """Live processes a build, a release command or a trial boot of app started."""
    found = []
    for pid in live_pids():
        for item in environ_of(pid):
            if item.startswith(b"TINYSERV_INSTANCE=") and f":{app.name}:".encode() in item and (
                    b":build." in item or b":trial." in item or b":release." in item):
                found.append(pid)
    return found


def push_processes(server, app):
    """The server's side of a push of app that still runs: git-receive-pack, the hook, the deployer."""
    repo = os.path.join(server.root, "repos", app.name + ".git").encode()
    found = []
    for pid in live_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                words = f.read().split(b"\0")
        except OSError:
            continue
        if (b"hook" in words and app.name.encode() in words) or (
                any(w.endswith(b"receive-pack") for w in words) and any(w.rstrip(b"/") == repo for w in words)):
            found.append(pid)
    return found


def assert_agreement(server, app, messages, push_code, push_output):
    """git, the ref, releases and what serves agree, and nothing of the push is left running."""
    __tracebackhide__ = True
    context = f"git push exited {push_code}:\n{push_output}"
    # With only its client gone, a push may still go on (and succeed) on the server: wait until it is over.
    wait_until(lambda: not push_processes(server, app), 120, message=f"the push to end on the server\n{context}")
    server.wait_settled(app)
    tip = branch_tip(server, app)
    current = server.releases(app)[0]
    assert current["commit"] == tip, f"releases says {current}, the branch is at {tip}\n{context}"
    if push_code == 0 and "main -> main" in push_output:
        assert messages[tip].startswith("v2"), f"git said the push went through but {tip} is not v2\n{context}"
    url = server.url(app)
    answer = wait_until(lambda: http_get(url), 30, message=f"{url} to answer\n{context}")
    for _ in range(3):
        assert answer == (200, messages[tip]), f"{url} answered {answer}, expected {messages[tip]}\n{context}"
        answer = http_get(url)
    build = os.path.join(server.root, "apps", app.name, "builds", current["build"])
    assert os.path.isdir(build), f"the current release's build {build} is gone\n{context}"
    assert wait_until(lambda: not leftovers(app), 10, message="the push's processes to end") is True


def deploy_v1(server, tmp_path):
    app = server.new_app(tmp_path, version("v1 serving"), prefix="tx")
    server.push(app)
    v1 = branch_tip(server, app)
    return app, v1


CASES = [
    # (when the interruption comes, how, what v2 looks like)
    ("during the build", "ctrl-c", dict(build_script=SLOW_BUILD_JS)),
    ("during the build", "receiver-killed", dict(build_script=SLOW_BUILD_JS)),
    ("during the build", "hook-killed", dict(build_script=SLOW_BUILD_JS)),
    ("during the boot check", "ctrl-c", dict(delay_ms=2500)),
    ("during the boot check", "client-killed", dict(delay_ms=2500)),
    ("during the switch", "ctrl-c", dict(delay_ms=1500)),
    ("during the switch", "hang-up", dict(delay_ms=1500)),
    ("during the switch", "receiver-killed", dict(delay_ms=1500)),
    ("during the switch", "client-killed", dict(delay_ms=1500)),
    ("during the switch", "hook-killed", dict(delay_ms=1500)),
    ("just after Released", "ctrl-c", dict()),
    ("just after Released", "client-killed", dict()),
]
WAIT_FOR = {"during the build": SLOW_BUILD, "during the boot check": "Checking that web boots",
            "during the switch": "Launching web", "just after Released": "Released v"}


@pytest.mark.parametrize("when, how, v2", CASES, ids=[f"{c[1]} {c[0]}" for c in CASES])
def test_an_interrupted_push_leaves_git_the_ref_releases_and_what_serves_in_agreement(
        module_server, tmp_path, when, how, v2):
    server = module_server
    app, v1 = deploy_v1(server, tmp_path)
    commit = server.commit(app, version("v2 serving", **v2))
    push = PushInProgress(server, app)
    push.wait_for(WAIT_FOR[when])
    push.interrupt(how)
    code = push.finish()
    assert_agreement(server, app, {v1: "v1 serving", commit: "v2 serving"}, code, push.output)
    if when != "just after Released" and how != "client-killed":
        assert branch_tip(server, app) == v1, f"the push was interrupted before its verdict:\n{push.output}"
    # The deploy lock is free again: the next push deploys at once.
    server.commit(app, version("v2 serving"))
    again = server.push(app)
    assert "Waiting for another deploy" not in again.stdout + again.stderr, again.stderr
    assert http_get(server.url(app)) == (200, "v2 serving")


def test_a_build_over_its_time_limit_is_stopped_with_its_processes_and_the_next_push_does_not_wait(
        module_server, tmp_path):
    server = module_server
    app, v1 = deploy_v1(server, tmp_path)
    server.tinyserv("config:set", "TINYSERV_BUILD_TIMEOUT=2", cwd=app.path)
    server.commit(app, version("v2 serving", build_script=SLOW_BUILD_JS))
    started = time.monotonic()
    result = server.push(app, check=False)
    assert result.returncode != 0 and "the build took longer than 2 s (TINYSERV_BUILD_TIMEOUT)" in result.stderr, (
        result.stderr)
    assert time.monotonic() - started < 30, "the time limit did not stop the build"
    assert_agreement(server, app, {v1: "v1 serving"}, result.returncode, result.stderr)
    server.commit(app, version("v2 serving"))
    again = server.push(app)
    assert "Waiting for another deploy" not in again.stderr
    assert http_get(server.url(app)) == (200, "v2 serving")


def test_a_daemon_started_by_the_build_does_not_outlive_it(module_server, tmp_path):
    server = module_server
    app, _ = deploy_v1(server, tmp_path)
    daemon = ('const {spawn} = require("child_process");\n'
              'spawn("sleep", ["600"], {detached: true, stdio: "ignore"}).unref();\n'
              'console.log("left a daemon behind");\n')
    commit = server.commit(app, version("v2 serving", build_script=daemon))
    result = server.push(app)
    assert "left a daemon behind" in result.stderr
    assert branch_tip(server, app) == commit
    assert wait_until(lambda: not leftovers(app), 10, message="the build's daemon to be stopped") is True


def test_a_daemon_started_by_a_web_that_fails_its_boot_check_does_not_outlive_the_push(module_server, tmp_path):
    server = module_server
    app, v1 = deploy_v1(server, tmp_path)
    crashing = ('require("child_process").spawn("sleep", ["600"], {detached: true, stdio: "ignore"}).unref();\n'
                'console.log("left a daemon, now crashing"); process.exit(3);\n')
    files = version("v2 serving")
    files["server.js"] = crashing
    server.commit(app, files)
    result = server.push(app, check=False)
    assert result.returncode != 0 and "web exited with 3 at boot" in result.stderr, result.stderr
    assert "left a daemon, now crashing" in result.stderr
    assert_agreement(server, app, {v1: "v1 serving"}, result.returncode, result.stderr)
