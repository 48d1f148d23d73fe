"""tinyserv-remote: the server side. The client calls it over ssh; JSON goes back where parsed.

Public commands mirror the client's; `hook` and `supervise` are internal.
"""

import argparse
import json
import os
import sys
import time

from . import apps, control, deploy, logs, printer, releases, store
from .errors import TinyservError
from .layout import Layout, server_root
from .printer import Steps

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
        return json.loads(sys.stdin.read() or "{}")
    except ValueError as e:
        raise TinyservError("expected JSON on standard input: %s" % e) from None


def emit(value):
    print(printer.dumps(value))


def version_arg(text):
    """'v3' or '3' -> 3."""
    digits = text[1:] if text.startswith("v") else text
    if not digits.isdigit():
        raise TinyservError("%r is not a release version like v3" % text)
    return int(digits)


def cmd_apps(layout, args):
    emit([apps.info(layout, name) for name in layout.apps()])


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
    emit(apps.scale(layout, args.app, read_input()["formation"]))


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
    from . import appenv
    layout.require(args.app)
    release = releases.current(layout, args.app)
    if not release["build"]:
        raise TinyservError("%s has not been deployed yet: push it first" % args.app)
    build_dir = layout.build_dir(args.app, release["build"])
    meta = store.read_json(layout.build_meta(args.app, release["build"]))
    env = appenv.process_env(build_dir, meta, release["config"], args.app, "run.1",
                             releases.port(layout, args.app), release["version"])
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
    marker = control.shutdown_marker(layout)
    if os.path.exists(marker):
        os.unlink(marker)
    control.sync(layout)
    failed = []
    for name in layout.apps():
        release = releases.current(layout, name)
        if release and release["build"]:
            result = control.wait_for_web(layout, name, release["version"], deploy.boot_timeout(release["config"]))
            state = "up" if not result else ("timed out" if result == "timeout" else "crashed")
            print("%s: %s" % (name, state))
            if result:
                failed.append(name)
    if failed:
        raise TinyservError("%d app(s) did not come up: %s (see 'tinyserv logs')" % (len(failed), ", ".join(failed)))


def cmd_shutdown(layout, args):
    """Stop every app gracefully and the supervisor; nothing keeps running."""
    layout.ensure()
    store.write_atomic(control.shutdown_marker(layout), time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    control.stop_supervisor(layout)
    leftovers = [g for name in layout.apps() for g in apps.live_groups(layout, name)]
    if leftovers:
        import signal
        from . import procs
        for pgid in leftovers:
            procs.signal_group(pgid, signal.SIGTERM)
        apps.wait_gone(leftovers, timeout=30)
    print("tinyserv: every app stopped")


def cmd_systemd_unit(layout, args):
    import getpass
    from .layout import start_port
    print(UNIT.format(user=getpass.getuser(), root=layout.root, port=start_port(),
                      python=sys.executable, script=control.REMOTE_SCRIPT), end="")


def cmd_hook(layout, args):
    """The pre-receive hook: deploy, or reject the push with the reason."""
    steps = Steps(sys.stdout)
    try:
        deploy.Deploy(layout, args.app, steps).pre_receive(sys.stdin.read())
    except TinyservError as e:
        steps.write("")
        steps.write(" !     Push rejected: %s" % e)
        steps.write("")
        return 1
    return 0


def cmd_supervise(layout, args):
    from . import supervisor
    if args.boot:
        marker = control.shutdown_marker(layout)
        if os.path.exists(marker):
            os.unlink(marker)
    return supervisor.main(layout, wait=not args.if_none)


def cmd_version(layout, args):
    from . import __version__
    print(__version__)


def parser():
    p = argparse.ArgumentParser(prog="tinyserv-remote", description=__doc__)
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True

    def add(name, func, app=True, help=None):
        cmd = sub.add_parser(name, help=help)
        cmd.set_defaults(func=func)
        if app:
            cmd.add_argument("app")
        return cmd

    add("apps", cmd_apps, app=False, help="list apps (JSON)")
    add("apps:create", cmd_create, help="create an app")
    add("apps:destroy", cmd_destroy, help="stop and delete an app")
    add("apps:info", cmd_info, help="describe an app (JSON)")
    add("ps", cmd_ps, help="the app's processes (JSON)")
    add("ps:scale", cmd_scale, help="set instance counts ({'formation': {...}} on stdin)")
    add("ps:stop", cmd_stop, help="stop a process type").add_argument("target")
    add("ps:start", cmd_start, help="start a stopped process type").add_argument("target")
    add("ps:restart", cmd_restart, help="restart processes").add_argument("target", nargs="?")
    add("restart", cmd_restart, help="restart every process of an app")
    lg = add("logs", cmd_logs, help="show (and follow) the app's log")
    lg.add_argument("-n", "--num", type=int, default=100)
    lg.add_argument("-t", "--tail", action="store_true")
    lg.add_argument("--ps", default=None)
    add("config", cmd_config, help="config vars (JSON)")
    add("config:set", cmd_config_set, help="set config vars ({'vars': {...}} on stdin)")
    add("config:unset", cmd_config_unset, help="unset config vars ({'keys': [...]} on stdin)")
    rl = add("releases", cmd_releases, help="release history (JSON)")
    rl.add_argument("-n", "--num", type=int, default=None)
    add("releases:info", cmd_release_info, help="one release (JSON)").add_argument("version", nargs="?")
    add("rollback", cmd_rollback, help="roll back to a release").add_argument("version", nargs="?")
    run = add("run", cmd_run, help="run a one-off command in the app's environment")
    run.add_argument("command", nargs=argparse.REMAINDER)
    add("startup", cmd_startup, app=False, help="at boot: start every app")
    add("shutdown", cmd_shutdown, app=False, help="stop every app and the supervisor")
    add("systemd-unit", cmd_systemd_unit, app=False, help="print a systemd unit that runs tinyserv")
    add("hook", cmd_hook, help=argparse.SUPPRESS)
    sv = add("supervise", cmd_supervise, app=False, help="run the supervisor in the foreground")
    sv.add_argument("--boot", action="store_true", help="clear a previous shutdown first")
    sv.add_argument("--if-none", action="store_true", help="exit at once if a supervisor runs")
    add("version", cmd_version, app=False, help="print the version")
    return p


def main(argv=None):
    """Entry point of bin/tinyserv-remote."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
        if args.verb == "run" and args.command[:1] == ["--"]:
            args.command = args.command[1:]
        layout = Layout(server_root())
        return args.func(layout, args) or 0
    except TinyservError as e:
        if os.environ.get("TINYSERV_DEBUG") == "1":
            raise
        printer.error(str(e))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
