"""What the e2e modules share: the server as a test reaches it (ssh, ports, testinfra), an app under test and its
client commands, polling, and the node app every module pushes (its template is tests/support.py's).

Fixtures live in conftest.py; everything else an e2e module imports from another lives here.
"""

import json
import os
import shlex
import shutil
import threading
import time

import docker.errors
import testinfra

import support
from support import describe, http_get, run, wait_until

import images

REPO = images.REPO
REAL_SSH = shutil.which("ssh") or "/usr/bin/ssh"
SSH_WAIT_TIMEOUT = 180  # the boot hook runs before sshd starts (see docker/entrypoint.sh)
SYSTEMD_BOOT_TIMEOUT = 120  # how long a systemd server's boot may take
SYSTEMD_STOP_TIMEOUT = 30  # how long systemd gets to shut down
ROOT = "/home/deploy/tinyserv"  # TINYSERV_ROOT of the compose servers (docker/deploy-env.sh)
INSTALLED_ROOT = "/home/deploy/.tinyserv"  # TINYSERV_ROOT of a server set up by `server:install --root` (the default)
SAMPLE_APP = os.path.join(REPO, "tests", "sample-app")
PUSH_TIMEOUT = 180
PREFIX = "rel-"  # the apps new_app makes (conftest.py) are named rel-...


def ssh_options(key):
    """ssh options that log in with the test key and ignore host keys, which change with every container."""
    return ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


class Server:
    """The server container as a test sees it: ssh, published ports, testinfra, restart, its TINYSERV_ROOT."""

    tinyserv_root = ROOT

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
      system_state()                what `systemctl is-system-running` says (through docker exec)
      wait_until_booted(timeout)    poll until the state is running or degraded and ssh as root answers
      reboot()                      `docker restart` (systemd shuts down and boots again), then wait_until_booted
      diagnosis()                   text for failure messages: state, failed units, jobs, journal, container log
    `ssh_as("root", command)` runs as root (`ssh(command)`, as everywhere, as the deploy user once one exists).
    `restart()` and `wait_for_ssh()` are reboot() and wait_until_booted(), so code written for any server works.
    """

    tinyserv_root = INSTALLED_ROOT

    def __init__(self, container, key, ssh_dir, name="systemd"):
        super().__init__(container, key, ssh_dir, services=None, name=name)

    @property
    def root_remote(self):
        """Return the ssh remote that reaches this server as root."""
        return f"ssh://root@127.0.0.1:{self.port(22)}"

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


def package_json(dependencies=None):
    """A package.json for a Node.js app; without dependencies `npm install` needs no registry."""
    return support.package_json(dependencies)


def node_index(body):
    """index.js of a dependency-free Node.js app that answers every request with `body` (JavaScript)."""
    return support.node_source(body)


def node_app(text, procfile="web: node index.js\n"):
    """The files of a plain node `http` app that answers `text` (its main file is index.js)."""
    return support.node_app(text, procfile=procfile, main="index.js")


class App:
    """One app under test: its local repository, and the client commands run in it."""

    def __init__(self, server, repo, name):
        self.server = server
        self.repo = str(repo)
        self.name = name
        self.port = None

    def tinyserv(self, *args, check=True):
        """Run the real client in the app's repository."""
        __tracebackhide__ = True
        return run(["tinyserv", *args], cwd=self.repo, env=self.server.env, check=check, timeout=PUSH_TIMEOUT)

    def push(self, *refspecs, check=True):
        """`git push tinyserv REFSPEC...` (main by default)."""
        __tracebackhide__ = True
        return run(["git", "push", "tinyserv", *(refspecs or ["main"])], cwd=self.repo, env=self.server.env,
                   check=check, timeout=PUSH_TIMEOUT)

    def git(self, *args):
        """Run git in the app's repository; return its stripped stdout."""
        return run(["git", *args], cwd=self.repo).stdout.strip()

    def commit(self, files, message):
        """Write `files` ({name: text}) and commit them; return the new commit's sha."""
        for name, text in files.items():
            with open(os.path.join(self.repo, name), "w") as f:
                f.write(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def info(self):
        return json.loads(self.tinyserv("apps:info", "--json").stdout)

    def releases(self, *args):
        """`tinyserv releases --json`: newest first."""
        return json.loads(self.tinyserv("releases", "--json", *args).stdout)

    def config(self):
        return json.loads(self.tinyserv("config", "--json").stdout)

    def url(self):
        """The app's URL on this machine (its container port is asked once; the host side is re-read each time)."""
        if self.port is None:
            self.port = self.info()["port"]
        return self.server.url(self.port)

    def get(self):
        return http_get(self.url())

    def wait_serving(self, text, timeout=30):
        """Poll until the app answers exactly `text`."""
        url = self.url()
        return wait_until(lambda: http_get(url) == (200, text), timeout, interval=0.1,
                          message=f"{self.name} to answer {text!r} (it answered {http_get(url)!r} before)")

    def on_disk(self):
        """The app on the server's disk, in one ssh call: its public release file, build directories and main."""
        root = self.server.tinyserv_root
        out = self.server.ssh(
            f"cat {root}/releases/{self.name}.json; echo '#'; "
            f"find {root}/apps/{self.name}/builds -mindepth 1 -maxdepth 1 -type d -printf '%f\\n'; echo '#'; "
            f"git --git-dir={root}/repos/{self.name}.git rev-parse -q --verify refs/heads/main || true").stdout
        release, builds, main = out.split("#\n")
        return {"release": json.loads(release), "builds": sorted(builds.split()), "main": main.strip()}


def deployed(app, text, *refspecs):
    """Push the app's main branch (or `refspecs`) and wait until it answers `text`; return the push's result."""
    result = app.push(*refspecs)
    app.wait_serving(text)
    return result


def output(result):
    """Everything a command printed (git push writes the server's lines to stderr)."""
    return result.stdout + result.stderr


def remote_lines(result):
    """The lines the server printed during a push, without git's `remote: ` prefix."""
    return [line[len("remote: "):].rstrip() for line in output(result).splitlines() if line.startswith("remote: ")]


class Poller:
    """While in a `with` block, GET `url` every ~50 ms in a background thread (until `deadline` seconds at most),
    recording each answer: (status, body), or None when nothing answered."""

    def __init__(self, url, deadline=PUSH_TIMEOUT, interval=0.05):
        self.url = url
        self.deadline = deadline
        self.interval = interval
        self.answers = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _poll(self):
        end = time.monotonic() + self.deadline
        while not self._stop.is_set() and time.monotonic() < end:
            self.answers.append(http_get(self.url, timeout=2))
            self._stop.wait(self.interval)

    def report(self):
        """How many polls there were and each answer that differed from the first, for failure messages."""
        return f"{len(self.answers)} polls; answers: " + ", ".join(
            f"#{i} {answer!r}" for i, answer in enumerate(self.answers) if answer != self.answers[0])


def push_while_polling(app, expected):
    """Push main while polling the app; assert it answered `expected` on every poll; return the push's result."""
    __tracebackhide__ = True
    with Poller(app.url()) as poller:
        result = app.push(check=False)
    assert len(poller.answers) >= 5, f"too few polls to tell anything: {poller.report()}\n{describe(result)}"
    wrong = [(i, answer) for i, answer in enumerate(poller.answers) if answer != expected]
    assert not wrong, (f"the running release did not answer {expected!r} on every poll during the push: "
                       f"{len(wrong)} of {len(poller.answers)} polls got {wrong[:10]}\n{describe(result)}")
    return result


def assert_rejected(result, reason):
    """The push failed the way git reports a declined pre-receive hook, with tinyserv's one-line reason."""
    __tracebackhide__ = True
    text = output(result)
    assert result.returncode != 0, f"the push was accepted\n{describe(result)}"
    assert "pre-receive hook declined" in text, describe(result)
    assert " !     Push rejected: " + reason in text, describe(result)


def sample_app_files():
    files = {}
    for name in ("Procfile", "index.js", "package.json", "package-lock.json"):
        with open(os.path.join(SAMPLE_APP, name)) as f:
            files[name] = f.read()
    return files


def assert_escaped_output(server, directory, name):
    """What an app, a build or a commit writes reaches the terminal escaped (issue 16 item 8): app `name` is made in
    `directory` with a commit author, a release command and a web that write a clear-screen sequence; the push,
    `releases` and `logs` show it as \\x1b, `logs --raw` as written. The app is destroyed afterwards."""
    __tracebackhide__ = True
    clear, shown = "\x1b[2J", "\\x1b[2J"
    files = node_app("esc", procfile="web: node index.js\nrelease: printf 'release says \\033[2Jhi\\n'")
    files["index.js"] = "console.log('app says \\u001b[2Jhello');\n" + files["index.js"]
    app = App(server, support.make_app(os.path.join(str(directory), name), files), name)
    app.git("config", "user.email", "evil" + clear + "@example.invalid")
    app.git("commit", "-q", "--amend", "--reset-author", "--no-edit")
    app.tinyserv("apps:create", name)
    try:
        pushed = app.push()
        assert "\x1b" not in output(pushed) and "release says " + shown + "hi" in output(pushed), describe(pushed)
        releases = app.tinyserv("releases")
        assert "\x1b" not in releases.stdout and "evil" + shown in releases.stdout, describe(releases)
        logs = wait_until(lambda: (lambda r: r if "hello" in r.stdout else None)(app.tinyserv("logs")),
                          30, message="the app's first line in its log")
        assert "\x1b" not in logs.stdout and "app says " + shown + "hello" in logs.stdout, describe(logs)
        raw = app.tinyserv("logs", "--raw")
        assert "app says " + clear + "hello" in raw.stdout, describe(raw)
    finally:
        app.tinyserv("apps:destroy", "--confirm", name, check=False)
