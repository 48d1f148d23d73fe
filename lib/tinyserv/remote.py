"""tinyserv-remote: the server side. The client calls it over ssh; JSON goes back where parsed.

Public commands mirror the client's; `hook` and `supervise` are internal. Command
bodies live in commands.py and are imported only when needed, so the long-lived
supervisor process does not carry them.
"""

import argparse
import sys

from .errors import ArgumentParser, guarded, parse
from .layout import Layout, server_root


def cmd_supervise(layout, args):
    """Run the supervisor in the foreground (systemd's ExecStart, started on demand, or as the standby)."""
    if args.boot:
        from .store import remove
        remove(layout.shutdown_marker)
    lock = None
    if args.standby:
        lock = stand_by(layout)
        if lock is None:
            return 0
    from . import supervisor  # only now: a waiting standby stays small
    return supervisor.main(layout, wait=not args.if_none, lock=lock)


def stand_by(layout):
    """Wait until the active supervisor dies; return its lock, now ours, or None when we should not take over.

    One standby at a time holds run/standby.lock. None also when tinyserv was shut
    down (run/shut-down exists): then the supervisor went away on purpose.
    """
    import fcntl
    import os
    from .errors import TinyservError
    try:
        # supervisor.standby_lock(layout), not imported: the supervisor's modules are what a standby saves.
        mine = os.open(os.path.join(layout.run_dir, "standby.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(mine, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another standby waits already
        lock = os.open(layout.supervisor_lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
    except OSError as e:
        raise TinyservError("cannot wait as the standby supervisor in %s: %s" % (layout.run_dir, e.strerror)) from None
    if os.path.exists(layout.shutdown_marker):
        return None  # both locks go with this process, which exits now
    os.close(mine)  # the next standby may wait now
    return lock


def cmd_version(layout, args):
    from . import __version__
    print(__version__)


def parser():
    p = ArgumentParser(prog="tinyserv-remote", description=__doc__)
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True

    def add(name, func, app=True, help=None):
        cmd = sub.add_parser(name, help=help)
        cmd.set_defaults(func=func)
        if app:
            cmd.add_argument("app")
        return cmd

    add("apps", "apps", app=False, help="list apps (JSON)")
    add("apps:create", "create", help="create an app")
    add("apps:destroy", "destroy", help="stop and delete an app")
    add("apps:info", "info", help="describe an app (JSON)")
    add("ps", "ps", help="the app's processes (JSON)")
    add("ps:scale", "scale", help="set instance counts ({'formation': {...}} on stdin)")
    add("ps:stop", "stop", help="stop a process type").add_argument("target")
    add("ps:start", "start", help="start a stopped process type").add_argument("target")
    add("ps:restart", "restart", help="restart processes").add_argument("target", nargs="?")
    add("restart", "restart", help="restart every process of an app")
    lg = add("logs", "logs", help="show (and follow) the app's log")
    lg.add_argument("-n", "--num", type=int, default=100)
    lg.add_argument("-t", "--tail", action="store_true")
    lg.add_argument("--ps", default=None)
    add("config", "config", help="config vars (JSON)")
    add("config:set", "config_set", help="set config vars ({'vars': {...}} on stdin)")
    add("config:unset", "config_unset", help="unset config vars ({'keys': [...]} on stdin)")
    rl = add("releases", "releases", help="release history (JSON)")
    rl.add_argument("-n", "--num", type=int, default=None)
    add("releases:info", "release_info", help="one release (JSON)").add_argument("version", nargs="?")
    add("rollback", "rollback", help="roll back to a release").add_argument("version", nargs="?")
    run = add("run", "run", help="run a one-off command in the app's environment")
    run.add_argument("command", nargs=argparse.REMAINDER)
    add("startup", "startup", app=False, help="at boot: start every app")
    add("shutdown", "shutdown", app=False, help="stop every app and the supervisor")
    add("systemd-unit", "systemd_unit", app=False, help="print a systemd unit that runs tinyserv")
    add("hook", "hook", help=argparse.SUPPRESS)
    sv = add("supervise", "supervise", app=False, help="run the supervisor in the foreground")
    sv.add_argument("--boot", action="store_true", help="clear a previous shutdown first")
    sv.add_argument("--if-none", action="store_true", help="exit at once if a supervisor runs")
    sv.add_argument("--standby", action="store_true", help="wait to take over when the running supervisor dies")
    add("version", "version", app=False, help="print the version")
    return p


def command(name):
    """The function for a command: supervise and version here, the rest in commands.py."""
    if name in ("supervise", "version"):
        return globals()["cmd_" + name]
    from . import commands
    return getattr(commands, "cmd_" + name.replace("-", "_"))


def main(argv=None):
    """Entry point of bin/tinyserv-remote."""
    argv = sys.argv[1:] if argv is None else argv

    def body():
        args = parse(parser(), argv)
        return command(args.func)(Layout(server_root()), args)
    return guarded(body)
