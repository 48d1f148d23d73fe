"""The client's side of apps, ps, logs, run, config, releases, rollback and keys: a part of the Client (client.py)."""

import os
import shlex
import sys
import time

from tinyserv.common import configvars, printer, userfiles
from tinyserv.cli import gitlocal
from tinyserv.cli.target import app_option
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_app_name, check_config_key, parse_assignments, parse_scale
from tinyserv.common.printer import ago, color, heading, human, iso, pairs, table

SINGLE_USER_KEYS = ("single-user mode: a key that may push runs its build as the deploy user, so --apps and "
                    "--push-only limit tinyserv's commands, not that user (root mode keeps them apart: "
                    "docs/installation.md#who-can-do-what)")


class AppCommands:
    """An app and its processes, logs, config, releases; deploy keys. Each method is the command named like it."""

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
        deleted = ("the link to its data directory (%s is kept)" % printer.escape(result["data_kept"])
                   if result.get("data_kept") else "its data directory (%s)" % human(result.get("data_bytes", 0)))
        if result.get("addons"):
            deleted += " and add-ons %s, with their data" % ", ".join(result["addons"])
        self.say("Destroying ⬢ %s... done: %s deleted" % (name, deleted)
                 + ("\nGit remote tinyserv removed" if removed else ""))

    def data_of(self, name):
        """What apps:destroy's question says besides code and config: the data directory and add-ons."""
        storage = self.call("storage", app=name)
        listed = self.call("addons", app=name)
        data = ("the link to its data directory (%s stays)" % printer.escape(storage["linked_to"])
                if storage.get("linked_to") else "its data directory (%s)" % human(storage["bytes"]))
        return data + (" and its add-ons %s with all their data" % ", ".join(a["name"] for a in listed)
                       if listed else "")

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
            ("Deployed", i["deployed_at"] or "-"), ("Runtime", i.get("runtime") or "-"), ("State", i["state"]),
            ("Scheduler", i.get("scheduler", "local"))])))

    def scheduler_set(self):
        result = self.call()
        self.json_or(result, lambda r: self.say("Setting the scheduler of ⬢ %s to %s... %s" % (
            self.app, r["scheduler"], "done" if r["changed"] else "it was already")))

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
            if ps.get("scheduler") == "swarm":
                rows = [[i["name"], i["state"], i["node"], i["age"], i["port"] or "", i["error"]]
                        for i in ps["instances"] if i["type"] == ptype]
                headers = ["TASK", "STATE", "NODE", "AGE", "PORT", "ERROR"]
            else:
                rows = [self.ps_row(i, now) for i in ps["instances"] if i["type"] == ptype]
                headers = ["PROCESS", "STATE", "PID", "SINCE", "RESTARTS", "LAST EXIT", "NEXT TRY"]
            if rows:
                self.say(table(rows, headers))
            self.say()

    def ps_row(self, i, now):
        state = color(i["state"], {"up": "32", "crashed": "31"}.get(i["state"], "33"))
        if i.get("silent_since") and i["state"] == "up":  # it runs, but no longer answers (supervise/health.py)
            state = color("up, not answering for %s" % ago(i["silent_since"], now), "31")
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

    # --- deploy keys ---

    def keys(self):
        keys = self.call()
        self.json_or(keys, lambda keys: self.say(heading("Deploy keys") + "\n" + table(
            [[k["name"], "all (manages keys)" if k["full"] else ",".join(k["apps"] or ["all"]),
              "push only" if k["push_only"] else "push, commands" + (", run" if not k["push_only"] else ""),
              k["fingerprint"], k["added"]] for k in keys],
            ["NAME", "APPS", "MAY", "FINGERPRINT", "ADDED"]) if keys else "No deploy keys: every key in "
            "authorized_keys has full access (see 'tinyserv keys:add')."))
        if any(k.get("acts_as_deploy_user") and not k["full"] for k in keys) and not self.args.json:
            printer.warning(SINGLE_USER_KEYS)

    def keys_add(self):
        self.args.key = read_public_key(self.args.file)
        added = self.call()
        self.say("Adding deploy key %s (%s)... done, it may %s %s" % (
            added["name"], added["fingerprint"], "only push to" if added["push_only"] else "push to and manage",
            "every app" if added["apps"] is None else ", ".join(added["apps"])))
        if added.get("acts_as_deploy_user") and not added["full"]:
            printer.warning(SINGLE_USER_KEYS)

    def keys_remove(self):
        self.call()
        self.say("Removing deploy key %s... done" % self.args.name)


def read_public_key(path):
    """The public key to add: FILE, else the user's default ssh public key."""
    home = os.path.expanduser("~/.ssh")
    candidates = [path] if path else [os.path.join(home, n) for n in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")]
    for candidate in candidates:
        if os.path.exists(candidate):
            return userfiles.read_text(candidate, userfiles.MAX_PUBLIC_KEY)
    raise TinyservError("no public key at %s: name the .pub file (tinyserv keys:add NAME FILE)" % candidates[0])
