"""Apps stay up: the supervisor restarts what crashes, keeps the formation, survives its own death and reboots.

The module deploys two small node apps without dependencies (plain `http`) over real ssh and shares them between
its tests, each of which leaves them as it found them: `worker_app` (Procfile `web` and a `worker` that prints a
line every 200 ms) and `web_app` (`web` only). The web answers "<app> is up"; a file `crash-now` in its build
(made with `tinyserv run`) makes it exit within 0.2 s and at every boot, and config var STUBBORN=1 makes it
ignore SIGTERM.

Processes are checked the way an operator would, as deploy through /proc on the server, by the environment
tinyserv gives them (TINYSERV_APP=<app>, DYNO=<web.1|worker.1>): an instance is one process group whose leader is
the Procfile command's `sh -c`, with one node process in it. The container restart (a reboot) runs last.
"""

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
import types
import uuid

import pytest

from support import describe, http_get, make_app, run, wait_for_http, wait_until

WEB = "web: node server.js\n"
WEB_AND_WORKER = "web: node server.js\nworker: node worker.js\n"

SERVER_JS = """\
const http = require("http");
const fs = require("fs");
const crashIfAsked = () => { if (fs.existsSync("crash-now")) { console.log("dying"); process.exit(1); } };
crashIfAsked();
setInterval(crashIfAsked, 200);
if (process.env.STUBBORN === "1") {
  process.on("SIGTERM", () => console.log("ignoring SIGTERM"));
}
http.createServer((req, res) => res.end(process.env.TINYSERV_APP + " is up\\n"))
  .listen(process.env.PORT, () => console.log("listening on port " + process.env.PORT));
"""

WORKER_JS = """\
let n = 0;
setInterval(() => console.log("tick " + ++n), 200);
"""

PACKAGE_JSON = json.dumps({"name": "supervision-test-app", "version": "1.0.0", "private": True}, indent=2) + "\n"

# Runs on the server as deploy: every live (non-zombie) process deploy can read, as JSON.
LIST_PROCESSES = r"""
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            stat = f.read().decode(errors="replace")
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            cmdline = [w.decode(errors="replace") for w in f.read().split(b"\0") if w]
        with open("/proc/%s/environ" % pid, "rb") as f:
            environ = dict(v.decode(errors="replace").partition("=")[::2] for v in f.read().split(b"\0") if b"=" in v)
    except OSError:
        continue
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in "ZX":
        continue
    found.append({"pid": int(pid), "pgid": int(fields[2]), "cmdline": cmdline,
                  "app": environ.get("TINYSERV_APP"), "dyno": environ.get("DYNO")})
print(json.dumps(found))
"""

RESTART_TIMEOUT = 20  # a crashed, restarted or started instance is up well within this, even on a loaded machine
CRASH_LINE = re.compile(r"tinyserv: web\.1 exited with 1, restarting in (\d+)s$", re.M)


# --- the server's processes ----------------------------------------------------------------------------------


def server_processes(server):
    """Every live process of deploy on the server: pid, pgid, cmdline, and app and dyno from its environ.

    Read through testinfra (docker exec as deploy): the same /proc as over ssh, at a fraction of the cost per poll.
    """
    result = server.host.run("python3 -c " + shlex.quote(LIST_PROCESSES))
    assert result.rc == 0, f"listing the server's processes failed ({result.rc}):\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def is_tinyserv_remote(process, verb):
    """Is `process` a `tinyserv-remote VERB ...`?"""
    words = process["cmdline"]
    return any(os.path.basename(w) == "tinyserv-remote" for w in words) and verb in words


def supervise_processes(server):
    """Pids of every `tinyserv-remote supervise` process: the active supervisor and its standby."""
    return [p["pid"] for p in server_processes(server) if is_tinyserv_remote(p, "supervise")]


def supervisors(server):
    """[pid] of the active supervisor ([] when none runs): the supervise process named in run/supervisor.pid (a
    standby that took over keeps its `--standby` command line, so only the pid file tells)."""
    pid = server.ssh("cat ~/tinyserv/run/supervisor.pid 2>/dev/null || true").stdout.strip()
    return [int(pid)] if pid.isdigit() and int(pid) in supervise_processes(server) else []


def standbys(server):
    """Pids of the supervise processes waiting to take over."""
    active = supervisors(server)
    return [pid for pid in supervise_processes(server) if pid not in active]


def formation_on_server(server, app):
    """{dyno: (group leader pids, node pids)} of the app's processes."""
    found = {}
    for p in server_processes(server):
        if p["app"] == app:
            leaders, nodes = found.setdefault(p["dyno"], ([], []))
            if p["pid"] == p["pgid"]:
                leaders.append(p["pid"])
            if p["cmdline"] and os.path.basename(p["cmdline"][0]) == "node":
                nodes.append(p["pid"])
    return found


# --- apps -----------------------------------------------------------------------------------------------------


class App:
    """A deployed app as the tests drive it: the tinyserv CLI in its repository, its URL, its processes."""

    def __init__(self, server, name, path, port):
        self.server = server
        self.name = name
        self.path = path
        self.port = port
        self.destroyed = False

    def tinyserv(self, *args, check=True, timeout=120):
        """Run `tinyserv ARGS` in the app's repository against the server."""
        __tracebackhide__ = True
        return run(["tinyserv", *args], cwd=self.path, env=self.server.env, check=check, timeout=timeout)

    def ps(self):
        """`tinyserv ps --json`, parsed."""
        return json.loads(self.tinyserv("ps", "--json").stdout)

    def instance(self, name):
        """The instance `name` (web.1) as `tinyserv ps --json` shows it, or None."""
        return next((i for i in self.ps()["instances"] if i["name"] == name), None)

    def url(self):
        """The app's URL on this machine (read each time: published ports change when the container restarts)."""
        return self.server.url(self.port)

    def answers(self):
        """Does the app answer its own "<app> is up" right now?"""
        return http_get(self.url()) == (200, f"{self.name} is up\n")

    def wait_answers(self, timeout=RESTART_TIMEOUT):
        """Poll until the app answers "<app> is up"."""
        return wait_for_http(self.url(), contains=f"{self.name} is up", timeout=timeout)

    def processes(self, dyno):
        """(group leader pids, node pids) of this app's `dyno` on the server."""
        return formation_on_server(self.server, self.name).get(dyno, ([], []))

    def node_pid(self, dyno):
        """The pid of the one node process of `dyno`."""
        _, nodes = self.processes(dyno)
        assert len(nodes) == 1, f"expected one node process for {self.name} {dyno}, found {nodes}"
        return nodes[0]

    def log(self, *args):
        """`tinyserv logs -n 1000 ARGS`."""
        return self.tinyserv("logs", "-n", "1000", *args).stdout

    def wait_up(self, name, other_than=None, timeout=RESTART_TIMEOUT):
        """Wait until `ps` shows instance `name` up (with a pid other than `other_than`); return it."""
        def up():
            inst = self.instance(name)
            return inst if inst and inst["state"] == "up" and inst["pid"] != other_than else None
        what = f"{self.name} {name} to be up" + (f" with a pid other than {other_than}" if other_than else "")
        return wait_until(up, timeout, interval=0.2, message=what)

    def wait_no_processes(self, dyno, timeout=RESTART_TIMEOUT):
        """Poll until no process of the app's `dyno` is left on the server."""
        wait_until(lambda: self.processes(dyno) == ([], []), timeout, interval=0.2,
                   message=f"no process with TINYSERV_APP={self.name} DYNO={dyno} on the server")

    def follow_server(self):
        """Point the app's git remote at the server's ssh port again: published ports change when the container
        restarts, as a user re-points a remote at a server that moved (the remote names the app's server)."""
        url = f"ssh://deploy@127.0.0.1:{self.server.port(22)}/home/deploy/tinyserv/repos/{self.name}.git"
        run(["git", "remote", "set-url", "tinyserv", url], cwd=self.path)

    def destroy(self):
        """`tinyserv apps:destroy --confirm NAME`; return how long it took."""
        started = time.monotonic()
        self.tinyserv("apps:destroy", "--confirm", self.name)
        self.destroyed = True
        return time.monotonic() - started


class Deployer:
    """Creates and pushes apps with unique names; destroys them again (teardown)."""

    def __init__(self, server, directory):
        self.server = server
        self.directory = directory
        self.made = []

    def __call__(self, kind, procfile=WEB_AND_WORKER):
        """Create app sup-KIND-xxxxxx with `procfile`, push it and wait until it answers."""
        name = f"sup-{kind}-{uuid.uuid4().hex[:6]}"
        path = make_app(self.directory / name, {"Procfile": procfile, "package.json": PACKAGE_JSON,
                                                "server.js": SERVER_JS, "worker.js": WORKER_JS})
        created = run(["tinyserv", "apps:create", name, "--json"], cwd=path, env=self.server.env)
        app = App(self.server, name, path, json.loads(created.stdout)["port"])
        self.made.append(app)
        run(["git", "push", "tinyserv", "main"], cwd=path, env=self.server.env)
        app.wait_answers(timeout=30)
        return app

    def destroy_all(self):
        """apps:destroy every app made here that a test did not destroy; fail if any destroy fails."""
        failures = [describe(result) for result in (
            app.tinyserv("apps:destroy", "--confirm", app.name, check=False)
            for app in self.made if not app.destroyed) if result.returncode != 0]
        assert not failures, "apps:destroy failed in teardown:\n" + "\n".join(failures)


@pytest.fixture(scope="module")
def apps(server, tmp_path_factory):
    """The module's two apps: `worker` (web and worker) and `web` (web only)."""
    deploy = Deployer(server, tmp_path_factory.mktemp("supervision"))
    try:
        yield types.SimpleNamespace(worker=deploy("worker"), web=deploy("web", WEB))
    finally:
        deploy.destroy_all()


@pytest.fixture
def deploy(server, tmp_path):
    """deploy(kind, procfile): an app of the test's own, destroyed after it."""
    deployer = Deployer(server, tmp_path)
    try:
        yield deployer
    finally:
        deployer.destroy_all()


def read_lines(stream, into):
    """Put each line of `stream` into the queue `into`, then None at end of file."""
    for line in stream:
        into.put(line)
    into.put(None)


# --- crashes, logs, formation ---------------------------------------------------------------------------------


def test_a_web_killed_with_sigkill_is_restarted_and_answers_again(server, apps):
    app = apps.worker
    web, worker = app.wait_up("web.1"), app.wait_up("worker.1")
    server.ssh(f"kill -9 {app.node_pid('web.1')}")
    app.wait_answers(timeout=10)
    after = app.wait_up("web.1", other_than=web["pid"])
    # Behind nginx the web a deploy boot-checked is not the supervisor's child: its exit code is not known.
    assert after["restarts"] >= 1 and after["exit_code"] in (137, None), after
    leaders, nodes = app.processes("web.1")
    assert leaders == [after["pid"]] and len(nodes) == 1, (leaders, nodes, after)
    assert app.instance("worker.1")["pid"] == worker["pid"], "killing web restarted the worker too"


def test_worker_output_is_in_the_log_and_logs_t_follows_it_until_the_client_goes_away(server, apps):
    app = apps.worker

    def three_or_more():
        lines = app.log("--ps", "worker").splitlines()
        return lines if len(lines) >= 3 else None
    lines = wait_until(three_or_more, 10, interval=0.2, message="three lines in `tinyserv logs --ps worker`")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ worker\.1: tick \d+", line) for line in lines), lines

    follower = subprocess.Popen(["tinyserv", "logs", "-t", "-n", "0"], cwd=app.path, env=server.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    received = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(follower.stdout, received), daemon=True)
    reader.start()
    try:
        seen = []
        deadline = time.monotonic() + 15
        while not any(" worker.1: tick " in line for line in seen):
            line = received.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"`tinyserv logs -t` ended by itself:\n{''.join(seen)}"
            seen.append(line)
        follower.terminate()
        follower.wait(timeout=10)

        def remote_logs():
            return [p for p in server_processes(server) if is_tinyserv_remote(p, "logs") and app.name in p["cmdline"]]
        wait_until(lambda: not remote_logs(), 10, interval=0.2,
                   message=f"no `tinyserv-remote logs {app.name}` left on the server after the client ended")
        reader.join(timeout=10)
        assert not reader.is_alive(), "the ssh client of `tinyserv logs -t` kept running after the remote ended"
    finally:
        if follower.poll() is None or reader.is_alive():
            try:
                os.killpg(follower.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            follower.wait()


def test_ps_scale_stops_and_starts_workers_and_refuses_a_second_web_or_an_unknown_type(apps):
    app = apps.worker
    scaled = app.tinyserv("ps:scale", "worker=0")
    assert "worker at 0" in scaled.stdout, describe(scaled)
    app.wait_no_processes("worker.1")
    assert app.instance("worker.1") is None

    app.tinyserv("ps:scale", "worker=1")
    app.wait_up("worker.1")
    assert len(app.processes("worker.1")[1]) == 1

    for change, word in [("web=21", "at most 20"), ("nosuchtype=1", "nosuchtype")]:
        refused = app.tinyserv("ps:scale", change, check=False)
        message = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(message) == 1, describe(refused)
        assert message[0].startswith("tinyserv: ") and word in message[0], describe(refused)
    formation = app.ps()["formation"]
    assert {t: f["quantity"] for t, f in formation.items()} == {"web": 1, "worker": 1}, formation
    assert len(app.processes("web.1")[1]) == 1 and len(app.processes("worker.1")[1]) == 1


def test_ps_restart_ps_stop_ps_start_and_restart_act_on_the_processes(apps):
    app = apps.worker
    web, worker = app.wait_up("web.1"), app.wait_up("worker.1")

    app.tinyserv("ps:restart", "web")
    web = app.wait_up("web.1", other_than=web["pid"])
    assert app.instance("worker.1")["pid"] == worker["pid"], "ps:restart web restarted the worker too"

    app.tinyserv("ps:stop", "worker")
    app.wait_no_processes("worker.1")
    ps = app.ps()
    workers = [i for i in ps["instances"] if i["type"] == "worker"]
    assert ps["formation"]["worker"]["stopped"], ps
    assert [(i["name"], i["state"], i["pid"]) for i in workers] == [("worker.1", "stopped", None)], ps
    shown = app.tinyserv("ps")
    assert "=== worker (node worker.js): stopped" in shown.stdout, describe(shown)

    app.tinyserv("ps:restart")
    web = app.wait_up("web.1", other_than=web["pid"])
    assert app.processes("worker.1") == ([], []), "a stopped worker came back with ps:restart"
    assert app.ps()["formation"]["worker"]["stopped"]

    app.tinyserv("ps:start", "worker")
    worker = app.wait_up("worker.1", other_than=worker["pid"])
    assert len(app.processes("worker.1")[1]) == 1

    app.tinyserv("restart")
    app.wait_up("web.1", other_than=web["pid"])
    app.wait_up("worker.1", other_than=worker["pid"])
    assert app.answers()


def test_run_executes_one_off_commands_with_the_apps_port_config_and_exit_code(apps):
    app = apps.web
    port = app.tinyserv("run", "echo $PORT")
    assert port.stdout.strip().isdigit() and port.stdout.strip() != str(app.port), describe(port)  # nginx has it
    for args, code in [(["sh", "-c", "exit 7"], 7), (["node", "-e", "process.exit(3)"], 3)]:
        result = app.tinyserv("run", *args, check=False)
        assert result.returncode == code, describe(result)
    app.tinyserv("config:set", "GREETING=hello from config")
    greeting = app.tinyserv("run", 'echo "$GREETING"')
    assert greeting.stdout.strip() == "hello from config", describe(greeting)


def test_a_web_that_crashes_in_a_loop_is_restarted_with_growing_backoff_until_fixed(apps):
    app = apps.web
    app.tinyserv("run", "touch crash-now")  # a config change that makes web crash would be refused
    try:

        def crashed(restarts_over):
            inst = app.instance("web.1")
            return inst if inst and inst["state"] == "crashed" and inst["restarts"] > restarts_over else None
        first = wait_until(lambda: crashed(0), 10, interval=0.2, message="web.1 to be crashed")
        later = wait_until(lambda: crashed(first["restarts"]), 20, interval=0.2,
                           message=f"web.1 to crash again (more than {first['restarts']} restarts)")
        assert later["next_try"] > time.time() - 1, later  # scheduled, not due (allowing for the round trip)
        log = app.log()
        waits = [int(n) for n in CRASH_LINE.findall(log)]
        assert len(waits) >= 2 and waits == sorted(waits) and waits[0] < waits[-1], log
    finally:
        app.tinyserv("run", "rm -f crash-now")
    app.wait_answers(timeout=40)
    assert app.instance("web.1")["state"] == "up"


def test_a_web_that_ignores_sigterm_is_killed_after_the_stop_timeout(deploy):
    app = deploy("stubborn", WEB)
    app.tinyserv("config:set", "TINYSERV_STOP_TIMEOUT=2", "STUBBORN=1")
    web = app.wait_up("web.1")
    wait_until(lambda: len(app.processes("web.1")[1]) == 1, 20, interval=0.2, message="the old web.1 to drain")
    stubborn_node = app.node_pid("web.1")
    logged_before = len(app.log().splitlines())

    app.tinyserv("ps:restart")
    app.wait_up("web.1", other_than=web["pid"])
    wait_until(lambda: stubborn_node not in app.processes("web.1")[1], 20, interval=0.2,
               message="the web that ignored SIGTERM to be gone (it drains first, behind nginx)")
    new_lines = "\n".join(app.log().splitlines()[logged_before:])
    when = {}
    for event in ["tinyserv: Stopping web.1 (SIGTERM)", "web.1: ignoring SIGTERM",
                  "tinyserv: web.1 did not stop in time: SIGKILL"]:
        # Behind nginx the old web is named with its release: "Stopping web.1 of v3 (SIGTERM)".
        found = re.search(r"^(\S+) " + re.escape(event).replace(r"web\.1\ \(", r"web\.1( of v\d+)?\ \(") + "$",
                          new_lines, re.M)
        assert found, f"{event!r} not in the log after ps:restart:\n{new_lines}"
        when[event] = time.mktime(time.strptime(found.group(1), "%Y-%m-%dT%H:%M:%SZ"))
    grace = when["tinyserv: web.1 did not stop in time: SIGKILL"] - when["tinyserv: Stopping web.1 (SIGTERM)"]
    assert 1 <= grace <= 5, f"SIGKILL came {grace:.0f} s after SIGTERM, not about 2 s:\n{new_lines}"
    assert app.answers()

    took = app.destroy()
    assert formation_on_server(app.server, app.name) == {}, "apps:destroy left processes behind"
    assert took < 20, f"apps:destroy took {took:.0f} s: it did not use TINYSERV_STOP_TIMEOUT=2 either"


# --- the supervisor itself ------------------------------------------------------------------------------------


def test_a_killed_supervisor_leaves_apps_serving_and_its_successor_adopts_them(server, apps):
    both = [apps.worker, apps.web]
    wanted = {apps.worker.name: ["web.1", "worker.1"], apps.web.name: ["web.1"]}
    before = {app.name: {name: app.wait_up(name) for name in wanted[app.name]} for app in both}
    old_supervisors = supervisors(server)
    assert len(old_supervisors) == 1, old_supervisors

    server.ssh("pkill -9 -f '[t]inyserv-remote supervise'")  # the active one and its standby, both
    wait_until(lambda: not supervisors(server) and not standbys(server), 10, interval=0.2,
               message="the supervisors to be gone")
    for _ in range(3):  # each look at the server's processes spaces the probes out
        assert all(app.answers() for app in both), "an app stopped answering while no supervisor ran"
        assert not supervisors(server), "a supervisor came back before any tinyserv command ran"

    apps.worker.tinyserv("ps")
    new_supervisors = supervisors(server)
    assert len(new_supervisors) == 1 and new_supervisors != old_supervisors, (old_supervisors, new_supervisors)
    for app in both:
        running = formation_on_server(server, app.name)
        assert sorted(running) == wanted[app.name], running
        for name, was in before[app.name].items():
            leaders, nodes = running[name]
            assert leaders == [was["pid"]] and len(nodes) == 1, f"{app.name} {name}: {running[name]}, before: {was}"
            inst = app.instance(name)
            assert (inst["pid"], inst["state"], inst["restarts"]) == (was["pid"], "up", was["restarts"]), inst
        assert f"web.1 adopted by a new supervisor (pid {new_supervisors[0]})" in app.log()
        assert app.answers()

    server.ssh(f"kill -9 {apps.worker.node_pid('web.1')}")
    restarted = apps.worker.wait_up("web.1", other_than=before[apps.worker.name]["web.1"]["pid"])
    assert restarted["restarts"] >= 1, restarted
    apps.worker.wait_answers(timeout=10)
    assert supervisors(server) == new_supervisors


def test_a_killed_supervisor_is_replaced_by_its_standby_at_once_and_apps_never_stop_answering(server, apps):
    both = [apps.worker, apps.web]
    for app in both:
        app.wait_up("web.1")
    active = wait_until(lambda: supervisors(server), 10, message="an active supervisor")
    standby = wait_until(lambda: standbys(server), 10, message="a standby supervisor")
    assert len(active) == 1 and len(standby) == 1, (active, standby)

    server.ssh(f"kill -9 {active[0]}")
    # The standby becomes the active supervisor (same pid) without any tinyserv command, and makes a new standby.
    assert wait_until(lambda: supervisors(server) == standby, 5, interval=0.1, message="the standby to take over")
    assert all(app.answers() for app in both), "an app stopped answering during the hand-over"
    wait_until(lambda: standbys(server) and standbys(server) != standby, 10, interval=0.2,
               message="a new standby")
    for app in both:
        assert f"web.1 adopted by a new supervisor (pid {standby[0]})" in app.log()


def test_shutdown_stops_every_app_and_startup_brings_them_back(server, host, apps):
    both = [apps.worker, apps.web]
    assert all(host.socket(f"tcp://{app.port}").is_listening for app in both)
    shut_down = True
    try:
        result = server.ssh("tinyserv-remote shutdown")
        assert "every app stopped" in result.stdout, describe(result)
        leftovers = [p for p in server_processes(server) if p["app"] or is_tinyserv_remote(p, "supervise")]
        assert not leftovers, f"processes left after shutdown: {leftovers}"
        for app in both:
            assert not host.socket(f"tcp://{app.port}").is_listening
            assert http_get(app.url()) is None

        # Other modules' apps come back too; whether they come up is theirs to check.
        started = server.ssh("tinyserv-remote startup", check=False, timeout=180)
        shut_down = False
        assert {f"{app.name}: up" for app in both} <= set(started.stdout.splitlines()), describe(started)
    finally:
        if shut_down:
            server.ssh("tinyserv-remote startup", check=False, timeout=180)
    for app in both:
        app.wait_answers(timeout=10)
    assert apps.worker.wait_up("worker.1")
    assert len(supervisors(server)) == 1


def test_apps_serve_again_with_their_formation_after_the_server_restarts(server, apps):
    apps.worker.tinyserv("ps:scale", "worker=0")
    apps.worker.wait_no_processes("worker.1")

    server.restart()
    for app in (apps.worker, apps.web):
        app.follow_server()
        app.wait_answers(timeout=30)
        assert app.wait_up("web.1")
    assert apps.worker.ps()["formation"]["worker"]["quantity"] == 0
    assert apps.worker.instance("worker.1") is None
    assert sorted(formation_on_server(server, apps.worker.name)) == ["web.1"]
    assert len(supervisors(server)) == 1
