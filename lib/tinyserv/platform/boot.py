"""The boot check: does a release's web start and keep listening, before anything is switched?

A deploy, a config change and a rollback each start web on a trial port first, with the
environment it will run with. Only a web that accepts connections (and answers its health
check path with 2xx or 3xx, when app.json declares one) lets the change go ahead; otherwise
the change is refused with the last lines web printed, and the running release is never touched.

Without the front door the trial web must also still run SETTLE seconds later, and is then
stopped: the supervisor boots the release again on the app's port. With the front door
(keep=True) the trial web is the new release's web.1: it writes into a pipe the supervisor
takes over, and the switch itself watches it settle, with the old web as nginx's backup.
"""

import collections
import os
import socket
import time

from tinyserv.platform import appenv, procs

SETTLE = 0.3  # web must keep running this long after it first accepts a connection
SHOWN_LINES = 15
KEPT_LINES = 200  # lines a kept web printed during its check, written to the app log when it goes live

Up = collections.namedtuple("Up", "port instance lines", defaults=(None, ()))
Crashed = collections.namedtuple("Crashed", "exit_code lines reason", defaults=(None,))  # reason: "not answering"
TimedOut = collections.namedtuple("TimedOut", "seconds lines")


PORT_TAKEN = "port taken"  # Crashed.reason: web never listened, and another program holds its port now
PORT_TRIES = 3


def free_port():
    """A port no socket uses now on any address, IPv6 included where there is IPv6 (the kernel's choice): a
    web listens on every address (node on ::), so a port free on 127.0.0.1 alone may be another socket's."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
            return s.getsockname()[1]
    except OSError:  # no IPv6 here
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            return s.getsockname()[1]


def bind_error(port):
    """None if a server could listen on port on every address now (with SO_REUSEADDR, as servers do), else
    the OSError binding it raised."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as e:
            return e
    return None


def check(layout, app, build_dir, meta, config, version, timeout, cancelled=lambda: None, keep=False, user=None,
          owner=None):
    """Start web on a trial port and wait until it listens: Up, Crashed or TimedOut.

    cancelled() may raise to abandon the check (the push's client went away); web is
    stopped, with every process it started, whatever happens, unless it passed and keep
    is set: then Up.instance describes it for the supervisor, and the caller owns it.
    user: the app's own user (root mode, where the supervisor runs the check), else None.
    owner: the pid of the change this web belongs to (kept_mark), if not this process.

    A trial port is free when chosen, not reserved: a web that never listened and whose port another program
    holds once it ended (an outgoing connection drew it meanwhile) is tried again on a new one.
    """
    for _ in range(PORT_TRIES):
        if keep:
            result = check_kept(layout, app, build_dir, meta, config, version, timeout, cancelled, user,
                                owner or os.getpid())
        else:
            result = check_trial(layout, app, build_dir, meta, config, version, timeout, cancelled, user)
        if not (isinstance(result, Crashed) and result.reason == PORT_TAKEN):
            break
    return result


def check_trial(layout, app, build_dir, meta, config, version, timeout, cancelled, user=None):
    """check() without the front door: web on a trial port, stopped whatever happens."""
    port = free_port()
    mark = layout.mark(app, "trial.%d" % time.time_ns())
    env = appenv.process_env(build_dir, meta, config, app, "web.1", port, version, mark, layout.ensure_data_dir(app))
    import tempfile  # here: `tinyserv-remote ps` imports this module and starts faster without it
    with tempfile.TemporaryFile() as out:
        pid = procs.spawn(["/bin/sh", "-c", meta["procfile"]["web"]], build_dir, env, out.fileno(), user=user)
        try:
            result = wait_listening(pid, port, timeout, cancelled, meta.get("healthcheck"), SETTLE)
        finally:
            procs.stop([pid], grace=5, what="stopping the trial web", marks=[mark])
            procs.reap(pid)
        if isinstance(result, Up):
            return result
        out.seek(0)
        lines = list(collections.deque(out.read().decode("utf-8", "replace").splitlines(), SHOWN_LINES))
        return result._replace(lines=lines)


def kept_mark(layout, app, owner):
    """The mark of a web a kept check starts: an instance's (web.1@...) that names the change it belongs to.

    A new supervisor kills the instances no run/state.json lists, but not a web whose change (a push,
    a config:set: owner, a pid) still runs: the change hands it over, or stops it, itself.
    """
    return layout.mark(app, "web.1@%d~%d.%s" % (time.time_ns(), owner, procs.starttime(owner)))


def owner_of(mark):
    """(pid, starttime) of the change a kept web belongs to (kept_mark), or None for any other mark."""
    _, _, owner = mark.rpartition("~")
    pid, _, started = owner.partition(".")
    if "@" not in mark or not pid.isdigit() or not started.isdigit():
        return None
    return int(pid), int(started)


def check_kept(layout, app, build_dir, meta, config, version, timeout, cancelled, user=None, owner=None):
    """check() for the front door: web.1 writes into a pipe the supervisor can take over, and stays up if it passes."""
    port = free_port()
    started = time.time()
    mark = kept_mark(layout, app, owner or os.getpid())
    fifo = layout.app_file(app, "run", "web.1.%d.fifo" % time.time_ns())
    os.mkfifo(fifo, 0o600)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    passed = False
    try:
        procs.enlarge_pipe(reader, 1024 * 1024)
        out = os.open(fifo, os.O_RDWR)  # web also reads its own pipe: no broken pipe between us and the supervisor
        try:
            pid = procs.spawn(["/bin/sh", "-c", meta["procfile"]["web"]], build_dir,
                              appenv.process_env(build_dir, meta, config, app, "web.1", port, version, mark,
                                                 layout.ensure_data_dir(app)), out, user=user)
        finally:
            os.close(out)
        printed = Printed(reader)
        try:
            result = wait_listening(pid, port, timeout, cancelled, meta.get("healthcheck"), 0, printed.read)
            passed = isinstance(result, Up)
        finally:
            if not passed:
                procs.stop([pid], grace=5, what="stopping the trial web", marks=[mark])
                procs.reap(pid)
        printed.read()
        if not passed:
            return result._replace(lines=printed.last(SHOWN_LINES))
        instance = {"name": "web.1", "version": version, "pid": pid, "pgid": pid, "starttime": procs.starttime(pid),
                    "fifo": fifo, "mark": mark, "port": port, "started": started, "since": time.time()}
        return Up(port, instance, printed.last(KEPT_LINES) + printed.partial())
    finally:
        os.close(reader)
        if not passed:
            try:
                os.unlink(fifo)
            except OSError:
                pass


class Printed:
    """What a trial web printed into its pipe so far: whole lines kept (the last few), the rest waiting."""

    def __init__(self, fd):
        self.fd = fd
        self.lines = collections.deque(maxlen=KEPT_LINES)
        self.rest = b""

    def read(self):
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            *whole, self.rest = (self.rest + chunk).split(b"\n")
            self.lines.extend(line.decode("utf-8", "replace") for line in whole)
            self.rest = self.rest[-10000:]

    def last(self, count):
        return list(self.lines)[-count:]

    def partial(self):
        return [self.rest.decode("utf-8", "replace")] if self.rest else []


def healthy(port, path, timeout=1.0):
    """Does GET path on 127.0.0.1:port answer 2xx or 3xx (app.json's healthchecks.web)?"""
    import http.client  # only for apps that declare a health check
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close", "User-Agent": "tinyserv-healthcheck"})
        return 200 <= conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def stop_kept(layout, instance):
    """Stop a web that passed a kept check but never reached the supervisor (the change was abandoned)."""
    procs.stop([instance["pgid"]], grace=5, what="stopping the checked web", marks=[instance["mark"]])
    procs.reap(instance["pid"])
    try:
        os.unlink(instance["fifo"])
    except OSError:
        pass


def wait_listening(pid, port, timeout, cancelled, health=None, settle=SETTLE, tick=lambda: None):
    """Up once port accepts connections (and health answers 2xx/3xx) and web still runs settle s later."""
    deadline = time.monotonic() + timeout
    listening_at = None
    while True:
        cancelled()
        tick()
        code = procs.reap(pid)
        if code is not None:
            taken = listening_at is None and bind_error(port) is not None
            return Crashed(code, [], PORT_TAKEN if taken else None)
        if listening_at is None and listening(port, pid) and (not health or healthy(port, health)):
            listening_at = time.monotonic()
        if listening_at is not None and time.monotonic() - listening_at >= settle:
            return Up(port)
        if listening_at is None and time.monotonic() > deadline:
            return TimedOut(timeout, [])
        time.sleep(0.05 if listening_at is not None or settle else 0.01)


def describe(result, health=None):
    """Why a boot check failed, in words."""
    if isinstance(result, Crashed):
        return "web exited with %d at boot" % result.exit_code
    if health:
        return "web did not answer GET %s with 2xx or 3xx within %d s" % (health, result.seconds)
    return "web did not listen on $PORT within %d s" % result.seconds


def answers(port, health=None):
    """Does a running web still answer: its health check path when it has one, else a TCP connection?"""
    return healthy(port, health) if health else port_open(port)


def answering(ports):
    """The ones of ports that accept a connection on 127.0.0.1 now: listening there with room in the accept
    queue, from one dump of the listening sockets for all of them (a connection each cost the supervisor about
    0.1 ms a port, 200 a second at 1,000 webs); a connection each where the kernel refuses that dump."""
    ports = set(ports)
    if not ports:
        return set()
    try:
        queues = procs.listen_queues(ports)
    except OSError:
        return {port for port in ports if port_open(port)}
    return {port for port in ports if port in queues and queues[port][0] <= queues[port][1]}


def port_open(port, host="127.0.0.1"):
    """Does something accept TCP connections on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def listening_table(ports):
    """{port: listening socket inodes} for ports, from one dump; None where the kernel refuses it."""
    try:
        return procs.listeners(ports)
    except OSError:
        return None


def listening(port, pgid):
    """Is it process group pgid that accepts connections on port?

    Knocking first: it costs a refused connection, where reading the socket tables costs
    milliseconds on a busy server, and the boot check asks every 10 ms.
    """
    return port_open(port) and procs.group_listens(pgid, port)
