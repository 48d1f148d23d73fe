"""The pre-receive hook: what a push may do, and a deploy that the push's client cannot interrupt.

git runs the hook in the pushing client's process group (locally) or ssh session, so Ctrl-C,
a dropped connection or a killed client can end it at any moment. The hook therefore only
checks the pushed refs and relays output: the deploy runs in a process with a session of
its own (the deployer). The deployer stops a build whose client went away; once it has
started switching it finishes, tells the hook its verdict (the hook's exit code, which
git acts on) and goes on alone until git has moved the ref or not (deploy.py).
"""

import os
import select
import signal
import sys
import traceback

from tinyserv.deploy import push as deploy
from tinyserv.state import logs, releases
from tinyserv.platform import procs
from tinyserv.common.errors import TinyservError
from tinyserv.common.printer import Steps


def main(layout, app):
    """`tinyserv-remote hook APP`, which the app's pre-receive hook runs: its exit code is git's verdict."""
    return run(layout, app, sys.stdin.read(), sys.stdout)


def run(layout, app, text, out):
    """The hook's body: deploy what was pushed, or refuse it; returns the hook's exit code."""
    try:
        push = deploy.plan(deploy.parse_updates(text), *deploy.deployed(releases.history(layout, app)))
        if push is not None:
            deploy.check_whole_history(layout.repo(app), push)
    except TinyservError as e:
        reject(Steps(out), e)
        return 1
    if push is None:
        return 0
    receiver = os.getppid()  # git-receive-pack: the hook's parent, which moves the ref after we exit
    receiver = (receiver, procs.starttime(receiver))

    def body(session):
        steps = Steps(session)
        deploy.Deploy(layout, app, steps, session.cancelled, session.settle).run(push, receiver)
    return detached(body, out, lambda e: logs.append(layout.log_file(app), "tinyserv", "Push: %s" % e))


def reject(steps, error):
    """The push's last words when it is refused."""
    steps.write("")
    steps.write(" !     Push rejected: %s" % error)
    steps.write("")


class Session:
    """The deployer's side of the hook: where its output goes, and whether anyone still listens."""

    def __init__(self, fd, hook):
        self.fd = fd
        self.hook = hook
        self.gone = False
        self.settled = False

    def write(self, text):
        """Output for the push; a hook that is gone makes it go nowhere (and the push abandoned)."""
        data = text.encode("utf-8", "replace")
        while data and not self.gone:
            try:
                data = data[os.write(self.fd, data):]
            except OSError:
                self.gone = True

    def flush(self):
        pass

    def cancelled(self):
        """Raise if the push's client went away: the hook ended, or cannot pass output on."""
        if self.gone or os.getppid() != self.hook:
            raise TinyservError("the push was abandoned: its client went away")

    def settle(self, code):
        """Give the hook its verdict now (it exits with code) and go on in a process of our own, silently."""
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.close(self.fd)
        self.gone = self.settled = True
        if os.fork() != 0:
            os._exit(code)


def detached(body, out, note):
    """Run body(session) in a child with a session of its own; relay its output to out; return its verdict.

    note(error) records what went wrong after the verdict, when nobody is listening.
    """
    out.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    hook = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _deployer(body, Session(w, hook), note)
    os.close(w)
    return _relay(r, pid, out)


def _deployer(body, session, note):
    """The child: immune to the client's signals, never returns into the hook's code."""
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(session.fd, 1)  # never the hook's own stdout: git push would wait for whoever holds it
        os.dup2(session.fd, 2)
        body(session)
        code = 0
    except TinyservError as e:
        if session.settled:
            note(e)
        else:
            for line in e.details:
                Steps(session).detail(line)
            reject(Steps(session), e)
    except BaseException as e:  # noqa: BLE001 - the child must end here, whatever happened
        if os.environ.get("TINYSERV_DEBUG") == "1":
            session.write(traceback.format_exc())
        if session.settled:
            note("unexpected error: %r" % e)
        else:
            reject(Steps(session), "unexpected error: %r (TINYSERV_DEBUG=1 shows where)" % e)
    finally:
        os._exit(code)


def _relay(r, pid, out):
    """Copy the deployer's output to ours until it exits; return its exit code as the hook's.

    Gives up (exit 1) as soon as the push's client is gone: git-receive-pack ended, or lost
    its own parent (git push locally, sshd over ssh). Over ssh git-receive-pack outlives a
    dropped connection but no longer reads what we print, so our writes must never block.
    """
    client = Client()
    os.set_blocking(r, False)
    os.set_blocking(out.fileno(), False)
    exited = procs.exit_fd(pid)
    eof = False
    while True:
        if not eof:
            readable, _, _ = select.select([r], [], [], 0.2)
            eof = readable and not _copy(r, out, client)
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            while _copy(r, out, client):
                pass
            if exited is not None:
                os.close(exited)
            return _verdict(status, out)
        if client.gone():
            os._exit(1)  # the deployer notices we are gone; nobody would act on a verdict
        if eof:  # it settled (or ends): its exit wakes us at once, the push's last line is not 0.1 s late
            select.select([] if exited is None else [exited], [], [], 0.1)


class Client:
    """Is the push's client still there? Its git-receive-pack (our parent) and that one's parent."""

    def __init__(self):
        self.receiver = os.getppid()
        self.parent = procs.parent(self.receiver)

    def gone(self):
        return os.getppid() != self.receiver or procs.parent(self.receiver) != self.parent


def _copy(r, out, client):
    """Pass on one chunk of output; False at end of output or when nothing is waiting."""
    try:
        data = os.read(r, 65536)
    except BlockingIOError:
        return False
    fd, got = out.fileno(), bool(data)
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            select.select([], [fd], [], 0.2)
        except OSError:
            os._exit(1)  # our reader is gone: so is the push's client; the deployer will notice
        if data and client.gone():
            os._exit(1)
    return got


def _verdict(status, out):
    """The hook's exit code from the deployer's wait status."""
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    reject(Steps(out), "the deploy ended unexpectedly (signal %d); the running release is kept" % os.WTERMSIG(status))
    return 1
