"""nginx in front of every app (issue 8), over real ssh: switches without one failed request, domains and 404s,
HTTPS with certs:add and with certbot against pebble (an ACME server of the test's own, renewal included), web
scaling, session affinity, maintenance mode, router logs, health checks, destroy, hostile input, and port 80
bound by nginx alone when tinyserv holds CAP_NET_BIND_SERVICE.

Apps here are named door-... and destroyed at the end of their test. nginx's HTTP and HTTPS ports in the container
are 8080 and 8443 (docker/deploy-env.sh), published on loopback.
"""

import hashlib
import json
import shlex
import socket
import ssl
import threading

import pytest

from support import describe, http_answer, Loader, make_app, wait_until
from helpers import ROOT, App, package_json

SERVER_JS = """const http = require("http");
let inflight = 0;
const version = %s;
http.createServer((req, res) => {
  if (req.url === "/slow") { inflight++; setTimeout(() => { inflight--; res.end("slow " + version); }, 5000); return; }
  if (req.url === "/inflight") { res.end(String(inflight)); return; }
  if (req.url === "/health") { res.statusCode = %d; res.end("health"); return; }
  res.end(version + " " + process.env.DYNO);
}).listen(process.env.PORT, () => console.log("listening on port " + process.env.PORT));
"""
PEBBLE = "/home/deploy/pebble"


def web_app(version, health=200, extra=None):
    files = {"package.json": package_json(), "Procfile": "web: node index.js\n",
             "index.js": SERVER_JS % (json.dumps(version), health)}
    files.update(extra or {})
    return files


@pytest.fixture
def door_app(server, tmp_path):
    """A factory: door_app(short_name, files) makes and deploys door-SHORT_NAME; all destroyed afterwards."""
    created = []

    def create(short_name, files, push=True):
        name = "door-" + short_name
        app = App(server, make_app(tmp_path / name, files), name)
        app.tinyserv("apps:create", name)
        created.append(app)
        if push:
            app.push()
        return app

    yield create
    for app in created:
        result = app.tinyserv("apps:destroy", "--confirm", app.name, check=False)
        assert result.returncode == 0 or "no app named" in result.stderr, describe(result)


def get(server, container_port, path="/", host=None, headers=None, timeout=10):
    """(status, body, headers) of GET path on the container's port, from this machine; None when nothing answers."""
    return http_answer(server.port(container_port), path, host, headers, timeout)


def instance_pid(app, name):
    """The pid of app's running instance name (not an old one draining), or None."""
    ps = json.loads(app.tinyserv("ps", "--json").stdout)
    return next((i["pid"] for i in ps["instances"] if i["name"] == name and i["state"] == "up"), None)


def test_not_one_request_fails_across_redeploys_restarts_config_a_rejected_push_a_rollback_and_scaling(door_app):
    app = door_app("steady", web_app("v1"))
    port = app.info()["port"]
    slow = {}
    with Loader(app.server.port(port)) as loader:
        wait_until(lambda: loader.ok > 5, 20, message="the loader's first answers")
        spanning = threading.Thread(target=lambda: slow.update(answer=get(app.server, port, "/slow", timeout=30)))
        spanning.start()
        wait_until(lambda: (get(app.server, port, "/inflight") or ())[:2] == (200, "1"), 10,
                   message="the slow request to be in flight")  # when the first switch begins
        for n in range(2, 7):
            app.commit(web_app("v%d" % n), "v%d" % n)
            app.push()
        spanning.join(30)
        app.tinyserv("ps:restart")
        app.tinyserv("config:set", "GREETING=hello")
        app.commit({"index.js": "process.exit(3)\n"}, "a version that does not boot")
        assert app.push(check=False).returncode != 0
        app.git("reset", "-q", "--hard", "HEAD~1")
        app.tinyserv("rollback")
        app.tinyserv("ps:scale", "web=3")
        crashed = instance_pid(app, "web.2")
        app.server.ssh("kill -9 -- -%d" % crashed)  # one of several web instances crashes: nginx retries another
        wait_until(lambda: instance_pid(app, "web.2") not in (None, crashed), 20, message="web.2 to be back")
        app.tinyserv("ps:scale", "web=1")
    assert slow["answer"][:2] == (200, "slow v1")
    assert loader.failed == [] and loader.ok > 200, (loader.failed[:10], loader.ok)
    assert {"v1", "v6"} <= loader.bodies


def test_with_two_webs_killing_one_again_and_again_under_load_fails_no_request(door_app):
    app = door_app("pair", web_app("v1"))
    app.tinyserv("ps:scale", "web=2")
    port = app.info()["port"]
    with Loader(app.server.port(port)) as loader:  # a GET every 10 ms
        wait_until(lambda: loader.ok > 5, 20, message="the loader's first answers")
        for kill in range(6):
            name = "web.%d" % (kill % 2 + 1)
            victim = wait_until(lambda: instance_pid(app, name), 20, message="%s up" % name)
            before = loader.ok
            app.server.ssh("kill -9 -- -%d" % victim)
            wait_until(lambda: instance_pid(app, name) not in (None, victim), 20, message="%s back" % name)
            wait_until(lambda: loader.ok > before + 20, 20, message="requests after kill %d" % (kill + 1))
    assert loader.failed == [] and loader.ok > 120, (loader.failed[:10], loader.ok)


def test_domains_route_by_host_a_stranger_s_host_gets_404_and_another_app_s_host_is_never_served(door_app,
                                                                                              tmp_path):
    one = door_app("one", web_app("one"))
    two = door_app("two", web_app("two"))
    one.tinyserv("domains:add", "www.one.test")
    two.tinyserv("domains:add", "two.test")
    server = one.server
    assert get(server, 8080, host="www.one.test")[1] == "one web.1"
    assert get(server, 8080, host="two.test")[1] == "two web.1"
    for host in ("three.test", "www.two.test", "one.test", None):
        status, body, _ = get(server, 8080, host=host)
        assert status == 404 and "one" not in body.replace("no app", "") and "two" not in body, (host, body)
    taken = one.tinyserv("domains:add", "two.test", check=False)
    assert taken.returncode == 1 and f"belongs to the app {two.name}" in taken.stderr
    shown = one.tinyserv("domains").stdout
    assert "www.one.test" in shown and "two.test" not in shown
    public = json.loads(server.ssh(f"cat {ROOT}/releases/{one.name}.json").stdout)
    assert public["domains"] == ["www.one.test"] and public["web"][0]["name"] == "web.1"

    server.ssh("cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -keyout two.key -out two.crt -days 30 "
               "-subj /CN=two.test -addext subjectAltName=DNS:two.test 2>/dev/null")
    for name in ("two.crt", "two.key"):
        (tmp_path / name).write_text(server.ssh(f"cat /tmp/{name}").stdout)
    two.tinyserv("certs:add", str(tmp_path / "two.crt"), str(tmp_path / "two.key"))
    assert "two.test" in server.ssh(f"cat {ROOT}/nginx/nginx.conf").stdout

    two.tinyserv("apps:destroy", "--confirm", two.name)
    assert get(server, 8080, host="two.test")[0] == 404
    conf = server.ssh(f"cat {ROOT}/nginx/nginx.conf").stdout
    assert two.name not in conf and "two.test" not in conf
    assert server.ssh(f"ls -d {ROOT}/apps/{two.name}", check=False).returncode != 0  # its certificates too
    one.tinyserv("domains:add", "two.test")  # free again
    assert get(server, 8080, host="two.test")[1] == "one web.1"


def test_scaling_affinity_maintenance_router_logs_and_a_health_check(door_app):
    app_json = json.dumps({"healthchecks": {"web": [{"type": "startup", "name": "up", "path": "/health"}]}})
    app = door_app("scale", web_app("v1", extra={"app.json": app_json}))
    server, port = app.server, app.info()["port"]
    app.tinyserv("ps:scale", "web=3")
    names = [line.split()[0] for line in app.tinyserv("ps").stdout.splitlines() if line.startswith("web.")]
    assert names == ["web.1", "web.2", "web.3"]
    assert {get(server, port)[1].split()[1] for _ in range(40)} == {"web.1", "web.2", "web.3"}

    app.tinyserv("features:enable", "http-session-affinity")
    first = get(server, port)
    cookie = first[2]["Set-Cookie"].split(";")[0]
    assert {get(server, port, headers={"Cookie": cookie})[1] for _ in range(20)} == {first[1]}

    pids = server.ssh(f"pgrep -u deploy -f '[n]ode index.js' | sort").stdout
    app.tinyserv("maintenance:on")
    status, body, _ = get(server, port)
    assert status == 503 and "Maintenance mode" in body
    assert server.ssh(f"pgrep -u deploy -f '[n]ode index.js' | sort").stdout == pids
    app.tinyserv("maintenance:off")
    assert get(server, port)[0] == 200

    get(server, port, "/router-line-please")
    lines = wait_until(lambda: [l for l in app.tinyserv("logs", "--ps", "router", "-n", "200").stdout.splitlines()
                                if "/router-line-please" in l], 10, message="the router line")
    assert 'at=info method=GET path="/router-line-please"' in lines[0] and "status=200" in lines[0]
    assert "dyno=web." in lines[0] and "service=" in lines[0] and "bytes=" in lines[0]

    app.commit(web_app("v2", health=500, extra={"app.json": app_json}), "health check fails")
    app.tinyserv("config:set", "TINYSERV_BOOT_TIMEOUT=3")
    rejected = app.push(check=False)
    assert rejected.returncode != 0 and "web did not answer GET /health with 2xx or 3xx within 3 s" in rejected.stderr
    assert get(server, port)[1].startswith("v1 ")


@pytest.fixture
def pebble(server):
    """pebble, the ACME test server, running in the container with a TLS certificate made here; certbot (run by
    tinyserv as deploy) trusts it through REQUESTS_CA_BUNDLE in ~/.tinyserv-test-env."""
    config = {"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
                         "certificate": f"{PEBBLE}/cert.pem", "privateKey": f"{PEBBLE}/key.pem",
                         "httpPort": 8080, "tlsPort": 8443, "ocspResponderURL": "",
                         "externalAccountBindingRequired": False}}
    server.ssh(f"mkdir -p {PEBBLE} && cd {PEBBLE} && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem "
               "-out cert.pem -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
               "2>/dev/null && cat > pebble.json", input=json.dumps(config))
    # Always valid (no challenge is checked), no random sleeps, no nonces refused on purpose: a quick, certain run.
    server.ssh(f"cd {PEBBLE} && (PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 setsid pebble "
               "-config pebble.json > pebble.log 2>&1 < /dev/null &)")
    server.ssh("cat > ~/.tinyserv-test-env", input=(
        f"export TINYSERV_ACME_DIRECTORY=https://localhost:14000/dir\nexport REQUESTS_CA_BUNDLE={PEBBLE}/cert.pem\n"
        "export TINYSERV_ACME_EMAIL=ops@door.test\n"))
    try:
        wait_until(lambda: server.ssh(fetch("https://localhost:14000/dir", cafile=f"{PEBBLE}/cert.pem"),
                                      check=False).returncode == 0 or None, 30, message="pebble to answer")
        yield
    finally:
        server.ssh("rm -f ~/.tinyserv-test-env; pkill -u deploy -x pebble || true", check=False)


def fetch(url, host=None, cafile=None):
    """A shell command for the server that prints the body at url (the image has python3, not curl)."""
    code = ("import ssl, sys, urllib.request as u; r = u.Request(sys.argv[1], headers={'Host': sys.argv[2]} "
            "if sys.argv[2] else {}); c = ssl.create_default_context(cafile=sys.argv[3]) if sys.argv[3] else None; "
            "sys.stdout.write(u.urlopen(r, timeout=5, context=c).read().decode())")
    return "python3 -c %s %s %s %s" % (shlex.quote(code), shlex.quote(url), shlex.quote(host or ""),
                                       shlex.quote(cafile or ""))


def served_certificate(server, name):
    """The DER certificate nginx presents on the HTTPS port for name (SNI), unverified."""
    with socket.create_connection(("127.0.0.1", server.port(8443)), timeout=10) as raw:
        with ssl._create_unverified_context().wrap_socket(raw, server_hostname=name) as tls:
            return tls.getpeercert(binary_form=True)


def test_https_with_a_certificate_of_one_s_own_and_one_from_an_acme_server_renewed(door_app, pebble, tmp_path):
    app = door_app("tls", web_app("v1"))
    server = app.server
    app.tinyserv("domains:add", "own.door.test")
    app.tinyserv("domains:add", "acme.door.test")
    cert, key = tmp_path / "own.crt", tmp_path / "own.key"
    server.ssh("cd /tmp && openssl req -x509 -newkey rsa:2048 -nodes -keyout own.key -out own.crt -days 30 "
               "-subj /CN=own.door.test -addext subjectAltName=DNS:own.door.test 2>/dev/null")
    cert.write_text(server.ssh("cat /tmp/own.crt").stdout)
    key.write_text(server.ssh("cat /tmp/own.key").stdout)
    added = app.tinyserv("certs:add", str(cert), str(key))
    assert "It serves own.door.test over HTTPS" in added.stdout
    context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", server.port(8443)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="own.door.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: own.door.test\r\nConnection: close\r\n\r\n")
            assert b"v1 web.1" in tls.recv(65536)

    # certbot's webroot challenge is served by our nginx on the HTTP port, for any of the app's domains.
    server.ssh(f"echo token-body > {ROOT}/nginx/acme/.well-known/acme-challenge/t0ken")
    assert get(server, 8080, "/.well-known/acme-challenge/t0ken", host="acme.door.test")[1] == "token-body\n"

    enabled = app.tinyserv("certs:auto:enable")
    assert "acme.door.test" in enabled.stdout and "own.door.test" in enabled.stdout
    first = served_certificate(server, "acme.door.test")
    issuer = server.ssh("openssl x509 -noout -issuer", input=ssl.DER_cert_to_PEM_cert(first)).stdout
    assert "Pebble" in issuer, issuer
    listed = json.loads(app.tinyserv("certs", "--json").stdout)
    assert {c["name"]: c.get("auto", False) for c in listed} == {"own-door-test": False, "acme": True}

    app.tinyserv("certs:auto:refresh")
    renewed = served_certificate(server, "acme.door.test")
    assert hashlib.sha256(renewed).digest() != hashlib.sha256(first).digest()
    app.tinyserv("certs:auto:disable")
    assert [c["name"] for c in json.loads(app.tinyserv("certs", "--json").stdout)] == ["own-door-test"]


@pytest.mark.parametrize("args, words", [
    (["domains:add", "*"], "invalid domain '*'"), (["domains:add", ".."], "invalid domain '..'"),
    (["domains:add", "a" * 300], "1 to 253 characters"), (["domains:add", "ünïcode.test"], "xn--"),
    (["domains:add", "a b.test"], "invalid domain 'a b.test'"), (["domains:add", ";"], "invalid domain ';'"),
    (["ps:scale", "web=21"], "web runs at most 20"),
])
def test_hostile_input_at_the_front_door_is_refused_in_one_line(server, door_app, args, words):
    app = door_app("hostile", web_app("v1"), push=False)
    before = server.ssh(f"cd {ROOT} && find apps/{app.name} releases -type f | sort | xargs sha256sum").stdout
    result = app.tinyserv(*args, check=False)
    assert result.returncode == 1 and words in result.stderr and result.stderr.count("\n") == 1, describe(result)
    # tinyserv-remote refuses the same when a client we do not control sends it.
    remote = server.ssh(f"tinyserv-remote {args[0]} -- {app.name} '{args[1]}'", check=False)
    assert remote.returncode == 1 and words in remote.stderr, describe(remote)
    assert server.ssh(f"cd {ROOT} && find apps/{app.name} releases -type f | sort | xargs sha256sum").stdout == before


def test_a_duplicate_domain_and_garbage_certificates_are_refused_in_one_line(door_app, tmp_path):
    app = door_app("dupes", web_app("v1"))
    app.tinyserv("domains:add", "dupe.door.test")
    again = app.tinyserv("domains:add", "dupe.door.test", check=False)
    assert again.returncode == 1 and "already answers at dupe.door.test" in again.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    for args, words in [((garbage, garbage), "not in PEM form"), ((garbage, tmp_path / "none.key"), "cannot read")]:
        result = app.tinyserv("certs:add", *map(str, args), check=False)
        assert result.returncode == 1 and words in result.stderr and result.stderr.count("\n") == 1, describe(result)
    key = tmp_path / "k.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    result = app.tinyserv("certs:add", str(garbage), str(key), check=False)
    assert result.returncode == 1 and "not a PEM X.509 certificate" in result.stderr, describe(result)
    assert json.loads(app.tinyserv("certs", "--json").stdout) == []


def test_nginx_alone_gets_the_capability_to_bind_port_80_and_the_apps_do_not(door_app):
    """What the printed systemd unit's AmbientCapabilities does, played with setpriv as root in the container."""
    app = door_app("caps", web_app("v1"))
    app.tinyserv("domains:add", "caps.door.test")
    server = app.server
    server.ssh("tinyserv-remote shutdown")
    try:
        server.root_host.run_expect([0], 
            "setpriv --reuid=deploy --regid=deploy --init-groups --inh-caps=+net_bind_service "
            "--ambient-caps=+net_bind_service env HOME=/home/deploy bash -c '. /home/deploy/.bashrc; "
            "TINYSERV_HTTP_PORT=80 setsid tinyserv-remote startup > /tmp/caps-startup.log 2>&1 < /dev/null'")
        status = wait_until(lambda: server.ssh(fetch("http://127.0.0.1:80/", host="caps.door.test"),
                                               check=False).stdout == "v1 web.1" or None, 30,
                            message="nginx to answer on port 80")
        assert status
        caps = server.ssh("for p in $(pgrep -u deploy -x nginx) $(pgrep -u deploy -f '[n]ode index.js'); do "
                          "echo $(cat /proc/$p/comm) $(grep CapEff /proc/$p/status | cut -f2); done").stdout
        rows = [line.split() for line in caps.splitlines()]
        assert any(name == "nginx" and int(eff, 16) & (1 << 10) for name, eff in rows), caps
        assert all(int(eff, 16) == 0 for name, eff in rows if name == "node"), caps
    finally:
        server.ssh("tinyserv-remote shutdown", check=False)
        server.ssh("setsid tinyserv-remote startup > /tmp/startup-again.log 2>&1 < /dev/null")


def test_without_nginx_apps_answer_on_their_own_ports_and_the_front_door_commands_say_how_to_install_it(door_app):
    """A server where nginx is missing (TINYSERV_NGINX names nothing): everything as before issue 8."""
    app = door_app("bare", web_app("v1"), push=False)
    server = app.server
    server.ssh("echo export TINYSERV_NGINX=/opt/no-nginx-here > ~/.tinyserv-test-env && tinyserv-remote shutdown")
    try:
        server.ssh("setsid tinyserv-remote startup > /tmp/bare-startup.log 2>&1 < /dev/null")
        app.push()
        port = app.info()["port"]
        assert get(server, port)[1] == "v1 web.1"
        assert server.ssh(f"pgrep -u deploy -x nginx", check=False).stdout == ""
        for args in (["domains:add", "bare.door.test"], ["certs:auto:enable"], ["maintenance:on"],
                     ["features:enable", "http-session-affinity"], ["ps:scale", "web=2"]):
            result = app.tinyserv(*args, check=False)
            assert result.returncode == 1 and result.stderr.count("\n") == 1, describe(result)
            assert "nginx is missing" in result.stderr and "sudo apt install nginx-light" in result.stderr, \
                describe(result)
    finally:
        server.ssh("rm -f ~/.tinyserv-test-env; tinyserv-remote shutdown", check=False)
        server.ssh("setsid tinyserv-remote startup > /tmp/startup-again.log 2>&1 < /dev/null")
