"""tinyserv on the server itself: at boot, at shutdown, under systemd, and its version.

These are tinyserv-remote's own commands (the client has no equivalent): `startup` and
`shutdown` are the original README's boot and shutdown hooks.
"""

import os
import sys
import time

from tinyserv.common.errors import TinyservError

# Commands import what they use when they run: `supervise --standby` waits for hours and should weigh little.

UNIT = """[Unit]
Description=tinyserv: keeps the apps of {user} running
After=network.target postgresql.service

[Service]
Type=simple
{mode}Environment=TINYSERV_ROOT={root}
Environment=TINYSERV_START_PORT={port}
{front_door}{capability}ExecStart={python} {script} supervise --boot
ExecStop={python} {script} shutdown
Restart=always
RestartSec=1
KillMode=process
TimeoutStopSec=120

[Install]
WantedBy=multi-user.target
"""


def startup(layout):
    """At boot: start the supervisor, bring every app to its formation, report each app's state."""
    from tinyserv.platform import boot
    from tinyserv.platform import control
    from tinyserv.supervise import waiting
    from tinyserv.state import releases, store
    from tinyserv.common import settings
    layout.ensure()
    store.remove(layout.shutdown_marker)
    control.sync(layout)
    failed = []
    for name in layout.apps():
        try:
            release = releases.current(layout, name)
            if not release or not release["build"]:
                continue
            result = waiting.wait_for_web(layout, name, release["version"], settings.boot_timeout(release["config"]))
            state = {boot.Up: "up", boot.Crashed: "crashed", boot.TimedOut: "timed out"}[type(result)]
        except TinyservError as e:  # one damaged app does not keep the others from being reported
            state = "broken (%s)" % e
        print("%s: %s" % (name, state))
        if state != "up":
            failed.append(name)
    if failed:
        raise TinyservError("%d app(s) did not come up: %s (see 'tinyserv logs')" % (len(failed), ", ".join(failed)))


def shutdown(layout):
    """Stop every app gracefully and the supervisor; nothing keeps running."""
    from tinyserv.platform import control
    from tinyserv.platform import procs
    from tinyserv.state import store
    from tinyserv.platform import privileged
    # Root mode (systemd's ExecStop, as root): from here on as the deploy user, root only to signal the apps.
    root_mode = os.getuid() == 0 and bool(os.environ.get(privileged.DEPLOY_USER)) and privileged.enter(layout)
    layout.ensure()
    store.write_atomic(layout.shutdown_marker, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    control.stop_supervisor(layout)
    # Processes no supervisor was watching (it had been killed), and daemons that left their group, too. In
    # root mode only by their marks: the groups in state.json are the deploy user's word, not to be trusted.
    names = layout.apps()
    groups = [] if root_mode else [g for name in names for g in live_groups(layout, name)]
    procs.stop(groups, grace=30, what="shutdown", marks=[layout.app_marks(name) for name in names])
    print("tinyserv: every app stopped")


def live_groups(layout, name):
    """Process groups of the app's instances whose main process still runs (none if its state is unreadable)."""
    from tinyserv.supervise import waiting
    from tinyserv.platform import procs
    try:
        saved = waiting.instances(layout, name)
    except TinyservError:
        return []  # its processes are still found by their marks
    return [i["pgid"] for i in saved if procs.alive(i["pid"], i["starttime"])]


ROOT_MODE = """# Root mode: the supervisor runs as root and works as {user}, whose state this stays;
# each app runs as a system user of its own, made on apps:create (see docs/installation.md: apps isolated from each other).
User=root
Environment=TINYSERV_DEPLOY_USER={user}
"""
SINGLE_USER = "User={user}\n"
CAPABILITY = """# nginx binds ports 80 and 443 as {user}; tinyserv passes this on to nginx only, never to the apps.
AmbientCapabilities=CAP_NET_BIND_SERVICE
"""


def systemd_unit(layout, root=False):
    """Print a systemd unit that runs the supervisor for this user and these settings (root: in root mode)."""
    print(unit_text(layout, root), end="")


def unit_text(layout, root=False, user=None, environ=os.environ):
    """The systemd unit for this user (or user, as root) and these settings; it runs the current version of an
    installed tinyserv (…/current), so an upgrade needs no new unit. In root mode only root-owned code will do."""
    import getpass
    from tinyserv.platform import control
    from tinyserv.state.layout import start_port
    from tinyserv.common.unpack import installed_script
    front_door = "".join("Environment=%s=%s\n" % (name, environ[name]) for name in FRONT_DOOR_SETTINGS
                         if environ.get(name))
    if user is None:
        user = getpass.getuser()
        if root and os.geteuid() == 0:
            raise TinyservError("run 'tinyserv-remote systemd-unit --root' as the deploy user: the unit names "
                                "the user whose apps and state it keeps")
    if root:
        from tinyserv.platform.rootsafe import check_code
        from tinyserv import CODE_ROOT
        check_code(CODE_ROOT)
    return UNIT.format(user=user, root=layout.root, port=start_port(environ), front_door=front_door,
                       python=sys.executable, script=installed_script(control.REMOTE_SCRIPT),
                       mode=(ROOT_MODE if root else SINGLE_USER).format(user=user),
                       capability="" if root else CAPABILITY.format(user=user))


def unit_settings(text):
    """The Environment= settings of an installed unit's text, to carry over into a new unit."""
    found = {}
    for line in (text or "").splitlines():
        name, _, value = line.partition("=")[2].partition("=") if line.startswith("Environment=") else ("", "", "")
        if name:
            found[name] = value
    return found


FRONT_DOOR_SETTINGS = ("TINYSERV_NGINX", "TINYSERV_HTTP_PORT", "TINYSERV_HTTPS_PORT", "TINYSERV_DOMAIN",
                       "TINYSERV_ACME_DIRECTORY", "TINYSERV_ACME_EMAIL")


def supervise(layout, boot=False, if_none=False, standby=False):
    """Run the supervisor in the foreground (systemd's ExecStart, started on demand, or as the standby)."""
    from tinyserv.platform import privileged
    privileged.enter(layout)  # root mode (started as root, TINYSERV_DEPLOY_USER set): from here on, as that user
    if boot:
        from tinyserv.state.store import remove
        remove(layout.shutdown_marker)
    lock = None
    if standby:
        lock = stand_by(layout)
        if lock is None:
            return 0
    from tinyserv.supervise import loop  # only now: a waiting standby stays small
    return loop.main(layout, wait=not if_none, lock=lock)


def stand_by(layout):
    """Wait until the active supervisor dies (or, silent too long, is killed); return its lock, now ours, or
    None when we should not take over.

    One standby at a time holds run/standby.lock. None also when tinyserv was shut
    down (run/shut-down exists): then the supervisor went away on purpose.
    """
    import fcntl
    from tinyserv.platform.users import as_root
    from tinyserv.platform.rootsafe import open_lock
    try:
        with as_root():  # root mode: the locks are root's (/run/tinyserv)
            mine = open_lock(layout.standby_lock)
        try:
            fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another standby waits already
        with as_root():
            lock = open_lock(layout.supervisor_lock)
        wait_for_lock(layout, lock)
    except OSError as e:
        raise TinyservError("cannot wait as the standby supervisor in %s: %s" % (layout.run_dir, e.strerror)) from None
    if os.path.exists(layout.shutdown_marker):
        return None  # both locks go with this process, which exits now
    os.close(mine)  # the next standby may wait now
    return lock


def wait_for_lock(layout, lock):
    """Block until the supervisor's lock is ours: it frees when the supervisor dies, and one that stops
    answering is killed meanwhile (platform/standby.py watches it from a thread of its own)."""
    import fcntl
    import threading
    from tinyserv.platform import standby
    done = threading.Event()
    watcher = threading.Thread(target=standby.watch, daemon=True, args=(
        layout.supervisor_sock, layout.supervisor_lock, done,
        lambda text: print("tinyserv standby: %s" % text, file=sys.stderr, flush=True)))
    watcher.start()
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
    finally:
        done.set()


def version(layout):
    """This server's tinyserv: its version and where its code is."""
    from tinyserv import CODE_ROOT, __version__
    from tinyserv.platform.privileged import deploy_user
    return {"version": __version__, "code": CODE_ROOT, "root_mode": deploy_user(layout) is not None}
