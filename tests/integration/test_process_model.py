"""The process model on localhost: process types, logs per type, scaling, restarts, one-off runs, releases, rollback."""

import json
import os
import re
import signal

from localserver import cmdline_of
from support import http_get, node_app, wait_for_http, wait_until

WORKER = 'let n = 0;\nsetInterval(() => console.log("tick " + n++), 200);\n'
WEB_AND_WORKER = "web: node server.js\nworker: node worker.js\n"


def web_and_worker(message):
    return node_app(message, procfile=WEB_AND_WORKER, extra={"worker.js": WORKER})


def deploy(server, tmp_path, message="one", files=None):
    app = server.new_app(tmp_path, files or web_and_worker(message), prefix="procs")
    server.push(app)
    return app


def ps_json(server, app):
    return json.loads(server.tinyserv("ps", "--json", cwd=app.path).stdout)


def instance(server, app, name):
    return next((i for i in ps_json(server, app)["instances"] if i["name"] == name), None)


def test_logs_ps_worker_shows_the_worker_lines_only(server, tmp_path):
    app = deploy(server, tmp_path)

    def worker_lines():
        lines = server.tinyserv("logs", "--ps", "worker", "-n", "20", cwd=app.path).stdout.splitlines()
        return lines if len(lines) >= 3 else None
    lines = wait_until(worker_lines, timeout=10, message="three lines from worker.1")
    assert all(re.fullmatch(r"\S+ worker\.1: tick \d+", line) for line in lines), lines


def test_scaling_worker_to_zero_leaves_no_worker_process(server, tmp_path):
    app = deploy(server, tmp_path)
    assert server.app_processes(app, "worker.1")

    server.tinyserv("ps:scale", "worker=0", cwd=app.path)
    wait_until(lambda: not server.app_processes(app, "worker.1"), timeout=10, message="worker.1 to stop")
    ps = ps_json(server, app)
    assert ps["formation"]["worker"]["quantity"] == 0
    assert [i["name"] for i in ps["instances"]] == ["web.1"]
    assert http_get(server.url(app)) == (200, "one")


def test_a_web_process_killed_with_sigkill_is_restarted(server, tmp_path):
    app = deploy(server, tmp_path)
    url = server.url(app)
    [pid] = server.node_processes(app, "web.1")

    os.kill(pid, signal.SIGKILL)
    assert wait_for_http(url, contains="one", timeout=10) == (200, "one")  # nginx may say 502 until it is back
    web = wait_until(lambda: (i := instance(server, app, "web.1")) and i["restarts"] >= 1 and i["state"] == "up"
                     and i, timeout=10, message="ps to show web.1 up again after a restart")
    assert web["restarts"] >= 1
    assert pid not in server.node_processes(app, "web.1")


def test_run_has_the_app_environment_and_passes_the_exit_code_through(server, tmp_path):
    app = deploy(server, tmp_path, files=node_app("one"))
    port = server.port(app)
    printed = int(server.tinyserv("run", "echo $PORT", cwd=app.path).stdout)
    assert printed != port if server.front_door else printed == port  # nginx holds the app's port
    assert server.tinyserv("run", "sh", "-c", "exit 7", cwd=app.path, check=False).returncode == 7


def test_run_stops_every_process_it_started_when_the_command_ends_daemons_too(server, tmp_path):
    app = deploy(server, tmp_path, files=node_app("one"))
    quiet = ">/dev/null 2>&1 </dev/null"  # else they hold run's output open and run never ends
    server.tinyserv("run", f"setsid sleep 9991 {quiet} & setsid sh -c 'sleep 9992 & sleep 9993' {quiet} & echo started",
                    cwd=app.path)

    def daemons():
        return [p for p in server.app_processes(app, "run.1") if cmdline_of(p).startswith("sleep 999")]
    wait_until(lambda: not daemons(), timeout=10, message="run's daemons to be stopped with it")
    assert http_get(server.url(app)) == (200, "one")  # the app's own processes are not run's


def test_releases_lists_the_deploy_and_the_config_releases(server, tmp_path):
    app = deploy(server, tmp_path, files=node_app("one"))
    commit = server.git("rev-parse", "--short=7", "HEAD", cwd=app.path).stdout.strip()
    server.tinyserv("config:set", "GREETING=hello", cwd=app.path)

    shown = server.tinyserv("releases", cwd=app.path).stdout
    rows = [line.split(None, 1) for line in shown.splitlines() if re.match(r"v\d+ ", line)]
    assert [(version, text.split("  ")[0]) for version, text in rows] == [
        ("v3", "Set GREETING config vars"), ("v2", f"Deploy {commit}"), ("v1", "Initial release")], shown


def test_rollback_restores_the_previous_code(server, tmp_path):
    app = deploy(server, tmp_path, files=node_app("one"))
    url = server.url(app)
    assert http_get(url) == (200, "one")
    server.commit(app, node_app("two"), message="two")
    server.push(app)
    assert http_get(url) == (200, "two")

    server.tinyserv("rollback", cwd=app.path)
    assert http_get(url) == (200, "one")
    assert server.releases(app)[0]["description"] == "Rollback to v2"
