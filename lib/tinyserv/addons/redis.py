"""Redis add-ons: a redis-server per add-on, kept running by the supervisor as a platform service.

Each add-on has apps/<app>/addons/<name>/ with its redis.conf (0600: it holds the password)
and its data directory. Persistence is the append-only file (fsync every second) on top of
an RDB base, so the data survives restarts, reboots and a SIGKILL (all but the last second).
redis-server listens on 127.0.0.1 on a port of its own and asks for the password.
"""

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.parse

from tinyserv.platform import services
from tinyserv.state import store
from tinyserv.common.errors import TinyservError

FIRST_PORT = 6380  # add-on ports are handed out from here (6379 is a system redis-server's)
READY_TIMEOUT = 15  # seconds a new redis-server gets to answer PING
STOP_TIMEOUT = 40  # seconds to wait for a withdrawn redis-server to exit (its grace is 30 s)
SAVE_TIMEOUT = 600  # seconds a BGSAVE for a backup may take
INSTALL = "on Debian: apt install redis-server"


def server_program(environ=os.environ):
    """redis-server's path (TINYSERV_REDIS_SERVER, else found on PATH), or one line saying it is missing."""
    chosen = environ.get("TINYSERV_REDIS_SERVER")
    if chosen:
        if not os.path.isabs(chosen) or not os.access(chosen, os.X_OK) or os.path.isdir(chosen):
            raise TinyservError("TINYSERV_REDIS_SERVER is %s, which is not a redis-server tinyserv can run: "
                                "unset it, or give the absolute path of one (%s)" % (chosen, INSTALL))
        return chosen
    path = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if os.access(p, os.X_OK)), None)
    if not path:
        raise TinyservError("redis-server is not installed on the server (%s)" % INSTALL)
    return path


def version(program):
    """redis-server's version as (major, minor), from `redis-server --version`."""
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TinyservError("cannot run %s --version: %s" % (program, e)) from None
    found = re.search(r"v=(\d+)\.(\d+)", out)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def addon_dir(layout, app, name):
    """apps/<app>/addons/<name>/: a Redis add-on's configuration and data."""
    return layout.app_file(app, "addons", name)


def data_dir(layout, app, name):
    """Where redis-server keeps the add-on's data (its dir)."""
    return os.path.join(addon_dir(layout, app, name), "data")


def conf_file(layout, app, name):
    """The add-on's redis.conf (0600: it holds the password)."""
    return os.path.join(addon_dir(layout, app, name), "redis.conf")


def conf_text(app, name, port, password, data, also=()):
    """redis.conf of one add-on: loopback (and also: the engine's bridge gateway, for a swarm app's tasks; '-'
    makes it optional, so the server starts while the engine is down), its port and password, AOF persistence."""
    return "\n".join([
        "# Written by tinyserv for add-on %s of app %s." % (name, app),
        " ".join(["bind 127.0.0.1", *("-" + a for a in also)]), "protected-mode yes", "port %d" % port, "requirepass %s" % password,
        "daemonize no", 'logfile ""', "dir %s" % data, "dbfilename dump.rdb",
        "appendonly yes", "appendfsync everysec", "save 3600 1 300 100 60 10000", ""])


def swarm_addresses(layout, app):
    """Where a swarm app's tasks reach this server besides loopback: the engine's bridge gateway ([] for a local
    app: its Redis stays on loopback)."""
    from tinyserv.state import appstate
    from tinyserv.platform import docker
    if appstate.scheduler(layout, app) != "swarm":
        return []
    gateway = docker.bridge_gateway()
    return [gateway] if gateway else []


def url(port, password):
    """The REDIS_URL of an add-on on 127.0.0.1:port."""
    return "redis://default:%s@127.0.0.1:%d" % (password, port)


# --- the Redis protocol, as much as tinyserv needs ----------------------------------------------


def encode(*words):
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        data = word.encode() if isinstance(word, str) else word
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Reply(str):
    """A simple-string or bulk reply."""


class ReplyError(Exception):
    """Redis answered -ERR ..."""


def read_reply(f):
    """One reply from a file-like socket reader: Reply, int, None (null), list, or raise ReplyError."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("the connection was closed")
    kind, rest = line[:1], line[1:-2].decode("utf-8", "replace")
    if kind == b"+":
        return Reply(rest)
    if kind == b"-":
        raise ReplyError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        if int(rest) < 0:
            return None
        data = f.read(int(rest) + 2)
        return Reply(data[:-2].decode("utf-8", "replace"))
    if kind == b"*":
        return None if int(rest) < 0 else [read_reply(f) for _ in range(int(rest))]
    raise OSError("not a Redis reply: %r" % line[:40])


def command(port, password, *words, timeout=5):
    """AUTH, then one command on 127.0.0.1:port; its reply (raises OSError or ReplyError)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(encode("AUTH", password) + encode(*words))
        with s.makefile("rb") as f:
            read_reply(f)
            return read_reply(f)


def info(port, password, section):
    """INFO section as a dict of text values."""
    text = command(port, password, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def wait_ready(port, password, timeout=READY_TIMEOUT):
    """True once redis-server answers PING on port (and is done loading its data)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if command(port, password, "PING", timeout=1) == "PONG":
                return True
        except (OSError, ReplyError):
            pass  # not listening yet, or still loading (-LOADING)
        time.sleep(0.05)
    return False


def snapshot(port, password, timeout=SAVE_TIMEOUT):
    """Have redis-server write a consistent RDB snapshot now (BGSAVE: a fork, no pause); wait for it."""
    deadline = time.monotonic() + timeout
    saves = int(info(port, password, "persistence").get("rdb_saves", "0"))
    while True:
        try:
            command(port, password, "BGSAVE")
            break
        except ReplyError as e:  # another save or an AOF rewrite is running: ours comes after it
            if time.monotonic() > deadline:
                raise TinyservError("redis on port %d refused BGSAVE: %s" % (port, e)) from None
            time.sleep(0.1)
    while True:
        state = info(port, password, "persistence")
        if int(state.get("rdb_saves", "0")) > saves and state.get("rdb_bgsave_in_progress") == "0":
            if state.get("rdb_last_bgsave_status") != "ok":
                raise TinyservError("redis on port %d could not save its data (see its log)" % port)
            return
        if time.monotonic() > deadline:
            raise TinyservError("redis on port %d did not finish saving within %d s" % (port, timeout))
        time.sleep(0.05)


class Provider:
    """What addons.py asks of a Redis add-on: check, provision, deprovision, snapshot and restore."""

    kind = "redis"
    var = "REDIS_URL"

    def __init__(self, find=server_program):
        self.find = find  # where redis-server is (raises when it is not installed); tests pass a fake

    def check_available(self):
        """redis-server is installed and new enough for its multi-part append-only file."""
        program = self.find()
        found = version(program)
        if found < (7, 0):
            raise TinyservError("redis-server %d.%d is too old: tinyserv needs Redis 7 or later" % found)
        return program

    def provision(self, layout, app, addon, password=None):
        """Write its redis.conf, declare its service, wait until it answers; undo all of it on failure."""
        from tinyserv.platform import control
        password = password or secrets.token_hex(24)
        try:
            self.prepare(layout, app, addon, password)
            control.sync(layout)  # a full sync: that is when the supervisor reads the declarations
            self.wait(layout, addon, password)
        except BaseException:
            self.deprovision(layout, app, addon)
            raise
        return url(addon["port"], password)

    def prepare(self, layout, app, addon, password, seed=None):
        """Its data directory (seed: an RDB snapshot to start from), its redis.conf, its service declaration."""
        program = self.check_available()
        name = addon["name"]
        data = data_dir(layout, app, name)
        os.makedirs(data, mode=0o700, exist_ok=True)
        if seed:
            self.seed(layout, app, name, seed)
        store.write_atomic(conf_file(layout, app, name), conf_text(app, name, addon["port"], password, data,
                                                                   swarm_addresses(layout, app)), 0o600)
        services.declare(layout, name, [program, conf_file(layout, app, name)], addon_dir(layout, app, name),
                         {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}, grace=30)

    def wait(self, layout, addon, password):
        """Raise unless its redis-server answers within READY_TIMEOUT (with the last line it logged)."""
        if not wait_ready(addon["port"], password):
            raise TinyservError("redis-server for %s did not answer on port %d within %d s: %s" % (
                addon["name"], addon["port"], READY_TIMEOUT, last_log_line(layout, addon["name"])))

    def deprovision(self, layout, app, addon):
        """Stop its redis-server (the supervisor's doing) and delete its configuration and data."""
        from tinyserv.platform import control, procs
        # The process is noted before the withdrawal: a supervisor too busy to answer a ping at once must
        # still be told, and its redis-server (the group, a BGSAVE child too) waited for, before the data goes,
        # until the supervisor has reaped it (an exited one is a zombie until then: still in `ps` and pgrep).
        running = services.process(layout, addon["name"])
        services.withdraw(layout, addon["name"])
        if running or control.running(layout):
            control.sync(layout)
        if running:
            deadline = time.monotonic() + STOP_TIMEOUT
            while (procs.group_members(running[0]) or services.listed(layout, addon["name"], running[0])) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
        shutil.rmtree(addon_dir(layout, app, addon["name"]), ignore_errors=True)
        with contextlib.suppress(OSError):  # the app's last add-on leaves no empty addons/ behind
            os.rmdir(os.path.dirname(addon_dir(layout, app, addon["name"])))

    def dump(self, layout, app, addon, path):
        """A consistent RDB snapshot of the add-on's data, copied to path."""
        snapshot(addon["port"], password_of(addon))
        # BGSAVE renames its new file into place: the one we open stays whole while we copy it.
        shutil.copyfile(os.path.join(data_dir(layout, app, addon["name"]), "dump.rdb"), path)

    def seed(self, layout, app, name, rdb_path):
        """Before its first start: make rdb_path the add-on's data (the base of its append-only file)."""
        aof = os.path.join(data_dir(layout, app, name), "appendonlydir")
        os.makedirs(aof, mode=0o700, exist_ok=True)
        shutil.copyfile(rdb_path, os.path.join(aof, "appendonly.aof.1.base.rdb"))
        store.write_atomic(os.path.join(aof, "appendonly.aof.manifest"),
                           "file appendonly.aof.1.base.rdb seq 1 type b\n", 0o600)


def password_of(addon):
    """The password in an add-on's REDIS_URL."""
    return urllib.parse.urlsplit(addon["url"]).password


def last_log_line(layout, name):
    """The last thing the service printed (why redis-server did not start)."""
    try:
        with open(services.log_file(layout, name), "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines() if l.strip()]
    except OSError:
        lines = []
    return lines[-1].strip() if lines else "it printed nothing (see %s)" % services.log_file(layout, name)
