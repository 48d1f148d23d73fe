"""tinyserv: the developer's command line. Heroku's verbs, run against your own server."""

import argparse
import contextlib
import os
import shlex
import sys
import tempfile
import time

from tinyserv import __version__
from tinyserv.common import commands, configvars, printer
from tinyserv.cli import gitlocal
from tinyserv.common.errors import ArgumentParser, RawDescriptionHelpFormatter, TinyservError, guarded, parse
from tinyserv.common.names import (MAX_PEM, check_app_name, check_config_key, check_domain, check_feature, check_pem,
                    parse_assignments, parse_scale)
from tinyserv.common.printer import color, heading, pairs, table
from tinyserv.state.storage import human
from tinyserv.cli.transport import Remote


def who():
    """Who made a change, for the release history."""
    import getpass
    import socket
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


# macOS's `open`; elsewhere `open` may be openvt, so only the desktop's opener and WSL's.
OPENERS = ["open"] if sys.platform == "darwin" else ["xdg-open", "wslview"]


def read_text(path):
    """A local file's text, or the one error that says why it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TinyservError("cannot read %s: %s" % (path, getattr(e, "strerror", None) or e)) from None


def write_private(path, text):
    """Write a local file only its owner can read (config vars are often secrets), replacing it atomically."""
    import tempfile
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tinyserv-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise TinyservError("cannot write %s: %s" % (path, e.strerror)) from None


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
        """The app this command acts on (found once)."""
        if getattr(self, "_app", None) is None:
            self._app = resolve_app(self.args)
        return self._app

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
            if self.remote.git_ssh_command():
                gitlocal.share_ssh(self.remote.git_ssh_command())
        created.update(git_url=url, web_url=self.web_url(created["port"]))
        self.json_or(created, lambda c: self.say(
            "Creating ⬢ %s... done\n%s | %s" % (c["name"], c["web_url"], c["git_url"])
            + ("\nGit remote tinyserv added" if repo else "")))

    def apps_destroy(self):
        name, confirm = self.destroy_target(), self.args.confirm
        if confirm is None:
            if not sys.stdin.isatty():
                raise TinyservError("apps:destroy %s needs --confirm %s when not run on a terminal" % (name, name))
            self.say(" !    This deletes ⬢ %s: its processes, code, releases, config and logs, %s." % (
                name, self.data_of(name)))
            try:
                confirm = input(" !    To proceed, type %s: " % name).strip()
            except EOFError:
                raise TinyservError("no confirmation given: nothing was destroyed") from None
        if confirm != name:
            raise TinyservError("confirmation %r does not match %r: nothing was destroyed" % (confirm, name))
        result = self.call(app=name)
        removed = gitlocal.in_repository() and gitlocal.remove_remote_if(name)
        deleted = "its data directory (%s)" % human(result.get("data_bytes", 0))
        if result.get("addons"):
            deleted += " and add-ons %s, with their data" % ", ".join(result["addons"])
        self.say("Destroying ⬢ %s... done: %s deleted" % (name, deleted)
                 + ("\nGit remote tinyserv removed" if removed else ""))

    def data_of(self, name):
        """What apps:destroy's question says besides code and config: the data directory and add-ons."""
        size = human(self.call("storage", app=name)["bytes"])
        listed = self.call("addons", app=name)
        return "its data directory (%s)%s" % (size, " and its add-ons %s with all their data" % ", ".join(
            a["name"] for a in listed) if listed else "")

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
        last = i.get("reason") or ("" if i["exit_code"] is None else i["exit_code"])
        return [i["name"], state, i["pid"] or "", since, "" if i["restarts"] is None else i["restarts"], last,
                next_try]

    def ps_scale(self):
        parse_scale(self.args.changes)  # refused here before anything travels; the server checks again
        if not self.args.changes:
            raise TinyservError("ps:scale needs TYPE=N, e.g. 'tinyserv ps:scale worker=2'")
        self.json_or(self.call(), lambda result: self.say("Scaling processes... done, now running " + ", ".join(
            "%s at %d" % (t, v["quantity"]) for t, v in sorted(result.items()))))

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
        if getattr(self.args, "json", False):
            self.say(printer.dumps({key: value}))
        elif value is not None:
            self.say(value)

    def config_set(self):
        changes = parse_assignments(self.args.pairs)
        if not changes:
            raise TinyservError("config:set needs KEY=VALUE, e.g. 'tinyserv config:set GREETING=hello'")
        configvars.check_changes(changes, [])  # refused here before anything travels; the server checks again
        self.json_or(self.call(), lambda result: self.report_release(
            "Setting %s and restarting" % ", ".join(changes), result, pairs(sorted(changes.items()))))

    def config_unset(self):
        keys = [check_config_key(k) for k in self.args.keys]
        if not keys:
            raise TinyservError("config:unset needs a KEY, e.g. 'tinyserv config:unset GREETING'")
        self.json_or(self.call(), lambda result: self.report_release(
            "Unsetting %s and restarting" % ", ".join(keys), result))

    def report_release(self, doing, result, more=None):
        self.say("%s ⬢ %s... done, v%d" % (doing, self.app, result["release"]["version"]))
        if more:
            self.say(more)

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
        self.json_or(self.call(), lambda result: self.report_release(
            "Rolling back", result, result["release"]["description"]))

    # --- the developer's side: setting a server up, working on this machine, small things ---

    def server_remote(self):
        """The server the command line names (REMOTE), else TINYSERV_REMOTE's."""
        spec = getattr(self.args, "server", None)
        return Remote(os.environ, spec) if spec else Remote(os.environ)

    def version(self):
        from tinyserv.cli.install import server_version
        remote = self.server_remote()
        server = server_version(remote)
        info = {"client": __version__, "server": server, "server_host": remote.host or "localhost",
                "same": server == __version__}
        self.json_or(info, lambda i: self.say("tinyserv %s (this machine)\ntinyserv-remote %s (%s)" % (
            i["client"], i["server"] or "not installed", i["server_host"])))
        if not info["same"]:
            printer.warning("the server %s; 'tinyserv server:install%s' installs this version there without "
                            "stopping apps" % ("has %s, this machine %s" % (server, __version__) if server else
                                               "has no tinyserv", " " + self.args.server if self.args.server else ""))

    def server_install(self):
        from tinyserv.cli.install import install
        remote = self.server_remote()
        if remote.local:
            raise TinyservError("server:install works over ssh: name the server ('tinyserv server:install "
                                "user@host') or set TINYSERV_REMOTE")
        code = install(remote, self.say)
        if code == 0:
            self.say("-----> tinyserv %s is ready on %s: 'tinyserv apps:create' in an app's repository, then "
                     "'git push tinyserv main'" % (__version__, remote.host))
        return code  # the doctor printed what failed, and each fix

    def local(self):
        from tinyserv.cli import local
        return local.run(self.args.types, self.args.procfile, self.args.env or ".env", self.args.env is not None,
                         self.args.port, self.args.timeout, self.out)

    def call_with(self, name, **values):
        """Run another command on the server, with these as its arguments."""
        cmd = commands.BY_NAME[name]
        words, payload = commands.request(cmd, argparse.Namespace(**values), self.app, who())
        return self.remote.call(words, payload)

    def config_pull(self):
        from tinyserv.common import dotenv
        path = self.args.env
        server = self.call("config")
        local_values = dotenv.parse_env(read_text(path), path) if os.path.exists(path) else {}
        kept = sorted(k for k in server if k in local_values and local_values[k] != server[k]
                      and not self.args.overwrite)
        merged = dict(local_values, **{k: v for k, v in server.items() if k not in kept})
        write_private(path, dotenv.format_env(merged))
        result = {"file": path, "pulled": sorted(k for k in server if k not in kept), "kept": kept}
        self.json_or(result, lambda r: self.say(
            "Config vars of ⬢ %s written to %s: %s" % (self.app, path, ", ".join(r["pulled"]) or "(none)")
            + ("\nKept the values %s has for %s (--overwrite replaces them)" % (path, ", ".join(kept))
               if kept else "")))

    def config_push(self):
        from tinyserv.common import dotenv
        path = self.args.env
        if not os.path.exists(path):
            raise TinyservError("no %s here: write one (NAME=value lines), or pull the app's with config:pull" % path)
        wanted = dotenv.parse_env(read_text(path), path)
        configvars.check_changes(wanted, [])  # refused here before anything travels; the server checks again
        current = self.call("config")
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if not changes:
            self.json_or({"pushed": [], "release": None}, lambda r: self.say(
                "Config vars of ⬢ %s already match %s: nothing to push" % (self.app, path)))
            return
        result = self.call_with("config:set", pairs=["%s=%s" % item for item in sorted(changes.items())])
        result["pushed"] = sorted(changes)
        self.json_or(result, lambda r: self.report_release(
            "Setting %s from %s and restarting" % (", ".join(r["pushed"]), path), r))

    def open(self):
        import shutil
        import subprocess
        info = self.call("apps:info")
        url = self.web_url(info["port"]) + self.args.path.lstrip("/")
        opener = next((shutil.which(p) for p in OPENERS if shutil.which(p)), None)
        if opener is None:
            self.say(url)
            return
        try:
            subprocess.Popen([opener, url], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            self.say(url)  # the opener cannot run: the address is still what the user wants
            return
        self.say("Opening %s" % url)

    def completion(self):
        from tinyserv.cli import completion
        self.out.write(getattr(completion, self.args.shell)())


    # --- deploy keys ---

    def keys(self):
        self.json_or(self.call(), lambda keys: self.say(heading("Deploy keys") + "\n" + table(
            [[k["name"], "all (manages keys)" if k["full"] else ",".join(k["apps"] or ["all"]),
              "push only" if k["push_only"] else "push, commands" + (", run" if not k["push_only"] else ""),
              k["fingerprint"], k["added"]] for k in keys],
            ["NAME", "APPS", "MAY", "FINGERPRINT", "ADDED"]) if keys else "No deploy keys: every key in "
            "authorized_keys has full access (see 'tinyserv keys:add')."))

    def keys_add(self):
        self.args.key = read_public_key(self.args.file)
        added = self.call()
        self.say("Adding deploy key %s (%s)... done, it may %s %s" % (
            added["name"], added["fingerprint"], "only push to" if added["push_only"] else "push to and manage",
            "every app" if added["apps"] is None else ", ".join(added["apps"])))

    def keys_remove(self):
        self.call()
        self.say("Removing deploy key %s... done" % self.args.name)


    # --- apps that keep data: storage, add-ons, scheduled jobs, backups ---

    def storage(self):
        self.json_or(self.call(), lambda s: self.say(heading("%s Storage" % s["app"]) + "\n" + pairs([
            ("Path", s["path"]), ("Size", "%s (%d file%s)" % (human(s["bytes"]), s["files"],
                                                               "" if s["files"] == 1 else "s")),
            ("Environment", "TINYSERV_DATA_DIR (processes, the release phase and run; kept across deploys, "
                            "rollbacks, restarts and reboots)")])))

    def addons(self):
        self.json_or(self.call(), self.render_addons)

    def render_addons(self, listed):
        if not listed:
            self.say("%s has no add-ons. Create one with 'tinyserv addons:create postgresql' (or redis)." % self.app)
            return
        self.say(heading("%s Add-ons" % self.app))
        self.say(table([[a["name"], a["kind"], a["var"], a["state"], a["created_at"]] for a in listed],
                       ["NAME", "KIND", "CONFIG VAR", "STATE", "CREATED"]))

    def addons_create(self):
        from tinyserv.addons.registry import kind_of
        kind = kind_of(self.args.kind)  # refused here before anything travels; the server checks again
        if not self.args.json:
            self.say("Creating %s on ⬢ %s..." % (kind, self.app))
        created = self.call()
        self.json_or(created, lambda a: self.say("Created %s as %s (a new release; the app restarted with it)\n"
                                                 "Use 'tinyserv addons:info %s' to see it." % (
                                                     a["name"], a["var"], a["name"])))

    def addons_destroy(self):
        name, app = self.args.addon, self.app
        self.confirm(self.args.confirm, "This deletes add-on %s of ⬢ %s with all its data, and unsets its "
                                        "config var." % (name, app))
        result = self.call()
        self.say("Destroying %s on ⬢ %s... done (%s unset in a new release)" % (name, app, result["var"]))

    def confirm(self, given, warning):
        """--confirm APP, or the app's name typed on a terminal; anything else leaves everything as it is."""
        app = self.app
        if given is None:
            if not sys.stdin.isatty():
                raise TinyservError("this needs --confirm %s when not run on a terminal" % app)
            self.say(" !    " + warning)
            try:
                given = input(" !    To proceed, type %s: " % app).strip()
            except EOFError:
                raise TinyservError("no confirmation given: nothing was changed") from None
        if given != app:
            raise TinyservError("confirmation %r does not match %r: nothing was changed" % (given, app))

    def addons_info(self):
        self.json_or(self.call(), lambda a: self.say(heading(a["name"]) + "\n" + pairs(
            [("Kind", a["kind"]), ("Plan", a["plan"]), ("Config var", a["var"]), ("State", a["state"]),
             ("Created", a["created_at"])] + ([("Database", a["database"])] if a.get("database") else []))))

    def pg_psql(self):
        return self.stream(tty=sys.stdin.isatty() and sys.stdout.isatty())

    def pg_backups(self):
        self.json_or(self.call(), lambda b: self.say(heading("%s Backups" % b["database"]) + "\n" + (table(
            [[x["id"], x["created_at"], human(x["bytes"])] for x in b["backups"]], ["ID", "CREATED", "SIZE"])
            if b["backups"] else "No backups. Capture one with 'tinyserv pg:backups:capture'.")))

    def pg_backups_capture(self):
        self.json_or(self.call(), lambda b: self.say("Backing up %s to %s... done (%s)" % (
            b["database"], b["id"], human(b["bytes"]))))

    def pg_backups_restore(self):
        self.confirm(self.args.confirm, "This replaces everything in ⬢ %s's database with the backup %s." % (
            self.app, self.args.backup or "(the newest)"))
        result = self.call()
        self.say("Restoring %s from %s... done" % (result["database"], result["backup"]))

    def pg_backups_download(self):
        target = self.args.output or "latest.dump"
        cmd = commands.BY_NAME[self.args.verb]
        words, _ = commands.request(cmd, self.args, self.app)
        code = self.save_stream(words, target)
        if code == 0:
            self.say("Saved the backup to %s" % target)
        return code

    def save_stream(self, words, target):
        """Run a remote command whose standard output is a file's bytes into target (0600, whole or not at all)."""
        try:  # a fresh name, made exclusively: never through a TARGET.partial someone planted (in /tmp, a link)
            fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".", suffix=".partial",
                                           dir=os.path.dirname(target) or ".")
            out = os.fdopen(fd, "wb")
        except OSError as e:
            raise TinyservError("cannot write %s: %s" % (target, e.strerror)) from None
        try:
            with out:
                code = self.remote.stream(words, out=out)
            if code != 0:
                raise TinyservError("nothing was saved: the server's command failed (exit %d)" % code)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return code

    def cron(self):
        self.json_or(self.call(), self.render_cron)

    def render_cron(self, listed):
        if not listed["jobs"]:
            self.say("%s has no scheduled jobs%s." % (self.app, "" if listed["deployed"] else " (not deployed yet)")
                     + " Add them to app.json: {\"cron\": [{\"command\": \"node job.js\", "
                       "\"schedule\": \"*/5 * * * *\"}]}")
            return
        self.say(heading("%s Scheduled jobs (UTC)" % self.app))
        self.say(table([[j["name"], j["schedule"], j["command"], iso(j["next_at"]),
                         "running" if j["running"] else ("" if j["last_started"] is None else "%s (exit %s)" % (
                             iso(j["last_started"]), "?" if j["last_exit"] is None else j["last_exit"])),
                         j["runs"]] for j in listed["jobs"]],
                       ["JOB", "SCHEDULE", "COMMAND", "NEXT RUN", "LAST RUN", "RUNS"]))

    def backups_capture(self):
        target = self.args.file or "tinyserv-backup-%s-%s.tar.gz" % (
            self.remote.web_host().strip("[]").replace(":", "-"), time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        if os.path.exists(target):
            raise TinyservError("%s exists: give a new file name" % target)
        self.say("Backing up every app on %s into %s (it holds every app's config vars and add-on passwords: "
                 "it is written 0600)..." % (self.remote.spec or "localhost", target))
        self.save_stream(["backup", "-"], target)
        self.say("done, %s" % human(os.path.getsize(target)))


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


def read_public_key(path):
    """The public key to add: FILE, else the user's default ssh public key."""
    home = os.path.expanduser("~/.ssh")
    candidates = [path] if path else [os.path.join(home, n) for n in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")]
    for candidate in candidates:
        try:
            with open(candidate, encoding="utf-8") as f:
                return f.read(16385)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise TinyservError("cannot read %s: %s" % (candidate, e.strerror)) from None
    raise TinyservError("no public key at %s: name the .pub file (tinyserv keys:add NAME FILE)" % candidates[0])


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


def parser(verbs=None):
    """The command line; with verbs, only those commands' parsers (see commands.named_in)."""
    p = ArgumentParser(prog="tinyserv", description=__doc__ + "\n\nTINYSERV_REMOTE names the server "
               "(user@host, ssh://user@host:port, or localhost, the default).",
               formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="tinyserv " + __version__)
    p.add_argument("-a", "--app", dest="app_first", metavar="NAME", help="the app, for any command that takes one")
    p.add_argument("-r", "--remote", dest="git_remote_first", metavar="GIT_REMOTE",
                   help="the git remote that names the app and its server (default: tinyserv)")
    # prog given: else argparse formats a usage line (and imports shutil) just to name the subcommands
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser, prog="tinyserv")
    sub.required = True
    for cmd in commands.client_commands():
        if verbs is not None and cmd.name not in verbs:
            continue
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.app and cmd.app_flag:
            sp.add_argument("-a", "--app", metavar="NAME", help="the app (default: this repository's)")
            sp.add_argument("-r", "--remote", dest="git_remote", metavar="GIT_REMOTE",
                            help="the git remote that names the app and its server (default: tinyserv)")
        else:
            sp.set_defaults(app=None)
        for a in commands.client_args(cmd):
            sp.add_argument(*a.flags, **a.options)
        if cmd.json:
            sp.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv=None):
    """Entry point of bin/tinyserv."""
    argv = sys.argv[1:] if argv is None else argv

    def body():
        args = parse(parser(commands.named_in(argv)), argv)
        if app_option(args) is not None and not (commands.BY_NAME[args.verb].app and
                                                 commands.BY_NAME[args.verb].app_flag):
            raise TinyservError("%s does not take -a/--app" % args.verb)
        return getattr(Client(args), method_name(args.verb))()
    return guarded(body)
