"""Docker Swarm as a second scheduler (issue 18), over real ssh against the test machine's own engine.

The server container runs on the host's network (docker/docker-compose.swarm.yml) with the engine's socket and the
host's docker client mounted: tinyserv on the server builds images and runs services on the real engine, and its
nginx reaches the ports swarm tasks publish in host mode on 127.0.0.1. The engine is put in swarm mode when it is
not (and left again afterwards only then). The runtime base images are built by images.py from the debootstrapped
Debian base (tests/e2e/swarm-bases/Dockerfile) and kept tagged, so later runs reuse them: no image registry is reachable.

Everything this module makes carries the label tinyserv.root of the server's root; the engine is shared with other
test runs, so only what carries it is ever looked at, killed or checked gone.
"""

import json
import os
import random
import shlex
import uuid

import pytest
from pytest_docker.plugin import DockerComposeExecutor, Services

import images
from helpers import App, Server
from support import describe, http_answer, Loader, make_app, port_is_free, run, wait_until

SWARM_COMPOSE_FILE = os.path.join(images.REPO, "docker", "docker-compose.swarm.yml")
BASES = images.SWARM_BASES
SAMPLE_APP = os.path.join(images.REPO, "tests", "sample-app")
PUSH_TIMEOUT = 900

PYTHON_APP = {
    "requirements.txt": "",  # no dependencies: pip needs no index
    "Procfile": "web: python3 server.py\n",
    "server.py": (
        "import http.server, os\n"
        "class Hello(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = ('python says %s\\n' % os.environ.get('GREETING', 'hello')).encode()\n"
        "        self.send_response(200)\n"
        "        self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "    do_HEAD = do_GET\n"
        "http.server.ThreadingHTTPServer(('', int(os.environ['PORT'])), Hello).serve_forever()\n"),
}


def free_range(count):
    """The first of count consecutive ports nothing listens on, below the kernel's ephemeral range (32768 and up):
    the engine publishes the tasks' ports there (host mode), and any connection takes its local port there, so an
    app's port or nginx's drawn from it can be taken first (as the docs' limitations say of TINYSERV_START_PORT)."""
    for _ in range(200):
        first = random.randrange(20000, 32000, 10)
        if all(port_is_free(p) for p in range(first, first + count)):
            return first
    raise AssertionError("no %d free consecutive ports below 32000" % count)


def docker(*args, check=True, timeout=300):
    __tracebackhide__ = True
    return run(["docker", *args], check=check, timeout=timeout)


@pytest.fixture(scope="module")
def swarm_mode(docker_client):
    """The engine in swarm mode: made here (and left again at the end) only when it was not."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    made = state == "inactive"
    if made:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        if made:
            docker("swarm", "leave", "--force", check=False)


@pytest.fixture(scope="module")
def swarm_bases(docker_client):
    """The runtime base images (images.py builds them with the others; here only if a run skipped that step)."""
    return images.ensure_swarm_bases(docker_client)


class HostNetServer(Server):
    """A server on the host's network: its ports are the host's own (no publishing to read)."""

    def __init__(self, container, key, ssh_dir, services, ports):
        self.fixed = ports
        super().__init__(container, key, ssh_dir, services, name="swarmserver")

    def read_ports(self):
        self.ports = dict(self.fixed)
        return self.ports

    def port(self, container_port):
        return self.ports.get(int(container_port), int(container_port))


@pytest.fixture(scope="module")
def swarm_server(server_image, swarm_mode, swarm_bases, docker_compose_command, docker_compose_project_name,
                 docker_client, ssh_key, ssh_wrapper_dir):
    """The tinyserv server on the host's network, driving the host's engine; removed after the module."""
    block = free_range(23)  # the apps' 20 ports, then ssh, nginx's HTTP and HTTPS ports
    start, ssh_port, http_port, https_port = block, block + 20, block + 21, block + 22
    settings = {"TINYSERV_HTTP_PORT": http_port, "TINYSERV_HTTPS_PORT": https_port, "TINYSERV_START_PORT": start,
                "TINYSERV_SWARM_BASE_NODE": BASES["node"], "TINYSERV_SWARM_BASE_PYTHON": BASES["python"],
                "TINYSERV_SWARM_BASE_GENERIC": BASES["generic"], "TINYSERV_BOOT_TIMEOUT": 120}
    os.environ["TINYSERV_E2E_SSH_PORT"] = str(ssh_port)
    os.environ["TINYSERV_E2E_TEST_ENV"] = "\n".join("export %s=%s" % item for item in settings.items())
    project = docker_compose_project_name + "swarm"
    compose = DockerComposeExecutor(docker_compose_command, SWARM_COMPOSE_FILE, project)
    try:
        compose.execute("up -d")
        containers = docker_client.containers.list(filters={"label": [
            f"com.docker.compose.project={project}", "com.docker.compose.service=swarmserver"]})
        assert len(containers) == 1, f"expected one swarmserver container, found {containers}"
        started = HostNetServer(containers[0], ssh_key, ssh_wrapper_dir, Services(compose),
                                {22: ssh_port, 8080: http_port})
        started.wait_for_ssh()
        code = "import hashlib, os; print(hashlib.sha256(os.environ['TINYSERV_ROOT'].encode()).hexdigest()[:8])"
        started.tag = started.ssh("python3 -c " + shlex.quote(code)).stdout.strip()  # the labels' tinyserv.root
        yield started
    finally:
        compose.execute("down -v --timeout 5")
        os.environ.pop("TINYSERV_E2E_SSH_PORT", None)
        os.environ.pop("TINYSERV_E2E_TEST_ENV", None)


def ours(server, app=None):
    """docker --filter words for what this module's server made (of one app)."""
    words = ["--filter", "label=tinyserv.root=%s" % server.tag]
    return words + (["--filter", "label=tinyserv.app=%s" % app] if app else [])


def made_by(server, app):
    """What the engine still holds of app: services, containers (stopped too), images."""
    return {what: docker(*args, *ours(server, app), "-q").stdout.split() for what, args in (
        ("services", ["service", "ls"]), ("containers", ["ps", "-a"]), ("images", ["images"]))}


class Last:
    """A wait's failure message with the last output it saw (formatted when the wait fails, not before)."""

    def __init__(self, what, seen):
        self.what, self.seen = what, seen

    def __str__(self):
        return "%s; the last output:\n%s" % (self.what, self.seen[-1] if self.seen else "(none)")


def running_web(server, app):
    return docker("ps", *ours(server, app), "--filter", "label=tinyserv.type=web", "-q").stdout.split()


def get(port):
    answer = http_answer(port)
    return answer and answer[:2]


def swarm_app(server, tmp_path, name, files):
    app = App(server, make_app(tmp_path / name, files), name)
    app.tinyserv("apps:create", name, "--scheduler", "swarm")
    return app


def sample_files():
    files = {}
    for name in ("Procfile", "package.json", "package-lock.json", "index.js"):
        with open(os.path.join(SAMPLE_APP, name)) as f:
            files[name] = f.read()
    return files


@pytest.fixture(scope="module")
def node_app(swarm_server, tmp_path_factory):
    """The sample node app, created with --scheduler swarm and pushed; destroyed (and checked gone) at the end."""
    name = "swarm-node-%s" % uuid.uuid4().hex[:4]
    app = swarm_app(swarm_server, tmp_path_factory.mktemp("swarm"), name, sample_files())
    pushed = app.push()
    app.port = app.info()["port"]
    app.pushed = pushed
    yield app
    app.tinyserv("apps:destroy", "--confirm", app.name, check=False)


def test_a_node_app_created_for_the_swarm_is_built_into_an_image_and_answers_through_nginx(swarm_server, node_app):
    output = node_app.pushed.stdout + node_app.pushed.stderr
    assert "building an image on %s" % BASES["node"] in output, output
    assert "web answered on published port" in output, output
    assert get(node_app.port) == (200, "foo is undefined\n")
    info = node_app.info()
    assert (info["scheduler"], info["state"]) == ("swarm", "up")
    services = docker("service", "ls", *ours(swarm_server, node_app.name), "--format", "{{.Name}} {{.Replicas}}")
    assert services.stdout.split()[1:] == ["1/1"], describe(services)
    assert services.stdout.split()[0].endswith("-web")


def test_a_code_only_push_reuses_the_dependency_layer(node_app):
    node_app.commit({"index.js": open(os.path.join(SAMPLE_APP, "index.js")).read().replace("foo is", "foo here is")},
                    "code only")
    pushed = node_app.push()
    output = pushed.stdout + pushed.stderr
    step = output.split("RUN npm ci", 1)[1].split("Step", 1)[0]
    assert "Using cache" in step, output
    assert get(node_app.port) == (200, "foo here is undefined\n")


def test_scaled_to_three_a_killed_task_is_replaced_and_no_request_fails(swarm_server, node_app):
    node_app.tinyserv("ps:scale", "web=3")
    # A task whose engine-picked port was taken meanwhile fails and is replaced after the restart delay (ps shows
    # it failed until then): wait for what ps shows, not for the containers, which count the old rollout's too.
    last = []
    wait_until(lambda: last.append(node_app.tinyserv("ps").stdout) or last[-1].count(" running ") == 3, 120,
               message=Last("three running in ps", last))
    assert len(running_web(swarm_server, node_app.name)) >= 3
    with Loader(node_app.port) as load:
        wait_until(lambda: load.ok > 20, 30, message="requests answered before the kill")
        victim = running_web(swarm_server, node_app.name)[0]
        docker("kill", victim)
        wait_until(lambda: len(running_web(swarm_server, node_app.name)) == 3 and
                   victim not in running_web(swarm_server, node_app.name), 120, message="a replacement task")
        wait_until(lambda: load.ok > 200, 60, message="requests answered after the kill")
    assert load.failed == [], "%d failed of %d: %s" % (len(load.failed), load.ok, load.failed[:5])


def test_config_set_and_rollback_switch_without_a_failed_request(node_app):
    with Loader(node_app.port) as load:
        node_app.tinyserv("config:set", "foo=bar")
        assert get(node_app.port) == (200, "foo here is bar\n")
        node_app.tinyserv("rollback")
        assert get(node_app.port) == (200, "foo here is undefined\n")
    assert load.failed == [], "%d failed of %d: %s" % (len(load.failed), load.ok, load.failed[:5])
    assert load.ok > 0
    assert [r["description"] for r in node_app.releases()[:2]][0].startswith("Rollback to v")


# A web that takes a while to listen and stops at once on SIGTERM (as a server that closes its listening socket
# first does): a restart must not stop the old task before the new one answers. (Updated in place, start-first,
# Swarm 20.10 kept the old task about 11 s after the new one ran, measured here with docker alone; the old
# in-place restart failed no request in this test, even with a 15 s boot.)
SLOW_PYTHON_APP = dict(PYTHON_APP, **{"server.py": (
    "import os, signal, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: os._exit(0))\n"
    "time.sleep(3)\n") + PYTHON_APP["server.py"]})


def test_a_restart_at_web_1_is_a_new_rollout_of_the_same_release_without_a_failed_request(swarm_server, tmp_path):
    app = swarm_app(swarm_server, tmp_path, "swarm-restart-%s" % uuid.uuid4().hex[:4], SLOW_PYTHON_APP)
    try:
        app.push()
        port = app.info()["port"]
        before = set(docker("service", "ls", *ours(swarm_server, app.name), "-q").stdout.split())
        history = [r["version"] for r in app.releases()]
        old_task = running_web(swarm_server, app.name)
        assert len(old_task) == 1, "web=1 expected: %s" % old_task
        with Loader(port) as load:
            wait_until(lambda: load.ok > 20, 30, message="requests answered before the restart")
            app.tinyserv("ps:restart")
            wait_until(lambda: len(running_web(swarm_server, app.name)) == 1 and
                       running_web(swarm_server, app.name) != old_task, 120, message="the old task replaced")
            ok = load.ok
            wait_until(lambda: load.ok > ok + 300, 60, message="requests answered after the restart")
        assert load.failed == [], "%d failed of %d: %s" % (len(load.failed), load.ok, load.failed[:5])
        after = set(docker("service", "ls", *ours(swarm_server, app.name), "-q").stdout.split())
        assert after and not after & before, "the restart did not replace the services: %s, then %s" % (
            before, after)
        assert [r["version"] for r in app.releases()] == history, "a restart made a release"
        assert get(port) == (200, "python says hello\n")
    finally:
        app.tinyserv("apps:destroy", "--confirm", app.name, check=False)


def test_a_push_whose_web_crashes_is_rejected_and_the_old_release_keeps_serving(swarm_server, node_app):
    before = set(docker("service", "ls", *ours(swarm_server, node_app.name), "-q").stdout.split())
    node_app.commit({"index.js": "throw new Error('broken on purpose')\n"}, "broken")
    pushed = node_app.push(check=False)
    assert pushed.returncode != 0, describe(pushed)
    assert "the running release was not touched" in pushed.stderr, describe(pushed)
    assert get(node_app.port) == (200, "foo here is undefined\n")
    after = set(docker("service", "ls", *ours(swarm_server, node_app.name), "-q").stdout.split())
    assert after == before, "the rejected push's services were left behind"
    node_app.git("reset", "-q", "--hard", "HEAD~1")


def test_logs_run_and_ps_speak_for_the_tasks(node_app):
    logs = node_app.tinyserv("logs", "-n", "200").stdout
    assert "web.1: listening on port 5000" in logs or "web.2: listening on port 5000" in logs, logs
    ran = node_app.tinyserv("run", "echo $DYNO $TINYSERV_RELEASE $foo; node --version")
    assert ran.stdout.startswith("run.1 v"), describe(ran)
    ps = node_app.tinyserv("ps", "--json").stdout
    assert '"node"' in ps


def test_a_python_app_runs_on_the_swarm_and_is_destroyed_without_a_trace(swarm_server, tmp_path):
    app = swarm_app(swarm_server, tmp_path, "swarm-py-%s" % uuid.uuid4().hex[:4], PYTHON_APP)
    try:
        pushed = app.push()
        assert "building an image on %s" % BASES["python"] in pushed.stdout + pushed.stderr
        port = app.info()["port"]
        assert get(port) == (200, "python says hello\n")
        app.tinyserv("config:set", "GREETING=hi")
        assert get(port) == (200, "python says hi\n")
    finally:
        app.tinyserv("apps:destroy", "--confirm", app.name)
    assert made_by(swarm_server, app.name) == {"services": [], "containers": [], "images": []}


# A python web that answers with what its Redis add-on (REDIS_URL) says to AUTH and PING, and where it found it.
REDIS_APP = {
    "requirements.txt": "",
    "Procfile": "web: python3 server.py\n",
    "server.py": (
        "import http.server, os, socket, urllib.parse\n"
        "def ping():\n"
        "    url = urllib.parse.urlsplit(os.environ['REDIS_URL'])\n"
        "    with socket.create_connection((url.hostname, url.port), timeout=5) as s:\n"
        "        s.sendall(('AUTH %s\\r\\nPING\\r\\n' % url.password).encode())\n"
        "        said = b''\n"
        "        while said.count(b'\\r\\n') < 2:\n"
        "            more = s.recv(100)\n"
        "            if not more:\n"
        "                break\n"
        "            said += more\n"
        "    return '%s says %s' % (url.hostname, ' '.join(said.decode().split()))\n"
        "class Hello(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        try:\n"
        "            body = ping().encode()\n"
        "        except OSError as e:\n"
        "            body = ('no redis: %s' % e).encode()\n"
        "        self.send_response(200)\n"
        "        self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "http.server.ThreadingHTTPServer(('', int(os.environ['PORT'])), Hello).serve_forever()\n"),
}


def test_a_swarm_apps_tasks_reach_its_redis_add_on_on_this_server(swarm_server, tmp_path):
    app = swarm_app(swarm_server, tmp_path, "swarm-redis-%s" % uuid.uuid4().hex[:4], REDIS_APP)
    try:
        app.tinyserv("addons:create", "redis")
        assert app.config()["REDIS_URL"].startswith("redis://default:")  # the app's own view: on this server
        app.push()
        assert get(app.info()["port"]) == (200, "host.docker.internal says +OK +PONG")
    finally:
        app.tinyserv("apps:destroy", "--confirm", app.name)
    assert made_by(swarm_server, app.name) == {"services": [], "containers": [], "images": []}


def test_a_generated_image_runs_the_node_version_the_app_asks_for(swarm_server, tmp_path):
    files = sample_files()
    package = json.loads(files["package.json"])
    package["engines"] = {"node": "22"}  # the base image has Debian's node 18
    files["package.json"] = json.dumps(package, indent=2) + "\n"
    app = swarm_app(swarm_server, tmp_path, "swarm-ver-%s" % uuid.uuid4().hex[:4], files)
    try:
        pushed = app.push()
        output = pushed.stdout + pushed.stderr
        assert "with node 22." in output and "from the server's runtime cache" in output, output
        ran = app.tinyserv("run", "node --version")
        assert ran.stdout.strip().startswith("v22."), describe(ran)
        assert get(app.info()["port"])[0] == 200
    finally:
        app.tinyserv("apps:destroy", "--confirm", app.name)


def local_webs(server):
    """The sample app's node processes the server runs itself (swarm tasks are in containers of their own)."""
    return server.ssh("pgrep -fc '[n]ode index.js' || true").stdout.strip()


def test_a_deployed_app_moves_to_the_swarm_and_back_without_a_failed_request(swarm_server, tmp_path):
    name = "swarm-move-%s" % uuid.uuid4().hex[:4]
    app = App(swarm_server, make_app(tmp_path / name, sample_files()), name)
    app.tinyserv("apps:create", name)
    try:
        app.push()
        port = app.info()["port"]
        assert local_webs(swarm_server) != "0", "the app does not run locally: the move would prove nothing"
        with Loader(port) as load:
            wait_until(lambda: load.ok > 20, 30, message="requests answered before the move")
            moved = app.tinyserv("scheduler:set", "swarm")
            assert "done" in moved.stdout, describe(moved)
            assert app.info()["scheduler"] == "swarm"
            assert running_web(swarm_server, name), "no web task after the move"
            wait_until(lambda: local_webs(swarm_server) == "0", 60, message="the local processes to stop")
            ok = load.ok
            wait_until(lambda: load.ok > ok + 20, 30, message="requests answered by the swarm")
            assert app.releases()[0]["description"].startswith("Move to the swarm"), app.releases()[0]
            refused = app.tinyserv("rollback", check=False)
            assert refused.returncode != 0 and "ran on the local scheduler" in refused.stderr, describe(refused)
            app.tinyserv("scheduler:set", "local")
            assert app.info()["scheduler"] == "local"
            wait_until(lambda: made_by(swarm_server, name) == {"services": [], "containers": [], "images": []}, 60,
                       message="the swarm's services, containers and images to go")
            ok = load.ok
            wait_until(lambda: load.ok > ok + 20, 30, message="requests answered by the local web")
        assert load.failed == [], "%d failed of %d: %s" % (len(load.failed), load.ok, load.failed[:5])
        assert get(port) == (200, "foo is undefined\n")
    finally:
        app.tinyserv("apps:destroy", "--confirm", name, check=False)


def test_data_directories_and_cron_are_refused_for_swarm_apps_in_one_line(swarm_server, tmp_path):
    files = dict(PYTHON_APP, **{"app.json": '{"cron": [{"command": "true", "schedule": "*/5 * * * *"}]}'})
    app = swarm_app(swarm_server, tmp_path, "swarm-cron-%s" % uuid.uuid4().hex[:4], files)
    try:
        pushed = app.push(check=False)
        assert pushed.returncode != 0 and "app.json declares cron jobs, which swarm apps cannot run" in \
            pushed.stderr, describe(pushed)
    finally:
        app.tinyserv("apps:destroy", "--confirm", app.name)


def test_destroy_leaves_no_service_container_image_or_network(swarm_server, node_app):
    assert made_by(swarm_server, node_app.name)["images"], "nothing to destroy: the test would prove nothing"
    node_app.tinyserv("apps:destroy", "--confirm", node_app.name)
    assert made_by(swarm_server, node_app.name) == {"services": [], "containers": [], "images": []}
    # Other test runs make networks on this engine meanwhile: only the ones labelled as this root's count.
    assert docker("network", "ls", *ours(swarm_server), "-q").stdout.split() == []
    answer = http_answer(node_app.port)
    assert not answer or answer[0] != 200
