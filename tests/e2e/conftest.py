"""Fixtures for the e2e tests: one tinyserv server in Docker, reached from the host over real ssh on loopback.

API for tests:
  server            the running server (session-scoped), see `Server`
  host              testinfra host inside the server, as user deploy (same as server.host)
  bare_servers      two more servers (module-scoped) without tinyserv: Debian, sshd and the deploy user, for
                    `tinyserv server:install` (docker/docker-compose.bare.yml, the Dockerfile's `bare` stage)
Without a working Docker engine every e2e test fails: these tests never skip.
"""

import os
import shlex
import shutil
import subprocess
import uuid

import docker
import docker.errors
import pytest
import testinfra
from pytest_docker.plugin import DockerComposeExecutor, Services

import images
from support import describe, run

REPO = images.REPO
COMPOSE_FILE = os.path.join(REPO, "docker", "docker-compose.yml")
BARE_COMPOSE_FILE = os.path.join(REPO, "docker", "docker-compose.bare.yml")
REAL_SSH = shutil.which("ssh") or "/usr/bin/ssh"
SSH_WAIT_TIMEOUT = 180  # the boot hook runs before sshd starts (see docker/entrypoint.sh)


def ssh_options(key):
    """ssh options that log in with the test key and ignore host keys, which change with every container."""
    return ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


class Server:
    """The server container as a test sees it: ssh, published ports, testinfra, restart."""

    def __init__(self, container, key, ssh_dir, services, name="server"):
        self.name = name
        self.container = container
        self.key = key
        self._ssh_dir = ssh_dir
        self._services = services
        self.host = testinfra.get_host(f"docker://deploy@{container.id}")
        self.root_host = testinfra.get_host(f"docker://root@{container.id}")
        self.ports = {}
        self.read_ports()

    def read_ports(self):
        """Re-read which host port each container port is published on (they change on restart)."""
        self.container.reload()
        published = self.container.attrs["NetworkSettings"]["Ports"] or {}
        self.ports = {int(name.split("/")[0]): int(bindings[0]["HostPort"])
                      for name, bindings in published.items() if bindings}
        return self.ports

    def port(self, container_port):
        """Return the host port (on 127.0.0.1) published for `container_port`."""
        return self.ports[int(container_port)]

    def url(self, container_port, path=""):
        """Return the host-side URL of an HTTP server listening on `container_port` in the container."""
        return f"http://127.0.0.1:{self.port(container_port)}{path}"

    @property
    def remote(self):
        """Return the TINYSERV_REMOTE value that reaches this server."""
        return f"ssh://deploy@127.0.0.1:{self.port(22)}"

    @property
    def env(self):
        """Return the environment for running bin/tinyserv and git on the host against this server."""
        env = dict(os.environ)
        env["TINYSERV_REMOTE"] = self.remote
        env["GIT_SSH_COMMAND"] = shlex.join([REAL_SSH] + ssh_options(self.key))
        env["PATH"] = os.pathsep.join([os.path.join(REPO, "bin"), str(self._ssh_dir), env.get("PATH", "")])
        return env

    def ssh(self, command, *, check=True, input=None, timeout=120):
        """Run the shell command string `command` as deploy over real ssh; return the CompletedProcess."""
        __tracebackhide__ = True
        args = [REAL_SSH] + ssh_options(self.key) + ["-p", str(self.port(22)), "deploy@127.0.0.1", command]
        result = run(args, input=input, check=False, timeout=timeout)
        if check and result.returncode != 0:
            what = "ssh itself failed (exit 255)" if result.returncode == 255 else "the remote command failed"
            raise AssertionError(f"{what}\n{describe(result)}")
        return result

    def logs(self):
        """Return the container's output so far: the entrypoint's boot lines, sshd's log."""
        return self.container.logs().decode(errors="replace")

    def restart(self):
        """Restart the container (a reboot: the entrypoint runs the boot hook again) and wait for ssh."""
        self.container.restart(timeout=5)
        self.read_ports()
        self.wait_for_ssh()

    def wait_for_ssh(self):
        """Poll until ssh logs in, i.e. the boot hook has run and sshd answers."""
        def answers():
            try:
                result = self.ssh("true", check=False, timeout=15)
            except AssertionError:
                return False
            return result.returncode == 0
        try:
            self._services.wait_until_responsive(check=answers, timeout=SSH_WAIT_TIMEOUT, pause=0.2)
        except Exception:
            last = self.ssh("true", check=False, timeout=15)
            raise AssertionError(f"ssh to the server did not answer within {SSH_WAIT_TIMEOUT} s\n"
                                 f"{describe(last)}\n--- container log ---\n{self.logs()}") from None


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


def image_of_this_run(docker_client, ssh_key, image, project, variable, target=None):
    """Build image (a Dockerfile stage) with this run's public key under a tag of this run's own, named in the
    environment variable docker-compose reads; yield the tag, then remove the image and the variable."""
    images.ensure_base_image(docker_client)
    public_key = ssh_key.with_name(ssh_key.name + ".pub").read_text()
    run_tag = f"{image.split(':')[0]}:{project}"
    images.build_server_image(docker_client, public_key, tag=run_tag, target=target)
    os.environ[variable] = run_tag
    try:
        yield run_tag
    finally:
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


ROOT_MODE_COMPOSE_FILE = os.path.join(REPO, "docker", "docker-compose.rootmode.yml")


@pytest.fixture(scope="module")
def root_server(server_image, docker_compose_command, docker_compose_project_name, docker_client, ssh_key,
                ssh_wrapper_dir):
    """A server in root mode (docker/docker-compose.rootmode.yml), up and answering ssh; removed after the module.

    Its entrypoint starts the supervisor as root from `tinyserv-remote systemd-unit --root`, as systemd would.
    """
    project = docker_compose_project_name + "root"
    compose = DockerComposeExecutor(docker_compose_command, ROOT_MODE_COMPOSE_FILE, project)
    try:
        compose.execute("up -d")
        containers = docker_client.containers.list(filters={"label": [
            f"com.docker.compose.project={project}", "com.docker.compose.service=rootserver"]})
        assert len(containers) == 1, f"expected one rootserver container, found {containers}"
        started = Server(containers[0], ssh_key, ssh_wrapper_dir, Services(compose), name="rootserver")
        started.wait_for_ssh()
        yield started
    finally:
        compose.execute("down -v --timeout 5")
