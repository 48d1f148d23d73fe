"""`tinyserv server:install --root root@HOST`, root's part: root mode set up (or upgraded) in one command,
root-owned by construction.

The code is in /opt/tinyserv/versions/<id> (root's, 0755, compiled by root; common/unpack.py put it there), and
`tinyserv-remote setup --deploy-user USER` runs as root (setup.py sends it here): make the deploy user if
missing (bash; root's authorized keys only if it has none), let the apps' users pass through its home (o+x,
never list), run the deploy user's part (setup.as_deploy_user: ~/.bashrc, the settings file, hooks, deploy
keys) as that user, stop a single-user supervisor, write the root-mode unit and (re)start it.

Root never writes into the deploy user's home itself: a process of that user does, so a symlink there
leads nowhere root could not already be led by that user. An upgrade restarts the unit (the apps restart).
"""

import os
import pwd
import subprocess
import sys
import time

from tinyserv import REMOTE_SCRIPT, __version__
from tinyserv.common.unpack import ROOT_CODE_HOME, UNIT_PATH, installed_script
from tinyserv.common.errors import TinyservError
from tinyserv.common.printer import Steps
from tinyserv.platform import kernel
from tinyserv.platform.rootsafe import check_code, open_dir
from tinyserv.state.layout import Layout

ROOT_KEYS = "/root/.ssh/authorized_keys"
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 60


def as_root(name):
    """Everything root does: the user, the deploy user's part, the unit; exit code 0."""
    steps = Steps()
    check_code(os.path.dirname(os.path.dirname(REMOTE_SCRIPT)))  # what the unit will run as root
    script = installed_script(REMOTE_SCRIPT)
    steps.step("tinyserv %s is current (%s), root's and writable by root alone" % (
        __version__, os.path.realpath(os.path.join(ROOT_CODE_HOME, "current"))))
    if not os.path.isdir("/run/systemd/system"):
        raise TinyservError("server:install --root needs systemd on the server (root mode runs as its unit)")
    steps.step("Deploy user %s" % name)
    user = ensure_user(name, steps)
    pass_through(user, steps)
    steps.detail(kernel.tune([], run))
    steps.step("As %s" % name)
    with open(ROOT_KEYS, "rb") if os.path.isfile(ROOT_KEYS) else open(os.devnull, "rb") as keys:
        code = run_as(user, [sys.executable, script, "setup", "--deploy-user", name], stdin=keys)
    if code != 0:
        raise TinyservError("the deploy user's part of the install failed (exit %d): see above" % code)
    steps.step("Root mode under systemd")
    installed = read(UNIT_PATH)
    was_root = installed is not None and "\nEnvironment=TINYSERV_DEPLOY_USER=" in installed
    if not was_root:
        stop_single_user(user, script, installed, steps)
    write_unit(unit_for(user, installed), steps)
    systemctl("enable", "tinyserv")
    systemctl("restart" if was_root else "start", "tinyserv")
    steps.detail("tinyserv.service %s: its supervisor runs as root from %s" % (
        "restarted (the apps restart with it)" if was_root else "enabled and started", script))
    steps.detail("supervisor: pid %d" % wait_for_supervisor(layout_of(user)))
    return 0


def ensure_user(name, steps):
    """The deploy user (made with bash as its shell when missing); its passwd entry."""
    try:
        user = pwd.getpwnam(name)
        steps.detail("%s exists (uid %d)" % (name, user.pw_uid))
    except KeyError:
        run(["useradd", "--create-home", "--user-group", "--shell", "/bin/bash", name])
        user = pwd.getpwnam(name)
        steps.detail("made %s (uid %d, bash, home %s)" % (name, user.pw_uid, user.pw_dir))
    if user.pw_uid == 0:
        raise TinyservError("the deploy user must not be root: name another with --user")
    return user


def pass_through(user, steps):
    """Let the apps' users pass through (never list) the deploy user's home to reach their own directories."""
    fd = open_dir(user.pw_dir)
    try:
        mode = os.fstat(fd).st_mode & 0o7777
        if not mode & 0o001:
            os.fchmod(fd, mode | 0o001)
            steps.detail("%s: others may now pass through (o+x), not list" % user.pw_dir)
    finally:
        os.close(fd)


def stop_single_user(user, script, installed, steps):
    """Before root mode starts: stop a supervisor of the deploy user's (its unit, or one started by hand)."""
    if installed is not None:
        systemctl("disable", "--now", "tinyserv", check=False)
    from tinyserv.platform import control
    layout = layout_of(user)
    if os.path.exists(layout.supervisor_sock) and control.running(layout):
        run_as(user, [sys.executable, script, "shutdown"])
        steps.detail("stopped %s's own supervisor and apps: root mode starts them again as their own users" %
                     user.pw_name)


def unit_for(user, installed):
    """The root-mode unit for user, keeping the settings (ports, front door) of the unit installed before."""
    from tinyserv.server.lifecycle import unit_text, unit_settings
    settings = unit_settings(installed)
    return unit_text(layout_of(user, settings), root=True, user=user.pw_name, environ=settings)


def layout_of(user, settings=None):
    """The deploy user's Layout (TINYSERV_ROOT from the unit's settings, else ~USER/.tinyserv)."""
    from tinyserv.platform.rootsafe import place_locks
    root = (settings or {}).get("TINYSERV_ROOT") or os.path.join(user.pw_dir, ".tinyserv")
    return place_locks(Layout(root), {"TINYSERV_DEPLOY_USER": user.pw_name})


def write_unit(text, steps):
    """Write the unit (root's, 0644) and have systemd read it."""
    from tinyserv.state.store import write_atomic
    if read(UNIT_PATH) != text:
        write_atomic(UNIT_PATH, text, 0o644)
        steps.detail("wrote %s" % UNIT_PATH)
    systemctl("daemon-reload")


def wait_for_supervisor(layout, timeout=START_TIMEOUT):
    """The root supervisor's pid once it answers on its socket."""
    from tinyserv.platform import control
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = control.running(layout)
        if pid:
            return pid
        time.sleep(0.1)
    raise TinyservError("the supervisor did not answer within %d s: journalctl -u tinyserv says why" % timeout)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def systemctl(*args, check=True):
    return run(["systemctl", *args], check=check)


def run(argv, data=None, check=True):
    """Run a program as root (data: its standard input); raise with its error."""
    result = subprocess.run(argv, input=data or "", capture_output=True, text=True,
                            env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"})
    if check and result.returncode != 0:
        raise TinyservError("%s failed: %s" % (" ".join(argv), " ".join((result.stderr or result.stdout).split())))
    return result


def run_as(user, argv, stdin=None):
    """Run argv as user for good (its groups, its home, a plain environment), output on ours; its exit code."""
    import grp
    groups = sorted({g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid})
    env = {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name, "SHELL": user.pw_shell,
           "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    sys.stdout.flush()
    return subprocess.run(argv, user=user.pw_uid, group=user.pw_gid, extra_groups=groups, env=env, cwd=user.pw_dir,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL).returncode
