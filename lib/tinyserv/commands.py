"""What each tinyserv-remote command does; remote.py parses the command line and calls these.

Data goes back as JSON where the client parses it; config values arrive as JSON on stdin.
"""

import json
import os
import re
import sys
import time

from . import apps, boot, control, logs, printer, procs, releases, settings, store
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


def read_input():
    """The JSON document a client sends on stdin (config values travel this way)."""
    try:
        data = json.loads(sys.stdin.read() or "{}")
    except ValueError as e:
        raise TinyservError("expected JSON on standard input: %s" % e) from None
    if not isinstance(data, dict):
        raise TinyservError("expected a JSON object on standard input")
    return data


def emit(value):
    print(printer.dumps(value))


def version_arg(text):
    """'v3' or '3' -> 3."""
    digits = text[1:] if text.startswith("v") else text
    if not re.match(r"[0-9]+\Z", digits):
        raise TinyservError("%r is not a release version like v3" % text)
    return int(digits)


def cmd_apps(layout, args):
    emit(apps.listing(layout))


def cmd_create(layout, args):
    emit(apps.create(layout, args.app, by=read_input().get("by")))


def cmd_destroy(layout, args):
    apps.destroy(layout, args.app)
    emit({"destroyed": args.app})


def cmd_info(layout, args):
    emit(apps.info(layout, args.app))


def cmd_ps(layout, args):
    layout.require(args.app)
    control.ensure_supervisor(layout)
    emit(apps.processes(layout, args.app))


def cmd_scale(layout, args):
    emit(apps.scale(layout, args.app, read_input().get("formation")))


def cmd_stop(layout, args):
    apps.set_stopped(layout, args.app, args.target, True)
    emit(apps.processes(layout, args.app))


def cmd_start(layout, args):
    apps.set_stopped(layout, args.app, args.target, False)
    emit(apps.processes(layout, args.app))


def cmd_restart(layout, args):
    apps.restart(layout, args.app, getattr(args, "target", None))
    emit({"restarted": getattr(args, "target", None) or "all"})


def cmd_logs(layout, args):
    layout.require(args.app)
    if args.num < 0:
        raise TinyservError("-n must be 0 or more, not %d" % args.num)
    path = layout.log_file(args.app)
    sys.stdout.writelines(logs.tail(path, args.num, args.ps))
    sys.stdout.flush()
    if args.tail:
        logs.follow(path, args.ps, sys.stdout, logs.stdin_closed)


def cmd_config(layout, args):
    layout.require(args.app)
    emit(releases.current_config(layout, args.app))


def cmd_config_set(layout, args):
    data = read_input()
    emit(apps.change_config(layout, args.app, set_vars=data.get("vars", {}), by=data.get("by")))


def cmd_config_unset(layout, args):
    data = read_input()
    emit(apps.change_config(layout, args.app, unset=data.get("keys", []), by=data.get("by")))


def cmd_releases(layout, args):
    emit(apps.history(layout, args.app, args.num))


def cmd_release_info(layout, args):
    layout.require(args.app)
    release = (releases.find(layout, args.app, version_arg(args.version)) if args.version
               else releases.current(layout, args.app))
    emit(releases.summary(release))


def cmd_rollback(layout, args):
    version = version_arg(args.version) if args.version else None
    emit(apps.rollback(layout, args.app, version, by=read_input().get("by")))


def cmd_run(layout, args):
    """Replace this process with the command, in the current build, with the app's config."""
    from . import appenv, appstate
    layout.require(args.app)
    release = releases.current(layout, args.app)
    if not release["build"]:
        raise TinyservError("%s has not been deployed yet: push it first" % args.app)
    build_dir = layout.build_dir(args.app, release["build"])
    meta = appstate.build_meta(layout, args.app, release["build"])
    env = appenv.process_env(build_dir, meta, release["config"], args.app, "run.1",
                             releases.port(layout, args.app), release["version"],
                             layout.mark(args.app, "run.%d" % os.getpid()))
    argv = ["/bin/sh", "-c", args.command[0]] if len(args.command) == 1 else args.command
    if not argv:
        raise TinyservError("run needs a command, e.g. 'tinyserv run bash'")
    os.chdir(build_dir)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        raise TinyservError("cannot run %s: %s" % (argv[0], e.strerror)) from None


def cmd_startup(layout, args):
    """At boot: start the supervisor, bring every app to its formation, report."""
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


def cmd_shutdown(layout, args):
    """Stop every app gracefully and the supervisor; nothing keeps running."""
    layout.ensure()
    store.write_atomic(layout.shutdown_marker, time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    control.stop_supervisor(layout)
    # Processes no supervisor was watching (it had been killed), and daemons that left their group, too.
    names = layout.apps()
    procs.stop([g for name in names for g in apps.live_groups(layout, name)], grace=30, what="shutdown",
               marks=[layout.app_marks(name) for name in names])
    print("tinyserv: every app stopped")


def cmd_systemd_unit(layout, args):
    import getpass
    from .layout import start_port
    print(UNIT.format(user=getpass.getuser(), root=layout.root, port=start_port(),
                      python=sys.executable, script=control.REMOTE_SCRIPT), end="")


def cmd_hook(layout, args):
    """The pre-receive hook: deploy, or reject the push with the reason."""
    from . import hook
    return hook.run(layout, args.app, sys.stdin.read(), sys.stdout)
