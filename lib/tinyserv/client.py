"""tinyserv: the developer's command line. Heroku's verbs, run against your own server."""

import argparse
import getpass
import os
import shlex
import socket
import sys
import time

from . import __version__, commands, configvars, gitlocal, printer
from .errors import ArgumentParser, TinyservError, guarded, parse
from .names import (MAX_PEM, check_app_name, check_config_key, check_domain, check_feature, check_pem,
                    parse_assignments, parse_scale)
from .printer import color, heading, pairs, table
from .transport import Remote


def who():
    """Who made a change, for the release history."""
    return "%s@%s" % (getpass.getuser(), socket.gethostname())


def app_option(args):
    """-a/--app, given before or after the command (None when not given)."""
    return args.app if getattr(args, "app", None) is not None else getattr(args, "app_first", None)


def git_remote_option(args):
    """-r/--remote: the git remote naming the app and its server, before or after the command."""
    return getattr(args, "git_remote", None) or getattr(args, "git_remote_first", None)


def resolve_app(args):
    """-a/--app, else the app the repository's `tinyserv` git remote (or -r's) names."""
    if app_option(args) is not None:
        return check_app_name(app_option(args))
    name = git_remote_option(args) or gitlocal.REMOTE_NAME
    url = gitlocal.remote_url(name)
    if url:
        return check_app_name(gitlocal.app_from_url(url))
    if git_remote_option(args):
        raise TinyservError("no git remote named %r in this repository" % name)
    raise TinyservError("no app here: run this in a repository with a 'tinyserv' git remote "
                        "(see 'tinyserv apps:create') or pass -a NAME")


def find_remote(args, environ=os.environ):
    """The server to ask: the one the app's git remote names, as Heroku's CLI finds the app, else
    TINYSERV_REMOTE (for -a NAME without -r, for apps and apps:create, and outside a repository)."""
    cmd = commands.BY_NAME.get(args.verb)
    named = app_option(args) is not None or getattr(args, "name", None) is not None
    if cmd and cmd.app and cmd.app_flag and (git_remote_option(args) or not named):
        url = gitlocal.remote_url(git_remote_option(args) or gitlocal.REMOTE_NAME)
        if url:
            return Remote.for_url(url, environ)
    return Remote(environ)


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
    """One invocation: the parsed arguments, the remote, and the output stream.

    Each command's client side is the method named like it (ps:scale -> ps_scale); its
    name, help and arguments are declared in commands.py.
    """

    def __init__(self, args, remote=None, out=None):
        self.args = args
        self._remote = remote
        self.out = out or sys.stdout

    @property
    def remote(self):
        """The server this command goes to (found once, from the app's git remote or TINYSERV_REMOTE)."""
        if self._remote is None:
            self._remote = find_remote(self.args)
        return self._remote

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

    def call(self, name=None, app=None):
        """Run a command (this one by default) on the server with our arguments; its JSON answer."""
        cmd = commands.BY_NAME[name or self.args.verb]
        words, payload = commands.request(cmd, self.args, (app or self.app) if cmd.app else None, who())
        return self.remote.call(words, payload)

    def stream(self, **options):
        """Run this (streaming) command on the server with its output on our terminal; its exit code."""
        cmd = commands.BY_NAME[self.args.verb]
        words, _ = commands.request(cmd, self.args, self.app)
        return self.remote.stream(words, **options)

    # --- apps ---

    def apps(self):
        self.json_or(self.call(), lambda apps: self.say(
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
        created = self.call(app=name)
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
        self.call(app=name)
        removed = gitlocal.in_repository() and gitlocal.remove_remote_if(name)
        self.say("Destroying ⬢ %s... done" % name + ("\nGit remote tinyserv removed" if removed else ""))

    def destroy_target(self):
        """NAME, -a, this repository's app or, with none of those, the name given to --confirm."""
        if self.args.name is not None:
            return check_app_name(self.args.name)
        if app_option(self.args) is None and self.args.confirm and not gitlocal.remote_url():
            return check_app_name(self.args.confirm)
        return self.app

    def apps_info(self):
        info = self.call()
        info.update(git_url=self.remote.git_url(info["repo"]), web_url=self.web_url(info["port"]))
        self.json_or(info, lambda i: self.say(heading(i["name"]) + "\n" + pairs([
            ("Git URL", i["git_url"]), ("Port", i["port"]), ("Web URL", i["web_url"]),
            ("Release", i["release"]), ("Commit", i["commit"] or "(not deployed)"),
            ("Deployed", i["deployed_at"] or "-"), ("State", i["state"])])))

    def web_url(self, port):
        return "http://%s:%d/" % (self.remote.web_host(), port)

    # --- processes ---

    def ps(self):
        self.json_or(self.call(), self.render_ps)

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
        parse_scale(self.args.changes)  # refused here before anything travels; the server checks again
        if not self.args.changes:
            raise TinyservError("ps:scale needs TYPE=N, e.g. 'tinyserv ps:scale worker=2'")
        result = self.call()
        self.say("Scaling processes... done, now running " + ", ".join(
            "%s at %d" % (t, v["quantity"]) for t, v in sorted(result.items())))

    def ps_restart(self):
        target = getattr(self.args, "target", None)
        self.call()
        self.say("Restarting %s on ⬢ %s... done" % (target or "all processes", self.app))

    restart = ps_restart

    def ps_stop(self):
        self.call()
        self.say("Stopping %s on ⬢ %s... done (start it again with 'tinyserv ps:start %s')" % (
            self.args.target, self.app, self.args.target))

    def ps_start(self):
        self.call()
        self.say("Starting %s on ⬢ %s... done" % (self.args.target, self.app))

    # --- logs and run ---

    def logs(self):
        if self.args.num < 0:
            raise TinyservError("-n must be 0 or more")
        return self.stream(keep_stdin=self.args.following)

    def run(self):
        if not self.args.command:
            raise TinyservError("run needs a command, e.g. 'tinyserv run bash'")
        return self.stream(tty=sys.stdin.isatty() and sys.stdout.isatty())

    # --- config ---

    def config(self):
        config = self.call()
        if self.args.shell:
            self.say("\n".join("%s=%s" % (k, shlex.quote(v)) for k, v in sorted(config.items())))
            return
        self.json_or(config, lambda c: self.say(heading("%s Config Vars" % self.app) + (
            "\n" + pairs(sorted(c.items())) if c else "\n(none)")))

    def config_get(self):
        key = check_config_key(self.args.key)
        value = self.call("config").get(key)
        if value is not None:
            self.say(value)

    def config_set(self):
        changes = parse_assignments(self.args.pairs)
        if not changes:
            raise TinyservError("config:set needs KEY=VALUE, e.g. 'tinyserv config:set GREETING=hello'")
        configvars.check_changes(changes, [])  # refused here before anything travels; the server checks again
        result = self.call()
        self.report_release("Setting %s and restarting" % ", ".join(changes), result)
        self.say(pairs(sorted(changes.items())))

    def config_unset(self):
        keys = [check_config_key(k) for k in self.args.keys]
        if not keys:
            raise TinyservError("config:unset needs a KEY, e.g. 'tinyserv config:unset GREETING'")
        self.report_release("Unsetting %s and restarting" % ", ".join(keys), self.call())

    def report_release(self, doing, result):
        self.say("%s ⬢ %s... done, v%d" % (doing, self.app, result["release"]["version"]))

    # --- releases ---

    def releases(self):
        if self.args.num is not None and self.args.num < 1:
            raise TinyservError("-n must be 1 or more, not %d" % self.args.num)
        self.json_or(self.call(), self.render_releases)

    def render_releases(self, history):
        current = "v%d" % history[0]["version"] if history else "-"
        rows = [["v%d" % r["version"], r["description"], r["by"], r["created_at"]] for r in history]
        self.say(heading("%s Releases - Current: %s" % (self.app, current)))
        self.say(table(rows, ["VERSION", "DESCRIPTION", "BY", "CREATED"]))

    def releases_info(self):
        self.json_or(self.call(), lambda r: self.say(heading("Release v%d" % r["version"]) + "\n" + pairs([
            ("Description", r["description"]), ("By", r["by"]), ("When", r["created_at"]),
            ("Commit", r["commit"] or "-"), ("Build", r["build"] or "-"),
            ("Config vars", ", ".join(r["config_keys"]) or "(none)")])))

    def rollback(self):
        result = self.call()
        self.report_release("Rolling back", result)
        self.say(result["release"]["description"])

    # --- the front door (nginx): domains, certificates, maintenance, features ---

    def domains(self):
        self.json_or(self.call(), self.render_domains)

    def render_domains(self, d):
        names = ([d["default"]] if d["default"] else []) + d["domains"]
        self.say(heading("%s Domains" % d["app"]))
        if names:
            self.say(table([[n, d["https"].get(n, "-")] for n in names], ["DOMAIN", "HTTPS CERTIFICATE"]))
        else:
            self.say("(none: 'tinyserv domains:add www.example.org' adds one)")
        self.say("HTTP on port %d, HTTPS on port %d; %s" % (d["http_port"], d["https_port"], d["front_door"]))

    def domains_add(self):
        check_domain(self.args.hostname)  # refused here before anything travels; the server checks again
        result = self.call()
        self.say("Adding %s to ⬢ %s... done" % (self.args.hostname, self.app))
        self.say("Point %s's DNS at this server (an A record, or a CNAME to %s); nginx answers it on port %d" % (
            self.args.hostname, self.remote.web_host(), result["http_port"]))

    def domains_remove(self):
        check_domain(self.args.hostname)
        self.call()
        self.say("Removing %s from ⬢ %s... done" % (self.args.hostname, self.app))

    def certs(self):
        self.json_or(self.call(), lambda certs: self.say(table(
            [[c["name"], ", ".join(c["names"]), ", ".join(c["serves"]) or "-", c["expires"],
              "yes" if c.get("auto") else "no"] for c in certs],
            ["NAME", "COVERS", "SERVES", "EXPIRES", "AUTO"]) if certs else
            "%s has no certificates ('tinyserv certs:add CERT KEY' or 'tinyserv certs:auto:enable')" % self.app))

    def certs_add(self):
        self.args.cert = read_pem(self.args.cert, "cert")  # sent as JSON on standard input, not as paths
        self.args.key = read_pem(self.args.key, "key")
        cert = self.call()
        self.say("Adding a certificate to ⬢ %s... done, %s (expires %s)" % (self.app, cert["name"], cert["expires"]))
        self.say("It serves %s over HTTPS" % (", ".join(cert["serves"]) if cert["serves"] else
                                               "none of the app's domains yet (it covers %s)" % ", ".join(
                                                   cert["names"])))

    def certs_remove(self):
        result = self.call()
        self.say("Removing certificate %s from ⬢ %s... done" % (result["removed"], self.app))

    def certs_auto_enable(self):
        cert = self.call()
        self.say("Getting a certificate for ⬢ %s... done, it serves %s (expires %s)" % (
            self.app, ", ".join(cert["serves"]), cert["expires"]))

    def certs_auto_refresh(self):
        cert = self.call()
        self.say("Renewing the certificate of ⬢ %s... done (expires %s)" % (self.app, cert["expires"]))

    def certs_auto_disable(self):
        self.call()
        self.say("Automatic certificates of ⬢ %s... disabled" % self.app)

    def maintenance(self):
        self.say("on" if self.call()["maintenance"] else "off")

    def maintenance_on(self):
        self.call()
        self.say("Enabling maintenance mode for ⬢ %s... done" % self.app)

    def maintenance_off(self):
        self.call()
        self.say("Disabling maintenance mode for ⬢ %s... done" % self.app)

    def features(self):
        self.json_or(self.call(), lambda features: self.say(heading("App Features ⬢ %s" % self.app) + "\n" + "\n".join(
            "[%s] %s  %s" % ("+" if f["enabled"] else " ", f["name"], f["description"]) for f in features)))

    def features_enable(self):
        check_feature(self.args.feature)
        self.call()
        self.say("Enabling %s for ⬢ %s... done" % (self.args.feature, self.app))

    def features_disable(self):
        check_feature(self.args.feature)
        self.call()
        self.say("Disabling %s for ⬢ %s... done" % (self.args.feature, self.app))


def read_pem(path, kind):
    """A PEM file the user named, read here (its text goes to the server on standard input)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM + 1)
    except OSError as e:
        raise TinyservError("cannot read %s: %s" % (path, e.strerror)) from None
    try:
        return check_pem(data.decode("utf-8"), kind)
    except UnicodeDecodeError:
        raise TinyservError("%s is not a PEM file (not text)" % path) from None


def method_name(name):
    """The Client method of a command: ps:scale -> ps_scale."""
    return name.replace(":", "_").replace("-", "_")


def parser():
    p = ArgumentParser(prog="tinyserv", description=__doc__ + "\n\nTINYSERV_REMOTE names the server "
               "(user@host, ssh://user@host:port, or localhost, the default).",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="tinyserv " + __version__)
    p.add_argument("-a", "--app", dest="app_first", metavar="NAME", help="the app, for any command that takes one")
    p.add_argument("-r", "--remote", dest="git_remote_first", metavar="GIT_REMOTE",
                   help="the git remote that names the app and its server (default: tinyserv)")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for cmd in commands.client_commands():
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.app and cmd.app_flag:
            sp.add_argument("-a", "--app", metavar="NAME", help="the app (default: this repository's)")
            sp.add_argument("-r", "--remote", dest="git_remote", metavar="GIT_REMOTE",
                            help="the git remote that names the app and its server (default: tinyserv)")
        else:
            sp.set_defaults(app=None)
        for a in cmd.args:
            sp.add_argument(*a.flags, **a.options)
        if cmd.json:
            sp.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv=None):
    """Entry point of bin/tinyserv."""
    argv = sys.argv[1:] if argv is None else argv

    def body():
        args = parse(parser(), argv)
        if app_option(args) is not None and not (commands.BY_NAME[args.verb].app and
                                                 commands.BY_NAME[args.verb].app_flag):
            raise TinyservError("%s does not take -a/--app" % args.verb)
        return getattr(Client(args), method_name(args.verb))()
    return guarded(body)
