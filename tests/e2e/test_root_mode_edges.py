"""Issue 16's items 5, 6 and 8 in root mode, on a server set up by `tinyserv server:install --root` under systemd
(the other items: test_root_install.py, test_root_mode.py, test_root_mode_postgres.py).

  5  a push-only key pushes its app but cannot clone it;
  6  while an app's web restarts after a crash, another app's user binds the port it had: nginx never sends it
     the app's requests, and the app comes back on a port of its own;
  8  escape sequences from a commit, a release command and an app reach the terminal escaped.
"""

import json
import shlex
import subprocess

import pytest

from helpers import REAL_SSH, App, assert_escaped_output, node_app, ssh_options
from support import describe, http_get, make_app, run, wait_until

TIMEOUT = 180

# Run as another app's user (`tinyserv run`): bind PORT as soon as it is free (for up to SECONDS), then answer
# "squatter" to whatever comes until then; says "bound" and, at the end, how many requests it served.
SQUATTER = r"""
import socket, sys, time
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
while True:
    try:
        s.bind(("127.0.0.1", port))
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("never bound %d" % port)
        time.sleep(0.005)
s.listen(64)
s.settimeout(0.1)
print("bound", port, flush=True)
served = 0
while time.monotonic() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nsquatter")
    c.close()
    served += 1
print("served", served, flush=True)
"""


@pytest.fixture(scope="module")
def apps(root_server, tmp_path_factory):
    """Apps re-a and re-b deployed as the deploy user; {short: App}; destroyed after the module."""
    base = tmp_path_factory.mktemp("edges")
    made = {}
    try:
        for short in ("a", "b"):
            app = App(root_server, make_app(base / f"re-{short}", node_app("hello from " + short)), f"re-{short}")
            app.tinyserv("apps:create", app.name)
            made[short] = app
            app.push()
        yield made
    finally:
        for app in made.values():
            app.tinyserv("apps:destroy", "--confirm", app.name, check=False)


def test_a_push_only_key_pushes_but_cannot_clone_in_root_mode(root_server, apps, tmp_path):
    a = apps["a"]
    key = tmp_path / "pusher"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pusher", "-f", str(key)])
    root_server.ssh(f"tinyserv-remote keys:add pusher --apps {a.name} --push-only",
                    input=(tmp_path / "pusher.pub").read_text())
    env = dict(root_server.env, TINYSERV_SSH_REUSE="0",
               GIT_SSH_COMMAND=shlex.join([REAL_SSH] + ssh_options(key)))
    try:
        a.git("commit", "-q", "--allow-empty", "-m", "pushed by the push-only key")
        pushed = run(["git", "push", "tinyserv", "main"], cwd=a.repo, env=env, check=False, timeout=TIMEOUT)
        assert pushed.returncode == 0 and "Released v" in pushed.stderr, describe(pushed)
        url = f"ssh://deploy@127.0.0.1:{root_server.port(22)}{root_server.tinyserv_root}/repos/{a.name}.git"
        cloned = run(["git", "clone", url, str(tmp_path / "copy")], env=env, check=False, timeout=TIMEOUT)
        assert cloned.returncode != 0 and "may not fetch or clone" in cloned.stderr, describe(cloned)
        assert not (tmp_path / "copy" / ".git" / "HEAD").exists(), describe(cloned)
        full = run(["git", "clone", url, str(tmp_path / "full-copy")], env=root_server.env, check=False,
                   timeout=TIMEOUT)
        assert full.returncode == 0, describe(full)  # the same URL, with the deploy user's own key
    finally:
        root_server.ssh("tinyserv-remote keys:remove pusher", check=False)


def web(app):
    """web.1 while it is up: its ps --json entry, or None."""
    ps = json.loads(app.tinyserv("ps", "--json").stdout)
    return next((i for i in ps["instances"] if i["name"] == "web.1" and i["state"] == "up"), None)


def test_a_crashed_webs_port_taken_by_another_apps_user_never_gets_its_requests(root_server, apps):
    a, b = apps["a"], apps["b"]
    url = a.url()
    for _ in range(2):  # the second crash in a row waits 2 s before its restart (backoff): time to squat
        up = wait_until(lambda: web(a), 30, message="re-a's web.1 up")
        killed = root_server.root_host.run("kill -KILL -%d" % up["pid"])
        assert killed.rc == 0, killed.stderr
    internal = up["port"]
    squatting = subprocess.Popen(
        ["tinyserv", "run", "-a", b.name, "python3 -c %s %d 15" % (shlex.quote(SQUATTER), internal)],
        cwd=b.repo, env=dict(b.server.env, TINYSERV_SSH_REUSE="0"), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = squatting.stdout.readline()  # within the squatter's own 15 s
        assert first.strip() == "bound %d" % internal, first + squatting.communicate(timeout=60)[0]
        bodies = []

        def back():  # 20 answers in a row from the app itself, while the squatter holds its old port
            answers = [http_get(url, timeout=2) for _ in range(20)]
            bodies.extend(body for _, body in answers)
            return all(answer == (200, "hello from a") for answer in answers)
        wait_until(back, 30, interval=0.05, message="re-a back on a port of its own")
        came_back = wait_until(lambda: web(a), 10, message="re-a's web.1 up again")
        said, _ = squatting.communicate(timeout=60)
    finally:
        if squatting.poll() is None:
            squatting.kill()
            squatting.communicate()
    assert "squatter" not in bodies and "served 0" in said, (bodies, said)
    assert came_back["port"] != internal, came_back


def test_escape_sequences_arrive_escaped_in_root_mode(root_server, tmp_path):
    assert_escaped_output(root_server, tmp_path, "re-esc")
