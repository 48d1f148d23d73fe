"""Fixtures for the e2e tests: one tinyserv server in Docker, reached from the host over real ssh on loopback.

API for tests:
  server            the running server (session-scoped), see `Server`
  host              testinfra host inside the server, as user deploy (same as server.host)
  bare_servers      two more servers (module-scoped) without tinyserv: Debian, sshd and the deploy user, for
                    `tinyserv server:install` (docker/docker-compose.bare.yml, the Dockerfile's `bare` stage)
  root_server       a server in root mode (module-scoped): systemd_server after `tinyserv server:install --root`
  systemd_server    a stock Debian server booting with systemd as PID 1 (module-scoped), reached as root over ssh,
                    without a deploy user until something creates one; see `SystemdServer`
Without a working Docker engine every e2e test fails: these tests never skip.
"""

import contextlib
import os
import shlex
import shutil
import subprocess
import uuid

import docker
import docker.errors
import pytest
from pytest_docker.plugin import DockerComposeExecutor, Services

import images
from helpers import PREFIX, REAL_SSH, App, Server, SystemdServer, ssh_options
from support import describe, make_app, run

REPO = images.REPO
COMPOSE_FILE = os.path.join(REPO, "docker", "docker-compose.yml")
BARE_COMPOSE_FILE = os.path.join(REPO, "docker", "docker-compose.bare.yml")
# The systemd server (the Dockerfile's `systemd` stage): the ports it publishes on 127.0.0.1 (ssh, the front door's
# 80 and 443 as on a real server, the first app ports).
SYSTEMD_PORTS = (22, 80, 443) + tuple(range(5000, 5010))


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client; fail (never skip) when no engine answers."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        pytest.fail(f"the e2e tests need a running Docker engine (start dockerd, or run .ci/run): {error}",
                    pytrace=False)
    return client


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory):
    """A fresh ed25519 key pair for this run; returns the private key's path."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tinyserv-e2e", "-f", str(key)])
    return key


@pytest.fixture(scope="session")
def ssh_wrapper_dir(ssh_key):
    """A directory with an `ssh` that uses the test key, put on PATH so any ssh the client runs can log in."""
    directory = ssh_key.parent / "bin"
    directory.mkdir()
    wrapper = directory / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.join([REAL_SSH] + ssh_options(ssh_key))} "$@"\n')
    wrapper.chmod(0o755)
    return directory


def image_of_this_run(docker_client, ssh_key, image, project, variable=None, target=None):
    """Build image (a Dockerfile stage) with this run's public key under a tag of this run's own, named in the
    environment variable docker-compose reads (if any); yield the tag, then remove the image and the variable."""
    images.ensure_base_image(docker_client)
    public_key = ssh_key.with_name(ssh_key.name + ".pub").read_text()
    run_tag = f"{image.split(':')[0]}:{project}"
    images.build_server_image(docker_client, public_key, tag=run_tag, target=target)
    if variable:
        os.environ[variable] = run_tag
    try:
        yield run_tag
    finally:
        if variable:
            os.environ.pop(variable, None)
        try:
            docker_client.images.remove(run_tag)
        except docker.errors.APIError:
            pass


@pytest.fixture(scope="session")
def server_image(docker_client, ssh_key, docker_compose_project_name):
    """Build the server image (making the Debian base first if needed) with this run's public key.

    It is built under a tag of this run's own (TINYSERV_E2E_IMAGE, removed again at the end), so runs from
    several checkouts at once never swap images (and keys); layers are shared through the build cache.
    """
    yield from image_of_this_run(docker_client, ssh_key, images.SERVER_IMAGE, docker_compose_project_name,
                                 "TINYSERV_E2E_IMAGE")


@pytest.fixture(scope="session")
def docker_compose_command():
    """`docker compose` where the v2 plugin works, else Debian's `docker-compose` (v1)."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
    if probe.returncode == 0:
        return "docker compose"
    if shutil.which("docker-compose"):
        return "docker-compose"
    pytest.fail("neither `docker compose` nor `docker-compose` works: install docker-compose", pytrace=False)


@pytest.fixture(scope="session")
def docker_compose_file(server_image):
    """docker/docker-compose.yml, once its image is built."""
    return COMPOSE_FILE


@pytest.fixture(scope="session")
def docker_compose_project_name():
    """A project name of its own, so parallel or leftover runs never collide."""
    return f"tinyserve2e{os.getpid()}x{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def docker_setup():
    """Compose v1 has no `--wait`; readiness is polled over ssh instead."""
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup():
    """Remove the containers, network and volumes."""
    return ["down -v --timeout 5"]


@pytest.fixture(scope="session")
def docker_services(docker_compose_command, docker_compose_file, docker_compose_project_name,
                    docker_setup, docker_cleanup):
    """Like pytest-docker's, but also cleans up when `up` itself fails half way."""
    compose = DockerComposeExecutor(docker_compose_command, docker_compose_file, docker_compose_project_name)
    try:
        for command in docker_setup:
            compose.execute(command)
        yield Services(compose)
    finally:
        for command in docker_cleanup:
            compose.execute(command)


@pytest.fixture(scope="session")
def server(docker_services, docker_client, docker_compose_project_name, ssh_key, ssh_wrapper_dir):
    """The tinyserv server, up and answering ssh."""
    containers = docker_client.containers.list(filters={"label": [
        f"com.docker.compose.project={docker_compose_project_name}", "com.docker.compose.service=server"]})
    assert len(containers) == 1, f"expected one server container, found {containers}"
    started = Server(containers[0], ssh_key, ssh_wrapper_dir, docker_services)
    started.wait_for_ssh()
    return started


@pytest.fixture
def host(server):
    """testinfra's `host`, pointed at the server (as deploy) instead of this machine."""
    return server.host


@pytest.fixture(scope="session")
def bare_image(docker_client, ssh_key, docker_compose_project_name):
    """The Dockerfile's `bare` stage with this run's public key, under a tag of this run's own."""
    yield from image_of_this_run(docker_client, ssh_key, images.BARE_IMAGE, docker_compose_project_name,
                                 "TINYSERV_E2E_BARE_IMAGE", target="bare")


@pytest.fixture(scope="module")
def bare_servers(bare_image, docker_compose_command, docker_compose_project_name, docker_client, ssh_key,
                 ssh_wrapper_dir):
    """Two servers without tinyserv (bare1, bare2), up and answering ssh; removed after the module."""
    project = docker_compose_project_name + "bare"
    compose = DockerComposeExecutor(docker_compose_command, BARE_COMPOSE_FILE, project)
    try:
        compose.execute("up -d")
        services = Services(compose)
        started = []
        for name in ("bare1", "bare2"):
            containers = docker_client.containers.list(filters={"label": [
                f"com.docker.compose.project={project}", f"com.docker.compose.service={name}"]})
            assert len(containers) == 1, f"expected one {name} container, found {containers}"
            started.append(Server(containers[0], ssh_key, ssh_wrapper_dir, services, name=name))
        for bare in started:
            bare.wait_for_ssh()
        yield started
    finally:
        compose.execute("down -v --timeout 5")


@contextlib.contextmanager
def booted_systemd_server(image, docker_client, project, ssh_key, ssh_wrapper_dir):
    """A Debian server booting with systemd as PID 1 (see `SystemdServer`), booted and answering ssh as root;
    removed when the `with` ends.

    Run the way systemd was measured to work in a container here, without --privileged (which the engine refuses):
    `docker run -d --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock
    -p 127.0.0.1::22 ... IMAGE /sbin/init`.
    """
    container = None
    try:
        container = docker_client.containers.run(
            image, ["/sbin/init"], detach=True, name=f"{project}systemd{uuid.uuid4().hex[:4]}",
            labels={"tinyserv-e2e": project},
            cgroupns="host", volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
            tmpfs={"/run": "", "/run/lock": ""},
            ports={f"{port}/tcp": ("127.0.0.1", None) for port in SYSTEMD_PORTS})
        started = SystemdServer(container, ssh_key, ssh_wrapper_dir)
        started.wait_until_booted()
        yield started
    finally:
        if container is not None:
            container.remove(force=True, v=True)


@pytest.fixture(scope="session")
def systemd_image(docker_client, ssh_key, docker_compose_project_name):
    """The Dockerfile's `systemd` stage with this run's public key for root, under a tag of this run's own."""
    yield from image_of_this_run(docker_client, ssh_key, images.SYSTEMD_IMAGE, docker_compose_project_name,
                                 target="systemd")


@pytest.fixture(scope="module")
def systemd_server(systemd_image, docker_client, docker_compose_project_name, ssh_key, ssh_wrapper_dir):
    """A stock Debian server booting with systemd as PID 1, without a deploy user; removed after the module."""
    with booted_systemd_server(systemd_image, docker_client, docker_compose_project_name, ssh_key,
                               ssh_wrapper_dir) as started:
        yield started


@pytest.fixture(scope="module")
def root_server(systemd_image, docker_client, docker_compose_project_name, ssh_key, ssh_wrapper_dir):
    """A server in root mode the way the README sets one up: a stock Debian server under systemd, then
    `tinyserv server:install --root root@HOST` from this tree (its result in `installed`); removed after the
    module. Its TINYSERV_ROOT is the default, `tinyserv_root` (/home/deploy/.tinyserv)."""
    with booted_systemd_server(systemd_image, docker_client, docker_compose_project_name, ssh_key,
                               ssh_wrapper_dir) as started:
        started.installed = run([os.path.join(REPO, "bin", "tinyserv"), "server:install", "--root",
                                 started.root_remote], env=started.env, timeout=240, check=False)
        assert started.installed.returncode == 0, describe(started.installed) + "\n" + started.diagnosis()
        yield started


@pytest.fixture
def new_app(server, tmp_path):
    """A factory: new_app(short_name, files) makes a repository and an app rel-SHORT_NAME; all destroyed after."""
    created = []

    def create(short_name, files):
        name = PREFIX + short_name
        repo = make_app(tmp_path / name, files)
        app = App(server, repo, name)
        app.tinyserv("apps:create", name)
        created.append(app)
        return app

    yield create
    destroyed = [app.tinyserv("apps:destroy", "--confirm", app.name, check=False) for app in created]
    for result in destroyed:
        assert result.returncode == 0, describe(result)
