"""Fixtures for the e2e tests: one tinyserv server in Docker, reached from the host over real ssh on loopback.

API for tests:
  server            the running server (session-scoped), see `Server`
  host              testinfra host inside the server, as user deploy (same as server.host)
  bare_servers      two more servers (module-scoped) without tinyserv: Debian, sshd and the deploy user, for
                    `tinyserv server:install` (docker/docker-compose.bare.yml, the Dockerfile's `bare` stage)
  root_server       a server whose supervisor runs as root (module-scoped, docker/docker-compose.rootmode.yml)
  systemd_server    a stock Debian server booting with systemd as PID 1 (module-scoped), reached as root over ssh,
                    without a deploy user until something creates one; see `SystemdServer`
Without a working Docker engine every e2e test fails: these tests never skip.
"""

import os
import shlex
import shutil
import subprocess
import time
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
# The systemd server (the Dockerfile's `systemd` stage): the ports it publishes on 127.0.0.1 (ssh, the front door's
# 80 and 443 as on a real server, the first app ports), how long a boot may take, how long systemd gets to shut down.
SYSTEMD_PORTS = (22, 80, 443) + tuple(range(5000, 5010))
SYSTEMD_BOOT_TIMEOUT = 120
SYSTEMD_STOP_TIMEOUT = 30


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
        return self.ssh_as("deploy", command, check=check, input=input, timeout=timeout)

    def ssh_as(self, user, command, *, check=True, input=None, timeout=120):
        """Run the shell command string `command` as `user` over real ssh; return the CompletedProcess."""
        __tracebackhide__ = True
        args = [REAL_SSH] + ssh_options(self.key) + ["-p", str(self.port(22)), f"{user}@127.0.0.1", command]
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


class SystemdServer(Server):
    """A stock Debian server with systemd as PID 1 (the Dockerfile's `systemd` stage): sshd, PostgreSQL and any
    enabled unit start at boot, and `reboot()` is a real reboot. Reached over ssh on 127.0.0.1, as root (its
    authorized_keys holds the run's key) or, once something has created it, as the deploy user.

    Besides what `Server` offers (port, url, remote and env for the deploy user, logs, testinfra's `host` as
    deploy and `root_host` as root, both through docker exec), it has:
      root_remote                   ssh://root@127.0.0.1:PORT, for `tinyserv server:install --root`
      ssh(user, command, *, check=True, input=None, timeout=120)   run a shell command as `user` over ssh
      system_state()                what `systemctl is-system-running` says (through docker exec)
      wait_until_booted(timeout)    poll until the state is running or degraded and ssh as root answers
      reboot()                      `docker restart` (systemd shuts down and boots again), then wait_until_booted
      diagnosis()                   text for failure messages: state, failed units, jobs, journal, container log
    Unlike `Server.ssh`, `ssh` names the user first (root until a deploy user exists); `ssh_as` is the same.
    `restart()` and `wait_for_ssh()` are reboot() and wait_until_booted(), so code written for any server works.
    """

    def __init__(self, container, key, ssh_dir, name="systemd"):
        super().__init__(container, key, ssh_dir, services=None, name=name)

    @property
    def root_remote(self):
        """Return the ssh remote that reaches this server as root."""
        return f"ssh://root@127.0.0.1:{self.port(22)}"

    def ssh(self, user, command, *, check=True, input=None, timeout=120):
        """Run the shell command string `command` as `user` over real ssh; return the CompletedProcess."""
        __tracebackhide__ = True
        return self.ssh_as(user, command, check=check, input=input, timeout=timeout)

    def docker_exec(self, args):
        """Run `args` as root through docker exec (no ssh needed); return (exit code, output), or (None, why)."""
        try:
            result = self.container.exec_run(args)
        except docker.errors.APIError as error:  # not running (yet): in the middle of a restart, say
            return None, f"docker exec failed: {error.explanation or error}"
        return result.exit_code, result.output.decode(errors="replace")

    def system_state(self):
        """Return what `systemctl is-system-running` says: starting, running, degraded, ... (or why it could not)."""
        return self.docker_exec(["systemctl", "is-system-running"])[1].strip()

    def wait_until_booted(self, timeout=SYSTEMD_BOOT_TIMEOUT):
        """Poll until systemd has finished booting (running or degraded) and ssh as root answers; return the state."""
        __tracebackhide__ = True
        started = time.monotonic()
        deadline = started + timeout
        last_ssh = None
        while True:
            state = self.system_state()
            if state in ("running", "degraded"):
                try:
                    last_ssh = self.ssh_as("root", "true", check=False, timeout=15)
                    if last_ssh.returncode == 0:
                        images.log(f"{self.name}: booted ({state}) and ssh answers after "
                                   f"{time.monotonic() - started:.1f} s")
                        return state
                except AssertionError as error:  # ssh itself timed out
                    last_ssh = error
            if time.monotonic() >= deadline:
                ssh_text = (describe(last_ssh) if hasattr(last_ssh, "returncode")
                            else str(last_ssh or "(not tried: systemd never finished booting)"))
                raise AssertionError(f"{self.name} did not finish booting (running or degraded, and ssh as root) "
                                     f"within {timeout} s; last state {state!r}\n"
                                     f"--- last ssh ---\n{ssh_text}\n{self.diagnosis()}")
            time.sleep(0.2)

    def wait_for_ssh(self):
        """As for the other servers: wait until the server has booted and ssh answers."""
        __tracebackhide__ = True
        self.wait_until_booted()

    def reboot(self, timeout=SYSTEMD_BOOT_TIMEOUT):
        """Reboot: `docker restart` (systemd shuts down on SIGRTMIN+3, then boots again with a fresh /run),
        re-read the published ports (they change), wait until booted; return the state."""
        __tracebackhide__ = True
        self.container.restart(timeout=SYSTEMD_STOP_TIMEOUT)
        self.read_ports()
        return self.wait_until_booted(timeout)

    def restart(self):
        """A restart of this server is a reboot."""
        __tracebackhide__ = True
        self.reboot()

    def diagnosis(self):
        """Return what explains a boot that went wrong: state, failed units, pending jobs, journal, container log."""
        parts = []
        for args in (["systemctl", "is-system-running"], ["systemctl", "--failed", "--no-pager"],
                     ["systemctl", "list-jobs", "--no-pager"], ["journalctl", "-b", "-n", "80", "--no-pager"]):
            code, output = self.docker_exec(args)
            parts.append(f"--- {' '.join(args)} (exit code {code}) ---\n{output}")
        parts.append(f"--- container log ---\n{self.logs()[-4000:]}")
        return "\n".join(parts)


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


@pytest.fixture(scope="session")
def systemd_image(docker_client, ssh_key, docker_compose_project_name):
    """The Dockerfile's `systemd` stage with this run's public key for root, under a tag of this run's own."""
    yield from image_of_this_run(docker_client, ssh_key, images.SYSTEMD_IMAGE, docker_compose_project_name,
                                 target="systemd")


@pytest.fixture(scope="module")
def systemd_server(systemd_image, docker_client, docker_compose_project_name, ssh_key, ssh_wrapper_dir):
    """A Debian server booting with systemd as PID 1 (see `SystemdServer`), booted and answering ssh as root;
    removed after the module.

    Run the way systemd was measured to work in a container here, without --privileged (which the engine refuses):
    `docker run -d --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock
    -p 127.0.0.1::22 ... IMAGE /sbin/init`.
    """
    container = None
    try:
        container = docker_client.containers.run(
            systemd_image, ["/sbin/init"], detach=True,
            name=f"{docker_compose_project_name}systemd{uuid.uuid4().hex[:4]}",
            labels={"tinyserv-e2e": docker_compose_project_name},
            cgroupns="host", volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
            tmpfs={"/run": "", "/run/lock": ""},
            ports={f"{port}/tcp": ("127.0.0.1", None) for port in SYSTEMD_PORTS})
        started = SystemdServer(container, ssh_key, ssh_wrapper_dir)
        started.wait_until_booted()
        yield started
    finally:
        if container is not None:
            container.remove(force=True, v=True)
