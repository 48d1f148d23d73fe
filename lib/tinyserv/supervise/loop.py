"""The supervisor's control socket and event loop, and `tinyserv-remote supervise` that runs them.

The loop waits for an instance's output, a request on the control socket or a signal, until the
next tick is due. A request that runs an app's code (root mode) is answered in a forked helper
(rootmode.serve), so a long build never holds the loop up. A standby supervisor is kept waiting
to take over at once when this one dies.
"""

import fcntl
import json
import os
import selectors
import signal
import socket
import sys
import time

from tinyserv.platform import procs, rootsafe, users
from tinyserv.state import store
from tinyserv.common.errors import TinyservError
from tinyserv.supervise import rootmode
from tinyserv.supervise.stopping import EXIT
from tinyserv.supervise.supervisor import POLL, Supervisor

from tinyserv import REMOTE_SCRIPT  # noqa: E402

STANDBY_CHECK = 3  # seconds between checks that a standby supervisor waits
RELOAD_POLL = 0.01  # seconds between looks at nginx while it takes a new config (cheap: its master's children)


LISTENER, WAKE, ROUTER_LOG = "listener", "wake", "router"  # selector tags of the server's own descriptors


class Server:
    """The supervisor's control socket and event loop."""

    def __init__(self, supervisor, sock_path, layout=None):
        self.sup = supervisor
        self.sock_path = sock_path
        self.layout = layout  # with a layout, keep a standby supervisor waiting
        self.listener = None
        self.next_tick = 0
        self.next_check = 0
        self.standby = None  # pid of the standby we started, until we reap it
        self.helpers = set()  # pids of the processes answering privileged requests (rootmode.serve)
        self.peer_uid = rootmode.peer_uid  # who is at the other end of a connection (tests pass a fake)
        self.router_log = None  # the router's log socket, once watched

    def handle(self, message):
        """Answer one control request."""
        cmd = message.get("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd == "sync":
            self.sup.sync(message.get("app"), message.get("candidate"))
        elif cmd == "restart":
            self.sup.restart(message["app"], message.get("target"))
        elif cmd == "shutdown":
            self.sup.shutdown()
        else:
            return {"ok": False, "error": "unknown request %r" % cmd}
        self.sup.save_dirty()
        problem = self.sup.broken.get(message.get("app")) if message.get("app") else None
        if problem:
            return {"ok": False, "error": problem, "pid": os.getpid()}
        return {"ok": True, "pid": os.getpid()}

    def serve_one(self):
        """Accept one control connection and answer its request; one that runs an app's code gets a process.
        True when the request may have changed what runs (a ping, the standby's every 3 s, changes nothing)."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return False  # the client gave up before we got to it
        fds, changing = [], False
        with conn:
            conn.settimeout(2)
            try:
                text, fds = rootmode.receive(conn)
                refused = rootmode.refusal(self.peer_uid(conn))
                if refused:
                    raise TinyservError(refused)
                message = json.loads(text or "{}")
                changing = message.get("cmd") != "ping"
                if message.get("cmd") in rootmode.REQUESTS:
                    self.fork_helper(conn, message, fds)
                    return True
                reply = self.handle(message)
            except (OSError, ValueError, KeyError, TypeError, AttributeError, TinyservError) as e:
                reply = {"ok": False, "error": str(e)}
            finally:
                for fd in fds:
                    os.close(fd)
            try:
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass
        return changing

    def fork_helper(self, conn, message, fds):
        """Answer a request that runs an app's code (a build step, run, a boot check) in a process of its own."""
        pid = os.fork()
        if pid:
            self.helpers.add(pid)
            return
        try:  # the child: never back into the loop, keep nothing of the supervisor's open (its lock least of all)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            keep = sorted({conn.fileno(), 0, 1, 2, *fds})
            for low, high in zip(keep, keep[1:] + [65536]):
                os.closerange(low + 1, high)
            conn.settimeout(None)
            rootmode.serve(self.sup.layout, conn, message, fds)
        except BaseException:  # noqa: BLE001 - a helper reports in the supervisor's log, and ends
            import traceback
            traceback.print_exc()
        finally:
            os._exit(0)

    def reap_helpers(self):
        """Collect the helpers that have answered."""
        for pid in list(self.helpers):
            if procs.reap(pid) is not None:
                self.helpers.discard(pid)

    def run(self):
        """Loop until a shutdown request has stopped everything (or SIGTERM)."""
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.listen()
        self.sup.selector.register(wake_r, selectors.EVENT_READ, WAKE)
        self.sup.adopt()
        self.sup.sync()
        self.sup.save_dirty()
        while not stop and not self.sup.idle():
            try:
                self.once()
            except Exception:  # noqa: BLE001 - last resort: a bug must not end every app's supervision
                import traceback  # only here: `tinyserv-remote ps` imports this module too
                traceback.print_exc()
                sys.stderr.flush()
                time.sleep(POLL)
        self.close()

    def once(self):
        """Wait for output, a request or a signal (until the next tick is due), handle them, tick when due."""
        now = self.sup.sys.clock()
        due = min(self.next_tick, self.next_check) if self.layout else self.next_tick
        if self.sup.router.pending:
            due = min(due, now + RELOAD_POLL)
        events = self.sup.selector.select(max(0.0, due - now))
        urgent = False
        # Output first: a request handled below may close pipes whose numbers are in events.
        for key, _ in events:
            if key.data is None and key.fd in self.sup.streams and not self.sup.read_output(key.fd):
                self.sup.close_output(key.fd)
                urgent = True  # every process of an instance is gone
        for key, _ in events:
            if key.data == LISTENER:
                urgent = self.serve_one() or urgent
            elif key.data == WAKE:
                _drain_pipe(key.fd)
                self.reap_helpers()
                self.sup.child_exited()
                urgent = True  # SIGCHLD: one of our children exited
            elif key.data == ROUTER_LOG:
                self.sup.router_log()
            elif isinstance(key.data, tuple) and key.data[0] == EXIT:
                self.sup.exit_seen(key.fd)
                urgent = True  # an instance's process ended
        now = self.sup.sys.clock()
        self.sup.resume_due(now)
        if urgent or now >= self.next_tick:
            self.sup.tick(events=self.sup.take_events())
            self.next_tick = self.sup.sys.clock() + self.sup.poll_interval()
        elif self.sup.router.pending:
            self.sup.save_dirty()  # only the router's part: a deploy waits for nginx to confirm its reload
        if self.layout and now >= self.next_check:
            self.next_check = now + STANDBY_CHECK
            self.keep_standby()
        self.watch_router_log()

    def watch_router_log(self):
        """Read the router's log socket in the loop (it is opened, or closed, by a full sync)."""
        sock = self.sup.router.socket
        if sock is not self.router_log:
            if self.router_log is not None:
                try:
                    self.sup.selector.unregister(self.router_log)
                except (KeyError, ValueError):
                    pass
            if sock is not None:
                self.sup.selector.register(sock, selectors.EVENT_READ, ROUTER_LOG)
            self.router_log = sock

    def keep_standby(self):
        """Make sure a standby supervisor waits to take over if this one dies (cheap when one does)."""
        if self.standby is not None and procs.reap(self.standby) is not None:
            self.standby = None
        if self.sup.shutting_down or self.standby_waits():
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_", procs.MARK))}
        try:
            out = os.open(self.layout.supervisor_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                # Never our caller's output: a git hook's pipe held by the standby would keep `git push` waiting.
                with users.as_root():  # in root mode, a standby that can take over as root
                    self.standby = procs.spawn([sys.executable, "-S", REMOTE_SCRIPT, "supervise", "--standby"],
                                               self.layout.root, env, out, keep_caps=True)
            finally:
                os.close(out)
        except (OSError, ValueError) as e:
            print("tinyserv supervisor: cannot start a standby: %s" % e, file=sys.stderr, flush=True)

    def standby_waits(self):
        """Does a standby supervisor hold the standby lock (root's, in root mode)?"""
        with users.as_root():
            return store.lock_held(self.layout.standby_lock)

    def listen(self):
        """Bind the control socket (0600) and watch it in the loop."""
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o600)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.sup.selector.register(self.listener, selectors.EVENT_READ, LISTENER)

    def close(self):
        """Stop listening and remove the socket (the router lines nginx sent before it stopped are written first)."""
        self.sup.router_log(self.sup.router.close_socket())  # the lines nginx sent before it stopped
        self.sup.selector.unregister(self.listener)
        self.listener.close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass


def _drain_pipe(fd):
    """Empty the signal wakeup pipe."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def main(layout, wait=True, lock=None):
    """`tinyserv-remote supervise`: run the supervisor; one per root holds the lock.

    With wait (systemd's instance), stand by until the running one exits, then take
    over its processes; without, leave at once if one runs. A standby passes in the
    lock it already holds.
    """
    layout.ensure()
    if lock is None:
        with users.as_root():  # root mode: the locks are root's (/run/tinyserv), the rest the deploy user's
            lock = rootsafe.open_lock(layout.supervisor_lock)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return 0
        if os.path.exists(layout.shutdown_marker) and wait:
            return 0  # tinyserv was shut down while we waited: the last supervisor went away on purpose
    procs.raise_fd_limit()  # thousands of instances mean thousands of pipes
    with users.as_root():
        store.write_atomic(layout.supervisor_pid, "%d\n" % os.getpid(), 0o644)
    server = Server(Supervisor(layout), layout.supervisor_sock, layout)
    server.run()
    with users.as_root():
        store.remove(layout.supervisor_pid)
    return 0
