"""The developer's side on this machine: tinyserv local, config:pull/push, open, version, doctor, and an upgrade's
supervisor handover (localhost mode: the "server" is this machine, with a temporary root)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from localserver import BIN, REPO, environ_of, live_pids
from support import http_get, make_app, node_app, port_is_free, run, Running, wait_until

TINYSERV = os.path.join(BIN, "tinyserv")


def client_module(name):
    """A module of this checkout's lib/tinyserv (the tests run the real client; some need its parts too)."""
    import importlib
    lib = os.path.join(REPO, "lib")
    if lib not in sys.path:
        sys.path.insert(0, lib)
    return importlib.import_module("tinyserv" if name == "__init__" else "tinyserv." + name)


def free_ports(step=100, count=2):
    """A first port such that it and the next count-1 ports `step` apart are free on every interface."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + step * count < 65000 and all(port_is_free(base + step * i) for i in range(count)):
            return base
    raise AssertionError("no free ports found")


def carrying(token):
    """Live processes whose environment holds TOKEN=token (what tinyserv local gave everything it started)."""
    mark = ("TOKEN=" + token).encode()
    return [pid for pid in live_pids() if mark in environ_of(pid)]


# A .env with what Heroku's format allows: spaces, quotes, # in and after values, export, comments.
DOTENV = """# tinyserv local reads this
GREETING=hello world   # a comment after an unquoted value
export QUOTED="she said \\"hi\\" # not a comment"
SINGLE='it''s $HOME, literally'
HASHED=a#b
MULTI="line one\\nline two"
TOKEN=%s
"""

# web prints its environment as JSON once and then waits; worker ignores SIGTERM and starts a daemon that leaves
# its process group (setsid): Ctrl-C must still end both, the first by SIGKILL, the second by its mark.
LOCAL_PROCFILE = """web: python3 -c 'import json, os, time; print(json.dumps({k: os.environ.get(k) for k in ("PORT", "GREETING", "QUOTED", "SINGLE", "HASHED", "MULTI", "DYNO")}), flush=True); time.sleep(600)'
worker: trap '' TERM; setsid sleep 600 & echo "worker on $PORT"; while true; do sleep 1; done
release: echo never run by tinyserv local
"""


@pytest.fixture
def local_app(tmp_path):
    """A directory with the Procfile and .env above, and the token every process it starts carries."""
    token = uuid.uuid4().hex
    app = tmp_path / "app"
    app.mkdir()
    (app / "Procfile").write_text(LOCAL_PROCFILE)
    (app / ".env").write_text(DOTENV % token)
    yield app, token
    for pid in carrying(token):  # a failed test must not leave its processes behind
        os.kill(pid, signal.SIGKILL)


def test_local_runs_every_process_type_with_the_env_file_and_ctrl_c_leaves_no_process(local_app):
    app, token = local_app
    port = free_ports()
    local = Running([TINYSERV, "local", "-p", str(port), "-t", "1"], cwd=str(app),
                    env=dict(os.environ, PATH=os.pathsep.join([BIN, os.environ["PATH"]]), NO_COLOR="1"))
    local.wait_for("worker.1 | worker on %d" % (port + 100))
    local.wait_for("web.1    | {")
    web_line = next(l for l in local.output.splitlines() if l.startswith("web.1    | {"))
    assert json.loads(web_line.split("| ", 1)[1]) == {
        "PORT": str(port), "GREETING": "hello world", "QUOTED": 'she said "hi" # not a comment',
        "SINGLE": "its $HOME, literally", "HASHED": "a#b", "MULTI": "line one\nline two", "DYNO": "web.1"}
    assert "release" not in local.output
    assert len(carrying(token)) >= 4, local.output  # web's python, worker's sh and its loop, the daemon
    local.signal_group(signal.SIGINT)
    assert local.finish(timeout=30) == 130, local.output
    assert carrying(token) == [], local.output
    assert "system   | stopping web.1, worker.1 (SIGTERM, then SIGKILL after 1 s)" in local.output


def test_local_runs_only_the_named_types_and_stops_everything_when_one_exits(tmp_path):
    token = uuid.uuid4().hex
    app = make_app(str(tmp_path / "app"), {
        "Procfile": "web: sleep 600\nonce: echo done; exit 3\nworker: sleep 600\n", ".env": "TOKEN=%s\n" % token})
    result = run([TINYSERV, "local", "once", "web", "-p", str(free_ports())], cwd=app,
                 env=dict(os.environ, NO_COLOR="1"), check=False, timeout=60)
    assert result.returncode == 3, result.stdout
    assert "once.1 | done" in result.stdout and "once.1 exited with code 3" in result.stdout
    assert "worker" not in result.stdout
    assert carrying(token) == []


def test_local_into_a_reader_that_goes_away_stops_its_processes(tmp_path):
    token = uuid.uuid4().hex
    app = make_app(str(tmp_path / "app"), {"Procfile": "web: while true; do echo tick; sleep 0.05; done\n",
                                           ".env": "TOKEN=%s\n" % token})
    command = "%s local -p %d | head -n 3" % (TINYSERV, free_ports())
    result = run(["bash", "-c", command], cwd=app, env=dict(os.environ, NO_COLOR="1"), timeout=60)
    assert result.stdout.splitlines()[-1] == "web.1  | tick", result.stdout
    wait_until(lambda: carrying(token) == [], 15, message="tinyserv local's processes to be stopped")


@pytest.mark.parametrize("args, files, message", [
    (["local"], {}, "no Procfile here"),
    (["local", "db"], {"Procfile": "web: x\n"}, "the Procfile has no process type 'db' (it has web)"),
    (["local"], {"Procfile": "web x\n"}, "Procfile line 1 is not 'type: command'"),
    (["local"], {"Procfile": "web: x\n", ".env": "A='open\n"}, ".env line 1: the single quote is never closed"),
    (["local", "-e", "missing.env"], {"Procfile": "web: x\n"}, "no environment file here"),
])
def test_local_refuses_what_it_cannot_run_in_one_line(tmp_path, args, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run([TINYSERV, *args], cwd=str(tmp_path), check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()] and message in result.stderr, result.stderr


# --- config:pull and config:push ---


def test_config_pull_and_push_carry_awkward_values_between_env_and_the_server(server, tmp_path):
    app = server.new_app(tmp_path, node_app("config"), prefix="cfg")
    server.tinyserv("config:set", "FROM_SERVER=on the server", "SHARED=server value", cwd=app.path)
    env_file = os.path.join(app.path, ".env")
    with open(env_file, "w") as f:
        f.write("SHARED=local value\nLOCAL_ONLY='it''s # here'\n")
    pulled = json.loads(server.tinyserv("config:pull", "--json", cwd=app.path).stdout)
    assert pulled == {"file": ".env", "pulled": ["FROM_SERVER"], "kept": ["SHARED"]}
    assert oct(os.stat(env_file).st_mode & 0o777) == "0o600"
    with open(env_file, "a") as f:
        f.write('SPACES=a value with spaces\nQUOTES="she said \\"hi\\""\nHASH=a # comment\nMULTI="one\\ntwo"\n')
    pushed = json.loads(server.tinyserv("config:push", "--json", cwd=app.path).stdout)
    assert pushed["pushed"] == ["HASH", "LOCAL_ONLY", "MULTI", "QUOTES", "SHARED", "SPACES"]
    assert server.config(app) == {"FROM_SERVER": "on the server", "SHARED": "local value", "LOCAL_ONLY": "its # here",
                                  "SPACES": "a value with spaces", "QUOTES": 'she said "hi"', "HASH": "a",
                                  "MULTI": "one\ntwo"}
    again = server.tinyserv("config:push", cwd=app.path)
    assert "already match .env: nothing to push" in again.stdout
    server.tinyserv("config:set", "SHARED=changed on the server", cwd=app.path)
    server.tinyserv("config:pull", "--overwrite", cwd=app.path)
    assert "SHARED='changed on the server'\n" in open(env_file).read()


def test_config_push_refuses_a_bad_env_file_before_anything_travels(server, tmp_path):
    app = server.new_app(tmp_path, node_app("config"), prefix="cfg")
    with open(os.path.join(app.path, ".env"), "w") as f:
        f.write("PORT=80\n")
    result = server.tinyserv("config:push", cwd=app.path, check=False)
    assert result.returncode == 1 and "PORT" in result.stderr and server.config(app) == {}


# --- open, version, --json, NO_COLOR ---


def test_open_hands_the_apps_url_to_the_systems_opener_or_prints_it(server, tmp_path):
    app = server.new_app(tmp_path, node_app("open"), prefix="open")
    port = server.port(app)
    opener_dir = tmp_path / "opener"
    opener_dir.mkdir()
    opened = tmp_path / "opened"
    (opener_dir / "xdg-open").write_text('#!/bin/sh\necho "$@" > %s\n' % opened)
    (opener_dir / "xdg-open").chmod(0o755)
    env = dict(server.env, PATH=os.pathsep.join([str(opener_dir), server.env["PATH"]]))
    result = run([TINYSERV, "open", "/health?x=1"], cwd=app.path, env=env)
    assert result.stdout == "Opening http://localhost:%d/health?x=1\n" % port
    wait_until(lambda: opened.exists() and opened.read_text(), 10, message="the opener to run")
    assert opened.read_text() == "http://localhost:%d/health?x=1\n" % port
    tools = tmp_path / "tools"  # git, bash and python only (the real one: PATH may hold a shim): no opener
    tools.mkdir()
    for tool in ("git", "bash", "python3", "env"):
        (tools / tool).symlink_to(os.path.realpath(sys.executable) if tool == "python3" else shutil.which(tool))
    shown = run([TINYSERV, "open"], cwd=app.path, env=dict(server.env, PATH=os.pathsep.join([BIN, str(tools)])))
    assert shown.stdout == "http://localhost:%d/\n" % port


def test_version_shows_both_sides_and_json(server):
    result = server.tinyserv("version")
    __version__ = client_module("__init__").__version__
    assert result.stdout == "tinyserv %s (this machine)\ntinyserv-remote %s (localhost)\n" % (__version__, __version__)
    assert result.stderr == ""
    assert json.loads(server.tinyserv("version", "--json").stdout)["same"] is True


def test_commands_that_change_things_answer_json_too(server, tmp_path):
    app = server.new_app(tmp_path, node_app("json"), prefix="json")
    server.push(app)
    result = json.loads(server.tinyserv("config:set", "A=1", "--json", cwd=app.path).stdout)
    assert result["release"]["version"] == 3 and result["web"] == "up"
    assert json.loads(server.tinyserv("config:get", "A", "--json", cwd=app.path).stdout) == {"A": "1"}
    assert json.loads(server.tinyserv("config:unset", "A", "--json", cwd=app.path).stdout)["release"]["version"] == 4
    assert json.loads(server.tinyserv("rollback", "--json", cwd=app.path).stdout)["release"]["version"] == 5
    scaled = json.loads(server.tinyserv("ps:scale", "web=1", "--json", cwd=app.path).stdout)
    assert scaled["web"]["quantity"] == 1


def test_no_color_keeps_escape_codes_out_even_on_a_terminal(server, tmp_path):
    script = ("import os, pty, sys; pid, fd = pty.fork()\n"
              "if pid == 0: os.execv(sys.argv[1], sys.argv[1:])\n"
              "out = b''\n"
              "while True:\n"
              "    try: chunk = os.read(fd, 4096)\n"
              "    except OSError: break\n"
              "    if not chunk: break\n"
              "    out += chunk\n"
              "sys.stdout.write(out.decode())\n")
    server.new_app(tmp_path, node_app("c"), prefix="color")
    coloured = run([sys.executable, "-c", script, TINYSERV, "apps"], env=server.env).stdout
    plain = run([sys.executable, "-c", script, TINYSERV, "apps"], env=dict(server.env, NO_COLOR="1")).stdout
    assert "\033[" in coloured and "\033[" not in plain and "=== Apps" in plain


# --- the server's side: doctor, and an upgrade's handover ---


def test_doctor_shows_one_screen_of_checks(server):
    result = server.remote("doctor", check=False)
    names = [line.split()[1] for line in result.stdout.splitlines()[1:] if line[:4] in ("ok  ", "warn", "FAIL")]
    assert names[:6] == ["tinyserv", "python3", "PATH", "TINYSERV_ROOT", "supervisor", "boot"], result.stdout
    assert "ok    TINYSERV_ROOT  %s" % server.root in result.stdout


def test_an_upgrade_hands_the_supervisor_over_without_stopping_the_app(server, tmp_path):
    app = server.new_app(tmp_path, node_app("steady"), prefix="up")
    server.push(app)
    url = server.url(app)
    wait_until(lambda: http_get(url) == (200, "steady"), 30, message="the app to answer")
    web_pid = [i["pid"] for i in json.loads(server.tinyserv("ps", "--json", cwd=app.path).stdout)["instances"]][0]
    with open(os.path.join(server.root, "run", "supervisor.pid")) as f:
        old_supervisor = int(f.read())
    # The newer version, installed as server:install would: unpacked and made current under a HOME of its own.
    home = tmp_path / "home"
    home.mkdir()
    install = client_module("cli.install")
    newer = tmp_path / "newer"
    for part in ("bin", "lib"):
        shutil.copytree(os.path.join(REPO, part), newer / part, ignore=shutil.ignore_patterns("__pycache__"))
    data = install.package(str(newer))
    poller = subprocess.Popen([sys.executable, "-c", POLLER, url], stdout=subprocess.PIPE, text=True)
    try:
        result = subprocess.run(["bash", "-c", install.unpack_command(install.version_id(data))], input=data,
                                env=dict(server.env, HOME=str(home)), capture_output=True, timeout=120)
    finally:
        poller.terminate()
        answers = poller.communicate()[0].split()
    out = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, out
    assert "handed over from pid %d" % old_supervisor in out, out
    assert len(answers) > 5 and set(answers) == {"200"}, answers
    with open(os.path.join(server.root, "run", "supervisor.pid")) as f:
        new_supervisor = int(f.read())
    with open("/proc/%d/cmdline" % new_supervisor, "rb") as f:
        assert str(home / ".tinyserv-code" / "versions").encode() in f.read()
    assert [i["pid"] for i in json.loads(server.tinyserv("ps", "--json", cwd=app.path).stdout)["instances"]] == [
        web_pid]
    assert "adopted by a new supervisor (pid %d)" % new_supervisor in server.tinyserv("logs", cwd=app.path).stdout


POLLER = """import sys, time, urllib.request
while True:
    try:
        status = urllib.request.urlopen(sys.argv[1], timeout=2).status
    except Exception as e:
        status = type(e).__name__
    print(status, flush=True)
    time.sleep(0.02)
"""
