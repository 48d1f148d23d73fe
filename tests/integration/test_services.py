"""Platform services (services/<name>.json) are kept running by the real supervisor, across its own death too."""

import json
import os
import signal
import sys

from support import http_get, port_is_free, wait_for_http, wait_until


def declare(server, name, port):
    """What a feature does to run a service: write its declaration (the supervisor acts on the next full sync)."""
    directory = os.path.join(server.root, "services")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name + ".json"), "w") as f:
        json.dump({"argv": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                   "cwd": directory, "env": {"PATH": "/usr/bin:/bin"}, "grace": 5}, f)


def service_pid(server, name):
    with open(os.path.join(server.root, "run", "services.json")) as f:
        saved = json.load(f)["services"].get(name)
    return saved and saved["pid"]


def free_port(server):
    return next(p for p in range(server.start_port + 10, server.start_port + 20) if port_is_free(p))


def test_a_service_is_kept_running_adopted_by_the_standby_and_stopped_at_shutdown(server):
    port = free_port(server)
    declare(server, "web-files", port)
    server.remote("startup")
    url = f"http://127.0.0.1:{port}/"
    wait_for_http(url, timeout=15)
    first = service_pid(server, "web-files")

    os.kill(first, signal.SIGKILL)
    wait_until(lambda: service_pid(server, "web-files") not in (None, first), 15, message="a new service process")
    wait_for_http(url, timeout=15)
    second = service_pid(server, "web-files")

    with open(os.path.join(server.root, "run", "supervisor.pid")) as f:
        supervisor = int(f.read())
    os.kill(supervisor, signal.SIGKILL)  # the standby takes over and adopts the service, starting no second one
    wait_until(lambda: open(os.path.join(server.root, "run", "supervisor.pid")).read().strip() != str(supervisor),
               10, message="the standby to take over")
    assert http_get(url)[0] == 200 and service_pid(server, "web-files") == second

    def log():
        with open(os.path.join(server.root, "run", "supervisor.log")) as f:
            return f.read()
    # the pid file changes as the standby takes over; its "adopted" line follows a moment later
    wait_until(lambda: f"service web-files adopted (pid {second})" in log(), 10,
               message="the standby to say it adopted the service (not started a second one): " + log()[-2000:])
    assert service_pid(server, "web-files") == second

    server.remote("shutdown")
    assert wait_until(lambda: http_get(url) is None, 10, message="the service to stop") is True


def test_a_withdrawn_service_is_stopped(server):
    port = free_port(server)
    declare(server, "gone-soon", port)
    server.remote("startup")
    wait_for_http(f"http://127.0.0.1:{port}/", timeout=15)
    os.unlink(os.path.join(server.root, "services", "gone-soon.json"))
    server.remote("startup")  # a full sync, as features do after withdrawing a service
    assert wait_until(lambda: http_get(f"http://127.0.0.1:{port}/") is None, 10, message="the service to stop")
