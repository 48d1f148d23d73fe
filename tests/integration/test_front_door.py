"""nginx in front of every app, on this machine: switches without a failed request, domains, scaling, maintenance,
router logs, health checks, HTTPS with certs:add, and the same commands on a server without nginx.

Each test has its own server (own root, own nginx with its own ports); requests go to 127.0.0.1 only.
"""

import json
import os
import re
import signal
import socket
import ssl
import threading

import pytest

from support import http_answer as get, Loader, node_app, run, wait_until

SERVER_JS = """const http = require("http");
let inflight = 0;
const version = %s;
http.createServer((req, res) => {
  if (req.url === "/slow") { inflight++; setTimeout(() => { inflight--; res.end("slow " + version); }, 5000); return; }
  if (req.url === "/inflight") { res.end(String(inflight)); return; }
  if (req.url === "/health") { res.statusCode = %s; res.end("health"); return; }
  res.setHeader("Content-Type", "text/plain");
  res.end(version + " " + process.env.DYNO + " " + process.env.PORT + " " + (req.headers.host || ""));
}).listen(process.env.PORT, () => console.log("listening on port " + process.env.PORT));
"""


def web_app(version, health=200, extra=None):
    files = node_app("unused", extra=extra)
    files["server.js"] = SERVER_JS % (json.dumps(version), health)
    return files


def deploy(server, tmp_path, version="v1", **kw):
    app = server.new_app(tmp_path, web_app(version, **kw), prefix="door")
    server.push(app)
    return app


def test_no_request_fails_across_redeploys_restarts_config_changes_a_rejected_push_a_rollback_and_scaling(
        server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    slow = {}
    with Loader(port) as loader:
        wait_until(lambda: loader.ok > 5, 10, message="the loader's first answers")
        thread = threading.Thread(target=lambda: slow.update(answer=get(port, "/slow", timeout=30)))
        thread.start()
        wait_until(lambda: (get(port, "/inflight") or ())[:2] == (200, "1"), 10,
                   message="the slow request to be in flight")  # when the first switch begins
        for n in range(2, 7):
            server.commit(app, web_app("v%d" % n))
            server.push(app)
        thread.join(30)
        server.tinyserv("ps:restart", cwd=app.path)
        server.tinyserv("config:set", "GREETING=hi", cwd=app.path)
        server.commit(app, dict(web_app("v7"), **{"server.js": "process.exit(1)\n"}))
        assert server.push(app, check=False).returncode != 0
        server.git("reset", "-q", "--hard", "HEAD~1", cwd=app.path)
        server.tinyserv("rollback", cwd=app.path)
        server.tinyserv("ps:scale", "web=3", cwd=app.path)
        crashed = instance_pid(server, app, "web.2")
        os.killpg(crashed, signal.SIGKILL)  # one of several web instances crashes: nginx retries on another
        wait_until(lambda: instance_pid(server, app, "web.2") not in (None, crashed), 15, message="web.2 again")
        server.tinyserv("ps:scale", "web=1", cwd=app.path)
    assert slow["answer"][:2] == (200, "slow v1")  # it began before the first deploy and ended after it
    assert loader.failed == [] and loader.ok > 100, (loader.failed[:5], loader.ok)
    assert {"v1", "v6"} <= loader.bodies


def test_domains_route_by_host_and_an_unknown_host_gets_a_404_never_another_app(server, tmp_path):
    one = deploy(server, tmp_path, "one")
    two = deploy(server, tmp_path, "two")
    server.tinyserv("domains:add", "www.one.test", cwd=one.path)
    server.tinyserv("domains:add", "two.test", cwd=two.path)
    assert get(server.http_port, host="www.one.test")[1].startswith("one ")
    assert get(server.http_port, host="two.test")[1].startswith("two ")
    status, body, _ = get(server.http_port, host="nobody.test")
    assert status == 404 and "one" not in body and "two" not in body
    assert get(server.http_port)[0] == 404  # no Host header that names an app
    assert get(server.port(one), host="two.test")[1].startswith("one ")  # an app's own port is its own

    taken = server.tinyserv("domains:add", "two.test", cwd=one.path, check=False)
    assert taken.returncode == 1 and "belongs to the app %s" % two.name in taken.stderr
    listed = json.loads(server.tinyserv("domains", "--json", cwd=one.path).stdout)
    assert listed["domains"] == ["www.one.test"] and listed["http_port"] == server.http_port
    with open(os.path.join(server.root, "releases", one.name + ".json")) as f:
        public = json.load(f)
    assert public["domains"] == ["www.one.test"] and public["port"] == server.port(one)
    assert [w["name"] for w in public["web"]] == ["web.1"]

    server.tinyserv("domains:remove", "www.one.test", cwd=one.path)
    assert get(server.http_port, host="www.one.test")[0] == 404


def test_destroy_removes_the_app_s_domains_certificates_and_nginx_config(server, tmp_path):
    app = deploy(server, tmp_path)
    server.tinyserv("domains:add", "gone.test", cwd=app.path)
    cert, key = self_signed(tmp_path, "gone.test")
    server.tinyserv("certs:add", cert, key, cwd=app.path)
    server.tinyserv("apps:destroy", "--confirm", app.name, cwd=app.path)
    conf = os.path.join(server.root, "nginx", "nginx.conf")
    wait_until(lambda: app.name not in open(conf).read(), 10, message="nginx.conf to forget the app")
    assert get(server.http_port, host="gone.test")[0] == 404
    assert server.paths_naming(app.name) == []
    other = deploy(server, tmp_path, "other")
    server.tinyserv("domains:add", "gone.test", cwd=other.path)  # the name is free again


def test_web_scales_to_several_instances_balanced_by_nginx_and_affinity_keeps_a_client_on_one(server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    server.tinyserv("ps:scale", "web=3", cwd=app.path)
    ps = server.tinyserv("ps", cwd=app.path).stdout
    assert [line.split()[0] for line in ps.splitlines() if line.startswith("web.")] == ["web.1", "web.2", "web.3"]
    dynos = {get(port)[1].split()[1] for _ in range(30)}
    assert dynos == {"web.1", "web.2", "web.3"}

    server.tinyserv("features:enable", "http-session-affinity", cwd=app.path)
    assert "[+] http-session-affinity" in server.tinyserv("features", cwd=app.path).stdout
    status, body, headers = get(port)
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie.startswith("tinyserv_session_affinity=")
    assert {get(port, headers={"Cookie": cookie})[1].split()[1] for _ in range(20)} == {body.split()[1]}
    server.tinyserv("features:disable", "http-session-affinity", cwd=app.path)
    assert "Set-Cookie" not in get(port)[2]


def test_maintenance_mode_answers_503_while_the_processes_keep_running(server, tmp_path):
    app = deploy(server, tmp_path)
    port = server.port(app)
    server.tinyserv("domains:add", "maint.test", cwd=app.path)
    pids = server.app_processes(app)
    server.tinyserv("maintenance:on", cwd=app.path)
    assert server.tinyserv("maintenance", cwd=app.path).stdout == "on\n"
    for answer in (get(port), get(server.http_port, host="maint.test")):
        assert answer[0] == 503 and "Maintenance mode" in answer[1]
    assert server.app_processes(app) == pids
    server.tinyserv("maintenance:off", cwd=app.path)
    assert get(port)[1].startswith("v1 ")


def test_each_request_is_a_router_line_in_the_app_log_and_logs_ps_router_shows_only_those(server, tmp_path):
    app = deploy(server, tmp_path)
    get(server.port(app), "/some/path?x=1", host="example.test")

    def router_lines():
        lines = server.tinyserv("logs", "--ps", "router", cwd=app.path).stdout.splitlines()
        return [line for line in lines if "/some/path" in line] and lines
    lines = wait_until(router_lines, 10, message="a router line")
    assert all(" router: " in line for line in lines), lines
    line = next(line for line in lines if "/some/path" in line)
    assert re.search(r'router: at=info method=GET path="/some/path\?x=1" host=example.test request_id=\w+ '
                     r'fwd="127.0.0.1" dyno=web.1 connect=\d+ms service=\d+ms status=200 bytes=\d+ protocol=http$',
                     line), line


def test_a_health_check_path_must_answer_before_web_counts_as_up(server, tmp_path):
    app_json = json.dumps({"healthchecks": {"web": [{"type": "startup", "name": "up", "path": "/health"}]}})
    app = server.new_app(tmp_path, web_app("v1", health=200, extra={"app.json": app_json}), prefix="door")
    pushed = server.push(app)
    assert "Checking that web boots and answers GET /health" in pushed.stderr
    server.commit(app, web_app("v2", health=500, extra={"app.json": app_json}))
    server.tinyserv("config:set", "TINYSERV_BOOT_TIMEOUT=3", cwd=app.path)
    rejected = server.push(app, check=False)
    assert rejected.returncode != 0
    assert "web did not answer GET /health with 2xx or 3xx within 3 s" in rejected.stderr
    assert get(server.port(app))[1].startswith("v1 ")


def test_https_serves_a_certificate_by_sni_and_refuses_bad_ones_in_one_line(server, tmp_path):
    app = deploy(server, tmp_path)
    server.tinyserv("domains:add", "secure.test", cwd=app.path)
    cert, key = self_signed(tmp_path, "secure.test")
    added = server.tinyserv("certs:add", cert, key, cwd=app.path)
    assert "It serves secure.test over HTTPS" in added.stdout
    context = ssl.create_default_context(cafile=cert)
    with socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="secure.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
            reply = tls.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 200") and "v1 web.1" in reply
    with pytest.raises(ssl.SSLError):  # another name: the handshake is refused, no other app's certificate
        with socket.create_connection(("127.0.0.1", server.https_port), timeout=10) as raw:
            ssl._create_unverified_context().wrap_socket(raw, server_hostname="other.test")
    listed = json.loads(server.tinyserv("certs", "--json", cwd=app.path).stdout)
    assert [(c["names"], c["serves"]) for c in listed] == [(["secure.test"], ["secure.test"])]

    other_cert, other_key = self_signed(tmp_path / "other", "secure.test")
    expired_cert, expired_key = expired(tmp_path, "secure.test")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    for args, words in [((cert, other_key), "does not match"), ((expired_cert, expired_key), "expired on 2020-01-02"),
                        ((garbage, key), "not a PEM X.509 certificate"), ((key, key), "not in PEM form"),
                        ((tmp_path / "missing.pem", key), "cannot read")]:
        before = server.snapshot()
        result = server.tinyserv("certs:add", *args, cwd=app.path, check=False)
        assert result.returncode == 1 and words in result.stderr and result.stderr.count("\n") == 1, result
        assert server.snapshot() == before
    server.tinyserv("certs:remove", cwd=app.path)
    assert json.loads(server.tinyserv("certs", "--json", cwd=app.path).stdout) == []


@pytest.mark.parametrize("args, words", [
    (["domains:add", "*"], "invalid domain '*'"), (["domains:add", ".."], "invalid domain '..'"),
    (["domains:add", "a" * 300], "1 to 253 characters"), (["domains:add", "bücher.test"], "xn--"),
    (["domains:add", "a b.test"], "invalid domain 'a b.test'"), (["domains:add", ";"], "invalid domain ';'"),
    (["domains:remove", "not-mine.test"], "does not answer at not-mine.test"),
    (["ps:scale", "web=21"], "web runs at most 20"), (["features:enable", "nope"], "no feature 'nope'"),
    (["certs:remove", "nope"], "no certificate named 'nope'"),
])
def test_bad_input_at_the_front_door_is_refused_in_one_line_and_changes_nothing(module_server, tmp_path_factory,
                                                                                args, words):
    server = module_server
    app = shared_app(server, tmp_path_factory)
    before = server.snapshot()
    result = server.tinyserv(*args, cwd=app.path, check=False)
    assert result.returncode == 1 and words in result.stderr and result.stderr.count("\n") == 1, result
    assert result.stdout == "" and server.snapshot() == before


def test_a_domain_is_refused_when_it_is_already_the_app_s_and_the_server_refuses_what_the_client_would(
        module_server, tmp_path_factory):
    server = module_server
    app = shared_app(server, tmp_path_factory)
    server.tinyserv("domains:add", "dup.test", cwd=app.path)
    before = server.snapshot()
    again = server.tinyserv("domains:add", "dup.test", cwd=app.path, check=False)
    assert again.returncode == 1 and "already answers at dup.test" in again.stderr
    hostile = server.remote("domains:add", "--", app.name, "*", check=False)  # what a client we do not control sends
    assert hostile.returncode == 1 and "invalid domain '*'" in hostile.stderr
    assert server.snapshot() == before
    server.tinyserv("domains:remove", "dup.test", cwd=app.path)


def test_a_change_nginx_refuses_fails_with_nginx_s_message_and_changes_nothing(server, tmp_path):
    picky = tmp_path / "picky-nginx"
    refuse = tmp_path / "refuse"
    picky.write_text("#!/bin/sh\n# nginx, except that `nginx -t` refuses while %s exists\n"
                     "case \" $* \" in *\" -t \"*) [ -e %s ] && { echo 'nginx: [emerg] refused by the test' >&2; "
                     "exit 1; } ;; esac\nexec /usr/sbin/nginx \"$@\"\n" % (refuse, refuse))
    picky.chmod(0o755)
    server.env["TINYSERV_NGINX"] = str(picky)
    app = deploy(server, tmp_path)
    conf = open(os.path.join(server.root, "nginx", "nginx.conf")).read()
    refuse.write_text("")
    result = server.tinyserv("domains:add", "refused.test", cwd=app.path, check=False)
    assert result.returncode == 1 and "nginx refused the change: refused by the test; nothing changed" in result.stderr
    assert json.loads(server.tinyserv("domains", "--json", cwd=app.path).stdout)["domains"] == []
    assert open(os.path.join(server.root, "nginx", "nginx.conf")).read() == conf
    assert get(server.port(app))[1].startswith("v1 ")


def test_without_nginx_apps_run_on_their_ports_and_the_front_door_commands_say_how_to_get_it(server, tmp_path):
    server.without_nginx()
    app = deploy(server, tmp_path)
    port = server.port(app)
    assert get(port)[1] == "v1 web.1 %d 127.0.0.1:%d" % (port, port)
    for args in (["domains:add", "x.test"], ["maintenance:on"], ["features:enable", "http-session-affinity"],
                 ["ps:scale", "web=2"]):
        result = server.tinyserv(*args, cwd=app.path, check=False)
        assert result.returncode == 1 and "nginx is missing" in result.stderr and "apt install nginx-light" in \
            result.stderr and result.stderr.count("\n") == 1, result
    assert not os.path.exists(os.path.join(server.root, "nginx", "nginx.conf"))


# --- helpers -----------------------------------------------------------------------------------------


def instance_pid(server, app, name):
    """The pid of the running instance name (not an old one draining), or None."""
    ps = json.loads(server.tinyserv("ps", "--json", cwd=app.path).stdout)
    return next((i["pid"] for i in ps["instances"] if i["name"] == name and i["state"] == "up"), None)


_shared = {}


def shared_app(server, tmp_path_factory):
    """One deployed app on the module's server (made once)."""
    if server.root not in _shared:
        _shared[server.root] = deploy(server, tmp_path_factory.mktemp("shared"))
    return _shared[server.root]


def self_signed(directory, name):
    """A self-signed certificate for name and its key: (cert path, key path)."""
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "30",
         "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name])
    return cert, key


def expired(directory, name):
    """A certificate for name that expired on 2020-01-02, and its key."""
    ca = os.path.join(directory, "expired-ca")
    os.makedirs(os.path.join(ca, "db"), exist_ok=True)
    open(os.path.join(ca, "db", "index.txt"), "w").close()
    with open(os.path.join(ca, "db", "serial"), "w") as f:
        f.write("01\n")
    with open(os.path.join(ca, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = x\n[x]\ndatabase = db/index.txt\nnew_certs_dir = db\nserial = db/serial\n"
                "default_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n")
    run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-subj", "/CN=" + name,
         "-out", "req.csr"], cwd=ca)
    run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "key.pem", "-in", "req.csr",
         "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-out", "cert.pem"], cwd=ca)
    return os.path.join(ca, "cert.pem"), os.path.join(ca, "key.pem")


def test_nginx_installed_later_takes_the_app_s_port_at_the_next_startup_and_web_moves_behind_it(server, tmp_path):
    later = os.path.join(os.path.dirname(server.root), "nginx-installed-later")
    server.env["TINYSERV_NGINX"] = later  # names nothing yet: no nginx on this server
    app = deploy(server, tmp_path)
    port = server.port(app)
    assert get(port)[1] == "v1 web.1 %d 127.0.0.1:%d" % (port, port)
    os.symlink("/usr/sbin/nginx", later)
    server.remote("startup")

    def behind_nginx():
        answer = get(port)
        return answer and answer[0] == 200 and answer[1].split()[2] != str(port) and answer
    status, body, _ = wait_until(behind_nginx, 30, message="nginx to answer on the app's port")
    assert body.startswith("v1 web.1 ")
    server.tinyserv("domains:add", "later.test", cwd=app.path)
    assert get(server.http_port, host="later.test")[1].split()[:3] == body.split()[:3]


def test_with_tinyserv_domain_every_app_also_answers_at_its_name_under_it(server, tmp_path):
    server.env["TINYSERV_DOMAIN"] = "apps.test"
    one = deploy(server, tmp_path, "one")
    two = deploy(server, tmp_path, "two")
    assert get(server.http_port, host="%s.apps.test" % one.name)[1].startswith("one ")
    assert get(server.http_port, host="%s.apps.test" % two.name)[1].startswith("two ")
    assert get(server.http_port, host="nobody.apps.test")[0] == 404
    listed = json.loads(server.tinyserv("domains", "--json", cwd=one.path).stdout)
    assert listed["default"] == "%s.apps.test" % one.name and listed["domains"] == []
    taken = server.tinyserv("domains:add", "%s.apps.test" % two.name, cwd=one.path, check=False)
    assert taken.returncode == 1 and "belongs to the app %s" % two.name in taken.stderr
    future = server.tinyserv("domains:add", "not-yet-an-app.apps.test", cwd=one.path, check=False)
    assert future.returncode == 1 and "the name the app not-yet-an-app would answer at" in future.stderr
