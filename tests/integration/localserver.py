"""A tinyserv "server" on this machine for the integration tests: its root, ports, commands and processes.

Every LocalServer has a temporary TINYSERV_ROOT and a TINYSERV_START_PORT of its own (a random, checked range in
20000-40000), runs with TINYSERV_REMOTE unset (so tinyserv-remote runs here, through bash) and the repo's bin/
first on PATH. shut_down() runs `tinyserv-remote shutdown` and fails if any process of its root or apps survives.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import tempfile
import time
import uuid

from support import describe, make_app, port_is_free, run, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(REPO, "bin")
TINYSERV = os.path.join(BIN, "tinyserv")
TINYSERV_REMOTE = os.path.join(BIN, "tinyserv-remote")
SAMPLE_APP = os.path.join(REPO, "tests", "sample-app")

# Below the kernel's ephemeral range (net.ipv4.ip_local_port_range starts at 32768), where web instances' internal
# ports come from: an app's public port (or nginx's) inside that range can be drawn by an internal port first.
PORT_RANGE = (20000, 32000)
PORT_SPAN = 64  # ports checked free above TINYSERV_START_PORT: more than any test creates apps (nginx's two last)
# A block of ports is held with a lock file while its server lives, so parallel test processes (pytest-xdist)
# never share one: a block only checked free could be handed to another server while this one's nginx was down.
PORT_LOCKS = os.path.join(tempfile.gettempdir(), "tinyserv-integration-ports")
SHUTDOWN_TIMEOUT = 90
LINGER_TIMEOUT = 5  # an exiting supervisor or a zombie may take a moment to leave /proc


def pick_start_port(rng=random.SystemRandom()):
    """(base port, lock descriptor): a block of PORT_SPAN ports that are free and held by no other server
    (of any test process) until the descriptor is closed."""
    os.makedirs(PORT_LOCKS, exist_ok=True)
    for _ in range(200):
        base = PORT_RANGE[0] + PORT_SPAN * rng.randrange((PORT_RANGE[1] - PORT_RANGE[0]) // PORT_SPAN)
        lock = os.open(os.path.join(PORT_LOCKS, "%d.lock" % base), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue
        if all(port_is_free(p) for p in range(base, base + PORT_SPAN)):
            return base, lock
        os.close(lock)
    raise AssertionError(f"no {PORT_SPAN} free consecutive ports found in {PORT_RANGE}")


def unique_name(prefix):
    """A valid app name no other test (here or in a parallel run) uses: prefix plus random hex."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- processes, read from /proc ---------------------------------------------------------------------------


def _read(pid, what):
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return None


def _is_live(pid):
    """Exists and is not a zombie (zombies linger here until PID 1 reaps them)."""
    stat = _read(pid, "stat")
    if stat is None:
        return False
    state = stat[stat.rindex(b")") + 2:].split()[0]
    return state not in (b"Z", b"X")


def live_pids():
    """Every live process but this one."""
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) != os.getpid() and _is_live(int(n))]


def environ_of(pid):
    """The process's environment as a set of b'NAME=value' (empty if unreadable)."""
    data = _read(pid, "environ")
    return set(data.split(b"\0")) if data else set()


def cmdline_of(pid):
    """The command line, words joined by spaces."""
    data = _read(pid, "cmdline") or b""
    return data.replace(b"\0", b" ").decode(errors="replace").strip()


def cwd_of(pid):
    """The working directory ('' if unreadable)."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


class Link(str):
    """A file of an app's tree that is a symbolic link to this target (see LocalServer.commit)."""


def write_file(path, content):
    """Make path hold content (text, bytes or a Link), whatever was there before (a file, a link, a directory)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(content, Link):
        os.symlink(content, path)
    else:
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())


@dataclasses.dataclass(frozen=True)
class App:
    """An app as a test holds it: its name and the git repository it deploys from."""

    name: str
    path: str


class LocalServer:
    """A tinyserv server on this machine: its root, ports and environment, and how to talk to it."""

    def __init__(self, root):
        self.root = str(root)
        self.start_port, self.port_lock = pick_start_port()
        self.app_names = set()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TINYSERV_") and k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
        # nginx's own ports come from this server's block too, so parallel servers never share them.
        self.http_port, self.https_port = self.start_port + PORT_SPAN - 2, self.start_port + PORT_SPAN - 1
        env.update(TINYSERV_ROOT=self.root, TINYSERV_START_PORT=str(self.start_port),
                   TINYSERV_HTTP_PORT=str(self.http_port), TINYSERV_HTTPS_PORT=str(self.https_port),
                   PATH=os.pathsep.join([BIN, env.get("PATH", "")]))
        self.env = env

    @property
    def front_door(self):
        """Does this server put nginx in front of its apps (nginx installed, TINYSERV_NGINX not off)?"""
        named = self.env.get("TINYSERV_NGINX")
        return named != "off" and os.access(named or "/usr/sbin/nginx", os.X_OK)

    def without_nginx(self):
        """Run this server as one where nginx is not installed (before anything started)."""
        self.env["TINYSERV_NGINX"] = os.path.join(self.root, "no-nginx-here")

    # --- commands ---

    def tinyserv(self, *args, cwd=None, input=None, check=True, timeout=120):
        """Run bin/tinyserv ARGS; with check, fail showing the command, exit code and output."""
        __tracebackhide__ = True
        return run([TINYSERV, *map(str, args)], cwd=cwd, env=self.env, input=input, check=check, timeout=timeout)

    def remote(self, *args, check=True, timeout=120):
        """Run bin/tinyserv-remote ARGS on this server."""
        __tracebackhide__ = True
        return run([TINYSERV_REMOTE, *map(str, args)], env=self.env, check=check, timeout=timeout)

    def git(self, *args, cwd, check=True, timeout=300):
        """Run git ARGS in cwd with this server's environment (a push runs the server's hook)."""
        __tracebackhide__ = True
        return run(["git", *map(str, args)], cwd=cwd, env=self.env, check=check, timeout=timeout)

    def push(self, app, check=True):
        """`git push tinyserv main` from the app's repository, once its deploy has closed; output in stdout + stderr."""
        __tracebackhide__ = True
        result = self.git("push", "tinyserv", "main", cwd=app.path, check=check)
        self.wait_settled(app)
        return result

    def wait_settled(self, app, timeout=30):
        """Wait until the app's last push is settled: git has moved the ref (or not) and the deploy kept
        (or undid) its release, which happens milliseconds after `git push` returns."""
        pending = os.path.join(self.root, "apps", app.name, "pending.json")
        wait_until(lambda: not os.path.exists(pending), timeout, interval=0.01, message=f"{pending} to go away")

    # --- apps ---

    def new_app(self, directory, files, prefix="app"):
        """Make a repository named like a fresh app under directory, and `tinyserv apps:create` there."""
        name = unique_name(prefix)
        self.app_names.add(name)
        path = make_app(os.path.join(str(directory), name), files)
        self.tinyserv("apps:create", cwd=path)
        return App(name, str(path))

    def commit(self, app, files, message="change"):
        """Make the app's repository hold exactly files ({name: text, bytes or Link}, nothing else) and commit."""
        for name in self.git("ls-files", "-z", cwd=app.path).stdout.split("\0"):
            if name and name not in files:
                os.unlink(os.path.join(app.path, name))
                with contextlib.suppress(OSError):
                    os.removedirs(os.path.dirname(os.path.join(app.path, name)))
        for name, content in files.items():
            write_file(os.path.join(app.path, name), content)
        self.git("add", "-A", cwd=app.path)
        self.git("commit", "-q", "--allow-empty", "-m", message, cwd=app.path)
        return self.git("rev-parse", "HEAD", cwd=app.path).stdout.strip()

    def info(self, app):
        """`apps:info --json` of app, as a dict."""
        return json.loads(self.tinyserv("apps:info", "-a", app.name, "--json").stdout)

    def port(self, app):
        """The app's port, as `apps:info` reports it."""
        return self.info(app)["port"]

    def url(self, app, path="/"):
        """The app's URL on 127.0.0.1."""
        return f"http://127.0.0.1:{self.port(app)}{path}"

    def config(self, app):
        """`config --json` of app, as a dict."""
        return json.loads(self.tinyserv("config", "-a", app.name, "--json").stdout)

    def releases(self, app):
        """`releases --json` of app, newest first."""
        return json.loads(self.tinyserv("releases", "-a", app.name, "--json").stdout)

    def app_processes(self, app, dyno=None):
        """Live pids started for app (by TINYSERV_APP in their environment), optionally of one DYNO."""
        name = app.name if isinstance(app, App) else app
        wanted = {f"TINYSERV_APP={name}".encode()} | ({f"DYNO={dyno}".encode()} if dyno else set())
        return [pid for pid in live_pids() if wanted <= environ_of(pid)]

    def node_processes(self, app, dyno):
        """The node processes (not the sh around them) of one instance of app."""
        def is_node(pid):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    return f.read().strip() == "node"
            except OSError:
                return False
        return [pid for pid in self.app_processes(app, dyno) if is_node(pid)]

    # --- state on disk ---

    def snapshot(self):
        """{path: sha256 or 'dir'} of apps/, repos/ and releases/: what a command can change.

        Left out: each app's log/ and run/, which change whenever an app prints, restarts or an old web
        finishes draining (its pipe goes), whatever a command did.
        """
        state = {}
        for top in ("apps", "repos", "releases"):
            for directory, dirs, files in os.walk(os.path.join(self.root, top)):
                rel_dir = os.path.relpath(directory, self.root).split(os.sep)
                if top == "apps" and len(rel_dir) == 2:
                    dirs[:] = [d for d in dirs if d not in ("log", "run")]
                for name in dirs + files:
                    path = os.path.join(directory, name)
                    rel = os.path.relpath(path, self.root)
                    if top == "apps" and len(rel_dir) == 2 and name in ("log", "run"):
                        continue
                    if os.path.isfile(path) and not os.path.islink(path):
                        with open(path, "rb") as f:
                            state[rel] = hashlib.sha256(f.read()).hexdigest()
                    else:
                        state[rel] = "dir" if os.path.isdir(path) else "other"
        return state

    def paths_naming(self, name):
        """Every path under the root whose path (relative to the root) mentions name."""
        found = []
        for directory, dirs, files in os.walk(self.root):
            rels = [os.path.relpath(os.path.join(directory, n), self.root) for n in dirs + files]
            found += [rel for rel in rels if name in rel]
        return found

    # --- teardown ---

    def survivors(self):
        """Live processes of this server: its root in their environment, command line or cwd, or its apps' marks.

        A process of one of its apps carries TINYSERV_INSTANCE=<this root's tag>:<app>:..., so another server's
        app of the same name (a restored copy) is never taken for one of this server's.
        """
        root_env = f"TINYSERV_ROOT={self.root}".encode()
        mark = f"TINYSERV_INSTANCE={hashlib.sha256(self.root.encode()).hexdigest()[:8]}:".encode()
        found = []
        for pid in live_pids():
            env = environ_of(pid)
            cwd = cwd_of(pid)
            if (root_env in env or any(e.startswith(mark) for e in env) or self.root in cmdline_of(pid)
                    or cwd == self.root or cwd.startswith(self.root + os.sep)):
                found.append(pid)
        return found

    def app_names_on_disk(self):
        """The apps the root holds now."""
        try:
            return [n[:-5] for n in os.listdir(os.path.join(self.root, "releases")) if n.endswith(".json")]
        except FileNotFoundError:
            return []

    def shut_down(self):
        """`tinyserv-remote shutdown`, then fail if anything of this server still runs (killing it first)."""
        self.app_names |= set(self.app_names_on_disk())
        problems = []
        result = self.remote("shutdown", check=False, timeout=SHUTDOWN_TIMEOUT)
        if result.returncode != 0:
            problems.append("tinyserv-remote shutdown failed:\n" + describe(result))
        deadline = time.monotonic() + LINGER_TIMEOUT
        left = self.survivors()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.survivors()
        if left:
            described = "\n".join(f"  pid {pid}: {cmdline_of(pid)}" for pid in left)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            problems.append(f"processes of {self.root} survived the shutdown (now killed):\n{described}")
        if problems:
            raise AssertionError("\n".join(problems))


@contextlib.contextmanager
def local_server(root):
    """A LocalServer for the duration of the block; shut down and checked in a finally."""
    os.makedirs(root, exist_ok=True)
    server = LocalServer(root)
    try:
        yield server
    finally:
        try:
            server.shut_down()
        finally:
            os.close(server.port_lock)  # the block of ports is free for another server


def sample_app_files():
    """The files of sample-app/ (Procfile, index.js, package.json, its lock file) as {name: text}."""
    files = {}
    for name in sorted(os.listdir(SAMPLE_APP)):
        path = os.path.join(SAMPLE_APP, name)
        if os.path.isfile(path):
            with open(path) as f:
                files[name] = f.read()
    return files
