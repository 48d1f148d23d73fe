"""The supervisor keeps its promises under ordinary faults, on localhost: a nonstop writer beside a crashing app,
a supervisor killed with SIGKILL while an app logs every request, a daemon that left its instance's group, and
one app's damaged file across shutdown and startup."""

import contextlib
import json
import os
import signal
import threading
import time

from localserver import cmdline_of, environ_of, live_pids
from support import Loader, describe, http_get, node_app, wait_for_http, wait_until

NOISY = node_app("noisy", procfile="web: node server.js\nworker: yes tinyserv-noisy-output\n")
# Started only by the instance, not by the push's trial boot of web: deploy.py stops the trial boot's process
# group, not the daemons it may have left (its TINYSERV_INSTANCE ends in 'trial.web.1').
DAEMON_WEB = ('web: case "$TINYSERV_INSTANCE" in *trial*) ;; *) setsid sleep 1000 & ;; esac; '
              'exec node server.js\n')

# A generic (Procfile-only) Python app that logs every request synchronously, about 100 bytes a line: once its
# pipe is full and nobody reads it, such an app stops answering.
LOGGING_APP = {
    "Procfile": "web: python3 -u server.py\n",
    "server.py": (
        "import http.server, os, sys\n"
        "class Handler(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200)\n"
        "        self.send_header('Content-Length', '2')\n"
        "        self.end_headers()\n"
        "        self.wfile.write(b'ok')\n"
        "    def log_message(self, fmt, *args):\n"
        "        sys.stderr.write('served %s %s\\n' % (self.path, '.' * 80))\n"
        "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), Handler).serve_forever()\n"),
}
REQUESTS = 3000


def ps_json(server, app, timeout=10):
    return json.loads(server.tinyserv("ps", "--json", cwd=app.path, timeout=timeout).stdout)


def supervisor_pid(server):
    with open(os.path.join(server.root, "run", "supervisor.pid")) as f:
        return int(f.read())


def standby_pids(server):
    """Live `tinyserv-remote supervise --standby` processes of this server's root."""
    root = f"TINYSERV_ROOT={server.root}".encode()
    return [pid for pid in live_pids() if "supervise --standby" in cmdline_of(pid) and root in environ_of(pid)]


def supervisor_log(server):
    with open(os.path.join(server.root, "run", "supervisor.log"), errors="replace") as f:
        return f.read()


def log_of(server, app):
    with open(os.path.join(server.root, "apps", app.name, "log", "app.log"), errors="replace") as f:
        return f.read()


def test_a_nonstop_writer_does_not_keep_another_app_down_or_ps_waiting(server, tmp_path):
    noisy = server.new_app(tmp_path, NOISY, prefix="noisy")
    server.push(noisy)
    web = server.new_app(tmp_path, node_app("still here"), prefix="web")
    server.push(web)
    url = server.url(web)
    wait_until(lambda: "tinyserv-noisy-output" in log_of(server, noisy), 10, message="the noisy worker's output")
    [pid] = server.node_processes(web, "web.1")

    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert wait_for_http(url, contains="still here", timeout=10) == (200, "still here")
    back_after = time.monotonic() - killed
    started = time.monotonic()
    ps = ps_json(server, web)
    assert [i["name"] for i in ps["instances"]] == ["web.1"]
    assert time.monotonic() - started < 10 and back_after < 10, (back_after, time.monotonic() - started)
    assert {i["name"]: i["state"] for i in ps_json(server, noisy)["instances"]}["worker.1"] == "up"


def test_an_app_that_logs_every_request_keeps_answering_after_the_supervisor_is_killed(server, tmp_path):
    app = server.new_app(tmp_path, LOGGING_APP, prefix="logger")
    server.push(app)
    port = server.port(app)
    wait_until(lambda: standby_pids(server), 10, message="a standby supervisor")
    old = supervisor_pid(server)

    os.kill(old, signal.SIGKILL)
    for n in range(REQUESTS):
        assert http_get(f"http://127.0.0.1:{port}/request-{n}", timeout=5) == (200, "ok"), f"request {n}"

    new = wait_until(lambda: (pid := supervisor_pid(server)) != old and pid, 10, message="a new supervisor pid")
    assert f"web.1 adopted by a new supervisor (pid {new})" in log_of(server, app)
    wait_until(lambda: f"served /request-{REQUESTS - 1} " in log_of(server, app), 10,
               message="the last request's line in the app log")
    text = log_of(server, app)
    assert all(f"served /request-{n} " in text for n in range(REQUESTS)), "request lines went missing"
    wait_until(lambda: standby_pids(server), 10, message="a standby for the new supervisor")
    assert ps_json(server, app)["instances"][0]["state"] == "up"


def daemons_of(server, app):
    """The app's `sleep 1000` processes (started with setsid by its web)."""
    return [p for p in server.app_processes(app) if cmdline_of(p) == "sleep 1000"]


def wait_no_processes(server, app, timeout=15):
    wait_until(lambda: not server.app_processes(app), timeout, interval=0.2,
               message=f"every process of {app.name} to stop (left: {server.app_processes(app)})")


def test_a_daemon_started_by_a_web_is_stopped_with_it_by_ps_stop_and_apps_destroy(server, tmp_path):
    app = server.new_app(tmp_path, node_app("daemon", procfile=DAEMON_WEB), prefix="daemon")
    server.push(app)
    daemons = wait_until(lambda: daemons_of(server, app), 10, message="the setsid sleep")
    assert os.getsid(daemons[0]) == daemons[0], "the daemon left the instance's session"

    server.tinyserv("ps:stop", "web", cwd=app.path)
    wait_no_processes(server, app)

    server.tinyserv("ps:start", "web", cwd=app.path)
    wait_until(lambda: daemons_of(server, app), 10, message="the setsid sleep, started again")
    server.tinyserv("apps:destroy", "--confirm", app.name, cwd=app.path)
    wait_no_processes(server, app)


def test_a_daemon_started_by_a_web_is_stopped_by_shutdown(server, tmp_path):
    app = server.new_app(tmp_path, node_app("daemon", procfile=DAEMON_WEB), prefix="daemon")
    server.push(app)
    wait_until(lambda: daemons_of(server, app), 10, message="the setsid sleep")

    server.remote("shutdown", timeout=60)
    wait_no_processes(server, app, timeout=5)


def test_one_app_with_a_damaged_formation_does_not_keep_the_others_from_starting_up(server, tmp_path):
    damaged = server.new_app(tmp_path, node_app("damaged"), prefix="damaged")
    server.push(damaged)
    healthy = server.new_app(tmp_path, node_app("healthy"), prefix="healthy")
    server.push(healthy)
    url = server.url(healthy)
    with open(os.path.join(server.root, "apps", damaged.name, "formation.json"), "w"):
        pass

    server.remote("shutdown", timeout=60)
    assert http_get(url) is None
    started = server.remote("startup", check=False, timeout=60)
    shown = describe(started)
    assert started.returncode == 1 and f"did not come up: {damaged.name}" in started.stderr, shown
    assert f"{healthy.name}: up" in started.stdout, shown
    assert f"{damaged.name}: broken (" in started.stdout and "formation.json is damaged" in started.stdout, shown
    assert wait_for_http(url, contains="healthy", timeout=10) == (200, "healthy")
    assert ps_json(server, healthy)["instances"][0]["state"] == "up"
    with open(os.path.join(server.root, "apps", damaged.name, "run", "state.json")) as f:
        assert "formation.json is damaged" in json.load(f)["broken"]


def test_a_frozen_supervisor_is_said_to_be_not_answering_and_its_standby_takes_over(server, tmp_path):
    app = server.new_app(tmp_path, node_app("thawed"), prefix="frozen")
    server.push(app)
    url = server.url(app)
    wait_until(lambda: standby_pids(server), 10, message="a standby supervisor")
    frozen = supervisor_pid(server)
    os.kill(frozen, signal.SIGSTOP)
    try:
        [web] = server.node_processes(app, "web.1")
        os.kill(web, signal.SIGKILL)  # a crash that only a supervisor that answers can see to
        started = time.monotonic()
        ps = server.tinyserv("ps", cwd=app.path, check=False, timeout=60)
        shown = describe(ps)
        assert ps.returncode == 1 and f"the supervisor (pid {frozen}) is not answering" in ps.stderr, shown
        assert "did not start" not in ps.stderr and time.monotonic() - started < 10, shown

        wait_until(lambda: (pid := supervisor_pid(server)) != frozen and pid, 40, interval=0.2,
                         message="the standby to take over from the frozen supervisor")
        assert wait_for_http(url, contains="thawed", timeout=15) == (200, "thawed")
        assert ps_json(server, app)["instances"][0]["state"] == "up"
        assert server.node_processes(app, "web.1") not in ([], [web])  # the crash was seen to
        assert frozen not in live_pids(), "the frozen supervisor was killed, not left to wake up beside the new one"
        assert f"the supervisor (pid {frozen}) has not answered for" in supervisor_log(server)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)


SLOW_WEB = ('const http = require("http");\n'
            'const server = http.createServer((req, res) => res.end("slow to start"));\n'
            'setTimeout(() => server.listen(process.env.PORT), 3000);\n')


def test_a_push_whose_supervisor_is_killed_during_the_boot_check_is_released(server, tmp_path):
    app = server.new_app(tmp_path, node_app("first"), prefix="trial")
    server.push(app)
    wait_until(lambda: standby_pids(server), 10, message="a standby supervisor")
    old = supervisor_pid(server)
    version = server.releases(app)[0]["version"] + 1
    server.commit(app, dict(node_app("unused"), **{"server.js": SLOW_WEB}))
    pushed = {}
    pushing = threading.Thread(target=lambda: pushed.update(result=server.push(app, check=False)))
    pushing.start()
    try:
        wanted = {f"TINYSERV_APP={app.name}".encode(), f"TINYSERV_RELEASE=v{version}".encode()}
        wait_until(lambda: [p for p in live_pids() if wanted <= environ_of(p)], 60, interval=0.05,
                   message="the boot check's web")
        os.kill(old, signal.SIGKILL)
    finally:
        pushing.join(120)
    assert pushed["result"].returncode == 0, describe(pushed["result"])
    assert wait_for_http(server.url(app), contains="slow to start", timeout=10) == (200, "slow to start")
    assert supervisor_pid(server) != old


# A web that closes its listener CLOSE_AFTER ms after listen() and keeps running: nginx answers 502 for it.
CLOSING_WEB = ('const http = require("http");\n'
               'const server = http.createServer((req, res) => res.end("still " + (process.env.GREETING || "here")));\n'
               'server.listen(process.env.PORT, () => {\n'
               '  if (process.env.CLOSE_AFTER) setTimeout(() => server.close(), Number(process.env.CLOSE_AFTER));\n'
               '});\n'
               'setInterval(() => {}, 1000);\n')


def closing_app():
    return dict(node_app("unused"), **{"server.js": CLOSING_WEB})


def test_a_config_change_whose_web_closes_its_listener_at_once_is_refused_and_the_old_web_serves_on(
        server, tmp_path):
    app = server.new_app(tmp_path, closing_app(), prefix="closing")
    server.push(app)
    port = server.port(app)
    before = server.releases(app)
    with Loader(port) as loader:
        wait_until(lambda: loader.ok > 5, 10, message="the loader's first answers")
        # 0.25 s: within the 0.3 s the switch waits, and long enough for the boot check to see it listen on a busy
        # machine (one that never sees it listen refuses the change too, after the boot timeout).
        changed = server.tinyserv("config:set", "CLOSE_AFTER=250", "GREETING=there", cwd=app.path, check=False)
        wait_until(lambda: loader.ok > 20, 10, message="answers after the change")
    shown = describe(changed)
    assert changed.returncode == 1 and "web stopped answering after the switch" in changed.stderr, shown
    assert http_get(f"http://127.0.0.1:{port}/") == (200, "still here")
    assert loader.failed == [], loader.failed[:5]
    assert [r["version"] for r in server.releases(app)] == [r["version"] for r in before]
    assert "no longer answers connections on port" in log_of(server, app)


def test_a_web_that_stops_answering_is_shown_in_ps_and_restarted_and_the_log_says_so(server, tmp_path):
    app = server.new_app(tmp_path, closing_app(), prefix="closing")
    server.tinyserv("config:set", "CLOSE_AFTER=2000", cwd=app.path)
    server.push(app)

    def silent():
        web = ps_json(server, app)["instances"][0]
        return web if web["state"] == "up" and web.get("silent_since") else None
    wait_until(silent, 30, interval=0.2, message="ps to say web.1 does not answer")
    # Each restart closes its listener again 2 s later, so ps says so again and again.
    wait_until(lambda: "up, not answering for" in server.tinyserv("ps", cwd=app.path).stdout, 30, interval=0.2,
               message="ps's table to say web.1 does not answer")
    wait_until(lambda: ps_json(server, app)["instances"][0]["restarts"] >= 1, 20, interval=0.2,
               message="web.1 to be restarted for not answering")
    text = log_of(server, app)
    assert "web.1 does not answer connections on port" in text, text
    assert "web.1 stopped answering on port" in text and ", restarting" in text, text
