"""tinyserv on the server itself: at boot, at shutdown, under systemd, and its version.

These are tinyserv-remote's own commands (the client has no equivalent): `startup` and
`shutdown` are the original README's boot and shutdown hooks.
"""

import sys
import time

from . import control, procs, releases, settings, store
from .errors import TinyservError

UNIT = """[Unit]
Description=tinyserv: keeps the apps of {user} running
After=network.target

[Service]
Type=simple
User={user}
Environment=TINYSERV_ROOT={root}
Environment=TINYSERV_START_PORT={port}
ExecStart={python} {script} supervise --boot
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
    from . import boot
    layout.ensure()
    store.remove(layout.shutdown_marker)
    control.sync(layout)
    failed = []
    for name in layout.apps():
        release = releases.current(layout, name)
        if release and release["build"]:
            result = control.wait_for_web(layout, name, release["version"], settings.boot_timeout(release["config"]))
            state = {boot.Up: "up", boot.Crashed: "crashed", boot.TimedOut: "timed out"}[type(result)]
            print("%s: %s" % (name, state))
            if state != "up":
                failed.append(name)
    if failed:
        raise TinyservError("%d app(s) did not come up: %s (see 'tinyserv logs')" % (len(failed), ", ".join(failed)))


def shutdown(layout):
    """Stop every app gracefully and the supervisor; nothing keeps running."""
    from . import apps
    layout.ensure()
    store.write_atomic(layout.shutdown_marker, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    control.stop_supervisor(layout)
    # Processes no supervisor was watching (it had been killed), and daemons that left their group, too.
    names = layout.apps()
    procs.stop([g for name in names for g in apps.live_groups(layout, name)], grace=30, what="shutdown",
               marks=[layout.app_marks(name) for name in names])
    print("tinyserv: every app stopped")


def systemd_unit(layout):
    """Print a systemd unit that runs the supervisor for this user and these settings."""
    import getpass
    from .layout import start_port
    print(UNIT.format(user=getpass.getuser(), root=layout.root, port=start_port(),
                      python=sys.executable, script=control.REMOTE_SCRIPT), end="")


def supervise(layout, boot=False, if_none=False):
    """Run the supervisor in the foreground (systemd's ExecStart, or started on demand)."""
    from . import supervisor
    if boot:
        store.remove(layout.shutdown_marker)
    return supervisor.main(layout, wait=not if_none)


def version(layout):
    from . import __version__
    print(__version__)
