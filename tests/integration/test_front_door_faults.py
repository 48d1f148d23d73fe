"""The front door is never a single point of failure (issue 17 items 1, 2, 3, 5; issue 16 item 6), on this machine.

nginx's HTTP port taken, its config broken by hand, nginx killed again and again, a change nginx does not take,
maintenance mode during deploys, and a crashed web's port taken by another program: each app's own port keeps
serving, nginx is back at once, and a request never reaches a process that is not the app's.
"""

import json
import os
import re
import signal
import socket
import threading
import time

from support import http_answer as get, wait_until
from test_front_door import deploy, instance_pid, web_app


def supervisor_log(server):
    with open(os.path.join(server.root, "run", "supervisor.log"), errors="replace") as f:
        return f.read()


def wait_for_door(server, predicate, timeout, message):
    """wait_until, and on a timeout the supervisor's and nginx's last words: what the supervisor did meanwhile."""
    __tracebackhide__ = True
    try:
        return wait_until(predicate, timeout, message=message)
    except AssertionError as e:
        try:
            with open(os.path.join(server.root, "services", "nginx.log"), errors="replace") as f:
                nginx_log = f.read()[-2000:]
        except OSError as missing:
            nginx_log = str(missing)
        raise AssertionError("%s\n--- supervisor.log (end)\n%s\n--- services/nginx.log (end)\n%s" % (
            e, supervisor_log(server)[-4000:], nginx_log)) from None


def nginx_master(server):
    """The pid of nginx's master process, as the supervisor last saved it (None when it does not run)."""
    try:
        with open(os.path.join(server.root, "run", "services.json")) as f:
            saved = json.load(f)["services"].get("nginx")
    except (OSError, ValueError):
        return None
    return saved and saved["pid"]


def answers(port, starting, host=None):
    """Does port answer 200 with a body that starts with starting?"""
    answer = get(port, host=host, timeout=2)
    return bool(answer and answer[0] == 200 and answer[1].startswith(starting))


class Squatter:
    """Another program holding a port: it answers every request with 'squatter'."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.listen(64)
        self.served = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nsquatter")
                    self.served += 1
                except OSError:
                    pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def squat(port):
    """A Squatter on port, or None while something else holds it."""
    try:
        return Squatter(port)
    except OSError:
        return None


def test_the_http_port_taken_at_startup_leaves_every_app_s_own_port_serving_and_is_taken_once_free(
        server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    server.tinyserv("domains:add", "taken.test", cwd=app.path)
    server.remote("shutdown")
    squatter = Squatter(server.http_port)
    try:
        server.remote("startup")
        wait_until(lambda: answers(port, "v1 "), 10, message="the app's own port while the HTTP port is taken")
        assert get(server.http_port, host="taken.test")[1] == "squatter"
        said = [line for line in supervisor_log(server).splitlines() if "HTTP port %d" % server.http_port in line]
        assert len(said) == 1 and "in use by another program" in said[0], said
        doctor = server.remote("doctor", check=False)
        assert re.search(r"nginx cannot listen on the HTTP port %d.*in use by another program" % server.http_port,
                         doctor.stdout), doctor.stdout
        started = supervisor_log(server).count("service nginx started")
        time.sleep(3)  # what a tight loop would fill with restarts
        assert supervisor_log(server).count("service nginx started") == started
    finally:
        squatter.close()
    wait_until(lambda: answers(server.http_port, "v1 ", host="taken.test"), 10,
               message="nginx to take the HTTP port once it is free")
    assert answers(port, "v1 ")
    assert "nginx can listen on the HTTP port %d again" % server.http_port in supervisor_log(server)


def test_nginx_conf_broken_by_hand_is_written_anew_from_tinyserv_s_state_when_nginx_restarts(server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    conf = os.path.join(server.root, "nginx", "nginx.conf")
    with open(conf, "w") as f:
        f.write("this is not an nginx config {\n")
    os.kill(nginx_master(server), signal.SIGKILL)
    wait_for_door(server, lambda: answers(port, "v1 "), 5, "nginx back on a config written anew")
    assert "tinyserv" in open(conf).read().splitlines()[0]


def test_nginx_killed_again_and_again_is_back_at_once_each_time(server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    for kill in range(5):
        master = nginx_master(server)
        os.kill(master, signal.SIGKILL)
        began = time.monotonic()
        wait_for_door(server, lambda: nginx_master(server) not in (None, master) and answers(port, "v1 "), 10,
                      "nginx back after kill %d" % (kill + 1))
        assert time.monotonic() - began < 2.5, "kill %d: nginx took %.1f s to come back" % (
            kill + 1, time.monotonic() - began)


def test_a_front_door_change_nginx_does_not_take_fails_and_leaves_the_app_s_settings_as_they_were(server, tmp_path):
    stubborn = tmp_path / "stubborn-nginx"
    refuse = tmp_path / "refuse"
    # nginx, except that the supervisor's own check of a new config fails while `refuse` exists: the command's check
    # passes, the supervisor never takes the change.
    stubborn.write_text("#!/bin/sh\ncase \" $* \" in *\" -t \"*nginx.conf.new*) [ -e %s ] && { "
                        "echo 'nginx: [emerg] refused by the test' >&2; exit 1; } ;; esac\n"
                        "exec /usr/sbin/nginx \"$@\"\n" % refuse)
    stubborn.chmod(0o755)
    server.env["TINYSERV_NGINX"] = str(stubborn)
    app = deploy(server, tmp_path)
    refuse.write_text("")
    result = server.tinyserv("features:enable", "http-session-affinity", cwd=app.path, check=False)
    assert result.returncode == 1 and "nothing changed" in result.stderr, result
    assert "[ ] http-session-affinity" in server.tinyserv("features", cwd=app.path).stdout
    refuse.unlink()
    assert answers(server.port(app), "v1 ")


def test_releases_work_as_usual_in_maintenance_mode(server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    server.tinyserv("maintenance:on", cwd=app.path)
    began = time.monotonic()
    server.commit(app, web_app("v2"))
    server.push(app)
    server.tinyserv("config:set", "GREETING=hi", cwd=app.path)
    server.tinyserv("ps:restart", cwd=app.path)
    took = time.monotonic() - began
    assert get(port)[0] == 503
    server.tinyserv("maintenance:off", cwd=app.path)
    assert answers(port, "v2 ")
    assert took < 20, "a push, a config:set and a ps:restart in maintenance mode took %.0f s" % took


def test_a_crashed_web_s_port_taken_by_another_program_never_gets_the_app_s_requests(server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    for _ in range(2):  # the second crash in a row waits 2 s before its restart (backoff)
        pid = wait_until(lambda: instance_pid(server, app, "web.1"), 15, message="web.1 up")
        ps = json.loads(server.tinyserv("ps", "--json", cwd=app.path).stdout)
        internal = next(i["port"] for i in ps["instances"] if i["name"] == "web.1" and i["state"] == "up")
        # Up is not yet routed: killed before nginx runs the config that names it, the wait below would pass on
        # the config before, and the reload in flight would route to the port after all.
        wait_until(lambda: internal in routed_ports(server, app), 15, interval=0.01, message="web.1 routed")
        os.killpg(pid, signal.SIGKILL)
    began = time.monotonic()
    wait_until(lambda: internal not in routed_ports(server, app), 5, interval=0.01,
               message="nginx to route nothing to the crashed web's port %d" % internal)
    reaction = time.monotonic() - began
    squatter = wait_until(lambda: squat(internal), 5, interval=0.01, message="web.1's port to be free")
    try:
        bodies = [(get(port, timeout=2) or (None, None))[1] for _ in range(30)]
        assert squatter.served == 0 and "squatter" not in bodies, bodies
        seen = []

        def back():  # 20 answers in a row from the app (its restart may still be settling when the first comes)
            seen[:] = [(get(port, timeout=2) or (None, None))[1] for _ in range(20)]
            return all(b and b.startswith("v1 ") for b in seen)
        wait_until(back, 20, message="web.1 back on a port of its own")
        assert squatter.served == 0, seen
    finally:
        squatter.close()
    assert reaction < 2, "the crashed web's port stayed in nginx's upstream for %.1f s" % reaction


def routed_ports(server, app):
    """The internal ports the config nginx runs sends app's requests to (nginx/routes.json)."""
    try:
        with open(os.path.join(server.root, "nginx", "routes.json")) as f:
            site = json.load(f)["sites"][app.name]
    except (OSError, ValueError, KeyError):
        return set()
    return set(site["primary"]) | set(site["backup"])
