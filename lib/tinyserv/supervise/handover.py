"""An upgrade's supervisor handover: this version's supervisor takes over from a running older one, and no
app is stopped or restarted.

It reuses the standby mechanism (lifecycle.stand_by): a supervisor that exits on SIGTERM leaves every
instance running, and the standby waiting on its lock adopts them at once. So the handover replaces the
waiting standby with one of this version, then asks the running supervisor to exit:

  1. the old standby (whoever holds run/standby.lock) is stopped, and a standby of this version takes
     the lock; the old supervisor sees a standby waiting and starts no other;
  2. SIGTERM to the old supervisor: it closes its socket and exits, leaving the apps alone;
  3. the new standby takes the supervisor lock, adopts every instance (pids, pipes) and answers.

The apps keep serving throughout: nothing signals them, and their output waits in their pipes (1 MiB)
for the few milliseconds between the two supervisors.
"""

import os
import signal
import subprocess
import sys
import time

from tinyserv.platform import control
from tinyserv.platform import procs
from tinyserv.platform.standby import lock_holders
from tinyserv.common.errors import TinyservError

ATTEMPTS = 5  # tries at putting our standby in place (the old supervisor may start one of its own meanwhile)


def cmdline(pid):
    """The words pid was started with ([] when it is gone)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def is_standby(pid):
    """Is pid a waiting `tinyserv-remote supervise --standby`?"""
    words = cmdline(pid)
    return "supervise" in words and "--standby" in words and any(w.endswith("tinyserv-remote") for w in words)


def code_of(pid):
    """The tinyserv-remote script pid runs (its real path), or None."""
    scripts = [w for w in cmdline(pid) if w.endswith("tinyserv-remote")]
    return os.path.realpath(scripts[0]) if scripts else None


def start_standby(layout):
    """A standby supervisor of this version, detached (output to the supervisor's log, as control does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_", procs.MARK))}
    with open(layout.supervisor_log, "ab") as log:
        return subprocess.Popen([sys.executable, "-S", control.REMOTE_SCRIPT, "supervise", "--standby"], cwd=layout.root,
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)


def replace_standby(layout, timeout=10):
    """Make a standby of this version the one waiting; return its pid."""
    for _ in range(ATTEMPTS):
        for pid in lock_holders(layout.standby_lock):
            if is_standby(pid):
                os.kill(pid, signal.SIGTERM)  # it only waits on a lock: nothing of an app's is in it
        wait_until(lambda: not lock_holders(layout.standby_lock), 5)
        proc = start_standby(layout)
        if wait_until(lambda: proc.pid in lock_holders(layout.standby_lock) or proc.poll() is not None, timeout):
            if proc.poll() is None:
                return proc.pid
    raise TinyservError("could not start a standby supervisor of this version (see %s)" % layout.supervisor_log)


def wait_until(predicate, timeout):
    """Poll predicate every 20 ms for up to timeout seconds; its last answer."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def handover(layout, timeout=30):
    """Make this version's supervisor the running one without stopping an app; say what happened."""
    old = control.running(layout) if os.path.isdir(layout.run_dir) else None
    if old is None:
        if layout.apps() and not os.path.exists(layout.shutdown_marker):
            return "started (pid %d)" % control.ensure_supervisor(layout)
        return "not running (it starts with the first app)"
    if code_of(old) == os.path.realpath(control.REMOTE_SCRIPT):
        return "pid %d runs this version already" % old
    from tinyserv.platform.privileged import deploy_user
    if deploy_user(layout) is not None and os.geteuid() != 0:  # root mode: the deploy user cannot replace it
        return ("pid %d runs as root (root mode) and keeps the old version: 'sudo systemctl restart tinyserv' "
                "moves it to this one (the apps restart)" % old)
    new = replace_standby(layout)
    os.kill(old, signal.SIGTERM)  # a supervisor's SIGTERM: close the socket and exit, leaving the apps running
    if not wait_until(lambda: control.running(layout) == new, timeout):
        raise TinyservError("the new supervisor (pid %d) did not take over from pid %d within %d s (see %s)" % (
            new, old, timeout, layout.supervisor_log))
    return "handed over from pid %d to pid %d; %d app(s) kept running" % (old, new, len(layout.apps()))
