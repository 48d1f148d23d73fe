"""The client's side of the commands of apps that keep data: storage, add-ons, pg, cron, backups."""

import contextlib
import os
import sys
import tempfile
import time

from tinyserv.common import commands
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import addon_kind
from tinyserv.common.printer import heading, human, iso, pairs, table


class DataCommands:
    """A part of the Client (client.py): each method is the command named like it."""

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
        kind = addon_kind(self.args.kind)  # refused here before anything travels; the server checks again
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
