"""tinyserv: the developer's command line. Heroku's verbs, run against your own server."""

import argparse
import getpass
import shlex
import socket
import sys
import time

from . import __version__, gitlocal, printer
from .errors import ArgumentParser, TinyservError, guarded, parse
from .names import check_app_name, check_config_key, parse_assignments, parse_scale
from .printer import color, heading, pairs, table
from .transport import Remote


def who():
    """Who made a change, for the release history."""
    return "%s@%s" % (getpass.getuser(), socket.gethostname())


def resolve_app(args):
    """-a/--app, else the app this repository's `tinyserv` git remote names."""
    if args.app is not None:
        return check_app_name(args.app)
    url = gitlocal.remote_url()
    if url:
        return check_app_name(gitlocal.app_from_url(url))
    raise TinyservError("no app here: run this in a repository with a 'tinyserv' git remote "
                        "(see 'tinyserv apps:create') or pass -a NAME")


def ago(epoch, now=None):
    """'3s', '4m', '2h', '5d'."""
    seconds = max(0, int((now or time.time()) - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else ""


class Client:
    """One invocation: the parsed arguments, the remote, and the output stream."""

    def __init__(self, args, remote, out=None):
        self.args = args
        self.remote = remote
        self.out = out or sys.stdout

    def say(self, text=""):
        self.out.write(text + "\n")

    def json_or(self, value, render):
        if getattr(self.args, "json", False):
            self.say(printer.dumps(value))
        else:
            render(value)

    @property
    def app(self):
        return resolve_app(self.args)

    # --- apps ---

    def apps(self):
        self.json_or(self.remote.call(["apps"]), lambda apps: self.say(
            heading("Apps") + "\n" + "\n".join(self.app_line(a) for a in apps) if apps else "You have no apps."))

    @staticmethod
    def app_line(app):
        """An app's name, and what is wrong when its state cannot be read."""
        return app["name"] if app.get("state") != "broken" else "%s  %s" % (
            app["name"], color("broken: " + app.get("error", "?"), "31"))

    def apps_create(self):
        name = check_app_name(gitlocal.default_app_name() if self.args.name is None else self.args.name)
        repo = gitlocal.in_repository()
        existing = gitlocal.remote_url() if repo else None
        if existing:
            raise TinyservError("this repository already points at app %r (git remote 'tinyserv'); "
                                "remove it with 'git remote remove tinyserv' first" % gitlocal.app_from_url(existing))
        created = self.remote.call(["apps:create", name], {"by": who()})
        url = self.remote.git_url(created["repo"])
        if repo:
            gitlocal.add_remote(url)
        created.update(git_url=url, web_url=self.web_url(created["port"]))
        self.json_or(created, lambda c: self.say(
            "Creating ⬢ %s... done\n%s | %s" % (c["name"], c["web_url"], c["git_url"])
            + ("\nGit remote tinyserv added" if repo else "")))

    def apps_destroy(self):
        name, confirm = self.destroy_target(), self.args.confirm
        if confirm is None:
            if not sys.stdin.isatty():
                raise TinyservError("apps:destroy %s needs --confirm %s when not run on a terminal" % (name, name))
            self.say(" !    This deletes ⬢ %s: its processes, code, releases, config and logs." % name)
            try:
                confirm = input(" !    To proceed, type %s: " % name).strip()
            except EOFError:
                raise TinyservError("no confirmation given: nothing was destroyed") from None
        if confirm != name:
            raise TinyservError("confirmation %r does not match %r: nothing was destroyed" % (confirm, name))
        self.remote.call(["apps:destroy", name])
        removed = gitlocal.in_repository() and gitlocal.remove_remote_if(name)
        self.say("Destroying ⬢ %s... done" % name + ("\nGit remote tinyserv removed" if removed else ""))

    def destroy_target(self):
        """NAME, -a, this repository's app or, with none of those, the name given to --confirm."""
        if self.args.name is not None:
            return check_app_name(self.args.name)
        if self.args.app is None and self.args.confirm and not gitlocal.remote_url():
            return check_app_name(self.args.confirm)
        return self.app

    def apps_info(self):
        info = self.remote.call(["apps:info", self.app])
        info.update(git_url=self.remote.git_url(info["repo"]), web_url=self.web_url(info["port"]))
        self.json_or(info, lambda i: self.say(heading(i["name"]) + "\n" + pairs([
            ("Git URL", i["git_url"]), ("Port", i["port"]), ("Web URL", i["web_url"]),
            ("Release", i["release"]), ("Commit", i["commit"] or "(not deployed)"),
            ("Deployed", i["deployed_at"] or "-"), ("State", i["state"])])))

    def web_url(self, port):
        return "http://%s:%d/" % (self.remote.web_host(), port)

    # --- processes ---

    def ps(self):
        self.json_or(self.remote.call(["ps", self.app]), self.render_ps)

    def render_ps(self, ps):
        if ps.get("broken"):
            self.say(color(" !    the supervisor cannot run %s: %s" % (self.app, ps["broken"]), "31"))
        if not ps["formation"]:
            self.say("%s has not been deployed yet: git push tinyserv main" % self.app)
            return
        now = time.time()
        for ptype, f in ps["formation"].items():
            count = "stopped" if f["stopped"] else f["quantity"]
            self.say(heading("%s (%s): %s" % (ptype, f["command"], count)))
            rows = [self.ps_row(i, now) for i in ps["instances"] if i["type"] == ptype]
            if rows:
                self.say(table(rows, ["PROCESS", "STATE", "PID", "SINCE", "RESTARTS", "LAST EXIT", "NEXT TRY"]))
            self.say()

    def ps_row(self, i, now):
        state = color(i["state"], {"up": "32", "crashed": "31"}.get(i["state"], "33"))
        next_try = "in %ds" % max(0, round(i["next_try"] - now)) if i["state"] == "crashed" else ""
        since = "%s (%s ago)" % (iso(i["since"]), ago(i["since"], now)) if i["since"] else ""
        return [i["name"], state, i["pid"] or "", since, "" if i["restarts"] is None else i["restarts"],
                "" if i["exit_code"] is None else i["exit_code"], next_try]

    def ps_scale(self):
        changes = parse_scale(self.args.changes)
        if not changes:
            raise TinyservError("ps:scale needs TYPE=N, e.g. 'tinyserv ps:scale worker=2'")
        result = self.remote.call(["ps:scale", self.app], {"formation": changes})
        self.json_or(result, lambda f: self.say("Scaling processes... done, now running " + ", ".join(
            "%s at %d" % (t, v["quantity"]) for t, v in sorted(f.items()))))

    def ps_restart(self):
        target = getattr(self.args, "target", None)
        words = ["ps:restart", self.app] + ([target] if target else [])
        self.remote.call(words)
        self.say("Restarting %s on ⬢ %s... done" % (target or "all processes", self.app))

    def ps_stop(self):
        self.remote.call(["ps:stop", self.app, self.args.target])
        self.say("Stopping %s on ⬢ %s... done (start it again with 'tinyserv ps:start %s')" % (
            self.args.target, self.app, self.args.target))

    def ps_start(self):
        self.remote.call(["ps:start", self.app, self.args.target])
        self.say("Starting %s on ⬢ %s... done" % (self.args.target, self.app))

    # --- logs and run ---

    def logs(self):
        if self.args.num < 0:
            raise TinyservError("-n must be 0 or more")
        words = ["logs", self.remote_app(), "-n", str(self.args.num)]
        words += ["--ps", self.args.ps] if self.args.ps else []
        words += ["-t"] if self.args.tail else []
        return self.remote.stream(words, keep_stdin=self.args.tail)

    def remote_app(self):
        return self.app

    def run(self):
        if not self.args.command:
            raise TinyservError("run needs a command, e.g. 'tinyserv run bash'")
        tty = sys.stdin.isatty() and sys.stdout.isatty()
        return self.remote.stream(["run", self.app, "--", *self.args.command], tty=tty)

    # --- config ---

    def config(self):
        config = self.remote.call(["config", self.app])
        if self.args.shell:
            self.say("\n".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(config.items())))
            return
        self.json_or(config, lambda c: self.say(heading("%s Config Vars" % self.app) + (
            "\n" + pairs(sorted(c.items())) if c else "\n(none)")))

    def config_get(self):
        key = check_config_key(self.args.key)
        value = self.remote.call(["config", self.app]).get(key)
        if value is not None:
            self.say(value)

    def config_set(self):
        changes = parse_assignments(self.args.pairs)
        if not changes:
            raise TinyservError("config:set needs KEY=VALUE, e.g. 'tinyserv config:set GREETING=hello'")
        result = self.remote.call(["config:set", self.app], {"vars": changes, "by": who()})
        self.report_release("Setting %s and restarting" % ", ".join(changes), result)
        self.say(pairs(sorted(changes.items())))

    def config_unset(self):
        keys = [check_config_key(k) for k in self.args.keys]
        if not keys:
            raise TinyservError("config:unset needs a KEY, e.g. 'tinyserv config:unset GREETING'")
        result = self.remote.call(["config:unset", self.app], {"keys": keys, "by": who()})
        self.report_release("Unsetting %s and restarting" % ", ".join(keys), result)

    def report_release(self, doing, result):
        self.say("%s ⬢ %s... done, v%d" % (doing, self.app, result["release"]["version"]))
        if result["web"] not in ("up", "not deployed"):
            sys.stderr.write(" !    web %s after the restart: see 'tinyserv logs'\n" % (
                "did not come up in time" if result["web"] == "timeout" else "crashed"))

    # --- releases ---

    def releases(self):
        if self.args.num is not None and self.args.num < 1:
            raise TinyservError("-n must be 1 or more, not %d" % self.args.num)
        words = ["releases", self.app] + (["-n", str(self.args.num)] if self.args.num else [])
        self.json_or(self.remote.call(words), self.render_releases)

    def render_releases(self, history):
        current = "v%d" % history[0]["version"] if history else "-"
        rows = [["v%d" % r["version"], r["description"], r["by"], r["created_at"]] for r in history]
        self.say(heading("%s Releases - Current: %s" % (self.app, current)))
        self.say(table(rows, ["VERSION", "DESCRIPTION", "BY", "CREATED"]))

    def releases_info(self):
        words = ["releases:info", self.app] + ([self.args.version] if self.args.version else [])
        self.json_or(self.remote.call(words), lambda r: self.say(heading("Release v%d" % r["version"]) + "\n" + pairs([
            ("Description", r["description"]), ("By", r["by"]), ("When", r["created_at"]),
            ("Commit", r["commit"] or "-"), ("Build", r["build"] or "-"),
            ("Config vars", ", ".join(r["config_keys"]) or "(none)")])))

    def rollback(self):
        words = ["rollback", self.app] + ([self.args.version] if self.args.version else [])
        result = self.remote.call(words, {"by": who()})
        self.report_release("Rolling back", result)
        self.say(result["release"]["description"])


COMMANDS = [
    # name, method, takes -a, help
    ("apps", "apps", False, "list your apps"),
    ("apps:create", "apps_create", False, "create an app (and a 'tinyserv' git remote)"),
    ("apps:destroy", "apps_destroy", True, "stop an app and delete everything it has"),
    ("apps:info", "apps_info", True, "show an app's port, URLs, release and state"),
    ("ps", "ps", True, "list the app's processes"),
    ("ps:scale", "ps_scale", True, "set how many instances of each process type run"),
    ("ps:restart", "ps_restart", True, "restart processes (all, a TYPE, or TYPE.N)"),
    ("ps:stop", "ps_stop", True, "stop a process type until ps:start"),
    ("ps:start", "ps_start", True, "start a stopped process type"),
    ("restart", "ps_restart", True, "restart every process of the app"),
    ("logs", "logs", True, "show the app's log (-t to follow it)"),
    ("run", "run", True, "run a one-off command in the app's environment"),
    ("config", "config", True, "show config vars"),
    ("config:get", "config_get", True, "print one config var"),
    ("config:set", "config_set", True, "set config vars and restart the app"),
    ("config:unset", "config_unset", True, "remove config vars and restart the app"),
    ("releases", "releases", True, "list releases"),
    ("releases:info", "releases_info", True, "show one release"),
    ("rollback", "rollback", True, "go back to an earlier release, without rebuilding"),
]


def add_arguments(name, cmd):
    """Each command's own arguments."""
    json_flag = lambda: cmd.add_argument("--json", action="store_true", help="print JSON")  # noqa: E731
    if name in ("apps", "apps:info", "ps", "releases", "releases:info"):
        json_flag()
    if name == "apps:create":
        cmd.add_argument("name", nargs="?", help="app name (default: this directory's name)")
        json_flag()
    elif name == "apps:destroy":
        cmd.add_argument("name", nargs="?", help="app name (default: this repository's app)")
        cmd.add_argument("--confirm", metavar="NAME", help="the app's name, to skip the question")
    elif name == "ps:scale":
        cmd.add_argument("changes", nargs="*", metavar="TYPE=N")
    elif name == "ps:restart":
        cmd.add_argument("target", nargs="?", metavar="TYPE|TYPE.N")
    elif name in ("ps:stop", "ps:start"):
        cmd.add_argument("target", metavar="TYPE")
    elif name == "logs":
        cmd.add_argument("-n", "--num", type=int, default=100, help="how many lines (default 100)")
        cmd.add_argument("-t", "--tail", action="store_true", help="keep following the log")
        cmd.add_argument("--ps", metavar="TYPE", help="only this process type (web) or instance (web.1)")
    elif name == "run":
        cmd.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND ...")
    elif name == "config":
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.add_argument("--shell", action="store_true", help="print KEY='value' lines for a shell")
    elif name == "config:get":
        cmd.add_argument("key", metavar="KEY")
    elif name == "config:set":
        cmd.add_argument("pairs", nargs="*", metavar="KEY=VALUE")
    elif name == "config:unset":
        cmd.add_argument("keys", nargs="*", metavar="KEY")
    elif name == "releases":
        cmd.add_argument("-n", "--num", type=int, help="only the newest N")
    elif name in ("releases:info", "rollback"):
        cmd.add_argument("version", nargs="?", metavar="vN")


def parser():
    p = ArgumentParser(prog="tinyserv", description=__doc__ + "\n\nTINYSERV_REMOTE names the server "
               "(user@host, ssh://user@host:port, or localhost, the default).",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="tinyserv " + __version__)
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name, method, takes_app, help_text in COMMANDS:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.set_defaults(method=method)
        if takes_app:
            cmd.add_argument("-a", "--app", metavar="NAME", help="the app (default: this repository's)")
        else:
            cmd.set_defaults(app=None)
        add_arguments(name, cmd)
    return p


def main(argv=None):
    """Entry point of bin/tinyserv."""
    argv = sys.argv[1:] if argv is None else argv

    def body():
        args = parse(parser(), argv)
        return getattr(Client(args, Remote()), args.method)()
    return guarded(body)
