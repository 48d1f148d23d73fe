"""Scheduled jobs: app.json's `cron` entries, read at deploy and run by the supervisor as scheduler.N.

  {"cron": [{"command": "node job.js", "schedule": "*/5 * * * *"}]}   (dokku's convention)

The push reads and checks them (a bad one rejects it with its line in app.json) and keeps
them in the build's metadata, so a rollback brings back the jobs of that build too. The
supervisor asks its Scheduler what is due, by the clock it was given, and runs each due
job as a one-off process in the app's environment, its output in the app's log; a job
whose previous run is still going skips its turn. Each next run is the schedule's next
minute after now, never "now + a minute", so jobs do not drift with the supervisor's loop.
apps/<app>/run/cron.json says when each job last ran and runs next.
"""

import os
import re

from tinyserv.common import schedule, userfiles
from tinyserv.state import store
from tinyserv.common.errors import TinyservError

JOB = {"command": str, "schedule": str}
MAX_JOBS = 50
MAX_COMMAND = 4096
PREFIX = "scheduler"  # job N runs as scheduler.N
SAVED = {"jobs": [{"name": str, "schedule": str, "command": str, "next_at": (int, float, None),
                   "?last_started": (int, float, None), "?last_exit": (int, None), "?last_finished": (int, float, None),
                   "?runs": int, "?skipped": int}]}


def job_name(number):
    """scheduler.N: the one-off instance name of cron job number N (1-based)."""
    return "%s.%d" % (PREFIX, number)


# --- at deploy: app.json ------------------------------------------------------------------------------


def read_jobs(text):
    """The cron jobs of app.json's text ([{command, schedule}]), checked; one line naming app.json's line if not."""
    if text is None:
        return []
    data = userfiles.parse_json(text, "app.json")
    if not isinstance(data, dict):
        raise TinyservError("app.json must be a JSON object")
    entries = data.get("cron", [])
    if not isinstance(entries, list):
        raise TinyservError("app.json line %d: cron must be a list of {\"command\": ..., \"schedule\": ...}"
                            % key_line(text, "cron", 0))
    if len(entries) > MAX_JOBS:
        raise TinyservError("app.json has %d cron jobs; at most %d are allowed" % (len(entries), MAX_JOBS))
    return [check_job(entry, n, text) for n, entry in enumerate(entries)]


def check_job(entry, n, text):
    """One cron entry as {command, schedule}, or raise with its line."""
    where = "app.json line %d: cron job %d" % (entry_line(text, n), n + 1)
    if not isinstance(entry, dict):
        raise TinyservError("%s must be an object like {\"command\": \"node job.js\", \"schedule\": \"@daily\"}"
                            % where)
    command, when = entry.get("command"), entry.get("schedule")
    if not isinstance(command, str) or not command.strip():
        raise TinyservError("%s needs a \"command\" (text)" % where)
    if "\0" in command or len(command) > MAX_COMMAND:
        raise TinyservError("%s: its command must be text without NUL bytes, at most %d characters" % (
            where, MAX_COMMAND))
    if not isinstance(when, str):
        raise TinyservError("%s needs a \"schedule\" (text like \"*/5 * * * *\")" % where)
    try:
        schedule.parse(when)
    except schedule.ScheduleError as e:
        raise TinyservError("app.json line %d: cron job %d: %s" % (entry_line(text, n, "schedule"), n + 1, e)) from None
    return {"command": command, "schedule": when.strip()}


def line_of(text, offset):
    """The 1-based line of text that offset is on."""
    return text.count("\n", 0, offset) + 1


def key_line(text, key, nth):
    """The line of the nth occurrence of "key": in text (1 when it cannot be found)."""
    found = list(re.finditer(r'"%s"\s*:' % re.escape(key), text))
    return line_of(text, found[nth].start()) if nth < len(found) else 1


def entry_spans(text):
    """[(start, end)] offsets of the elements of the "cron" array in app.json's text (a small JSON scanner)."""
    found = re.search(r'"cron"\s*:\s*\[', text)
    if not found:
        return []
    starts, depth, in_string, escaped, expecting = [], 0, False, False, True
    end = len(text)
    for i in range(found.end(), len(text)):
        c = text[i]
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
            continue
        if depth == 0 and expecting and not c.isspace() and c not in ",]":
            starts.append(i)
            expecting = False
        if c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0:
                end = i
                break
            depth -= 1
        elif c == "," and depth == 0:
            expecting = True
    return list(zip(starts, starts[1:] + [end]))


def entry_line(text, n, key=None):
    """The line where cron job n (0-based) starts in app.json, or of its "key": when given and found."""
    spans = entry_spans(text)
    if n >= len(spans):
        return key_line(text, "cron", 0)
    start, end = spans[n]
    found = re.compile(r'"%s"\s*:' % re.escape(key)).search(text, start, end) if key else None
    return line_of(text, found.start() if found else start)


def check_names(jobs, procfile):
    """scheduler.N must not be the name of a Procfile process too."""
    if jobs and PREFIX in procfile:
        raise TinyservError("the Procfile declares a %r process type, whose instances would share names with "
                            "app.json's cron jobs (scheduler.N): rename that process type" % PREFIX)


# --- in the supervisor --------------------------------------------------------------------------------


class Job:
    """One cron job of one app as the supervisor runs it."""

    def __init__(self, name, command, text, next_at):
        self.name = name
        self.command = command
        self.text = text  # the schedule as written
        self.schedule = schedule.parse(text)
        self.next_at = next_at
        self.last_started = self.last_finished = self.last_exit = None
        self.runs = self.skipped = 0

    def shown(self):
        """What run/cron.json records of the job."""
        return {"name": self.name, "schedule": self.text, "command": self.command, "next_at": self.next_at,
                "last_started": self.last_started, "last_exit": self.last_exit, "last_finished": self.last_finished,
                "runs": self.runs, "skipped": self.skipped}


class Scheduler:
    """The supervisor's side: which jobs are due at `now` (a clock the supervisor passes in, faked in tests)."""

    def __init__(self, layout, note=lambda text: None):
        self.layout = layout
        self.note = note
        self.jobs = {}  # app -> {name: Job}

    def update(self, app, entries, now):
        """The app's jobs are now entries ([{command, schedule}], [] when none); unchanged jobs keep their times."""
        old = self.jobs.get(app, {})
        before = self.saved(app) if app not in self.jobs and entries else {}  # a previous supervisor's record
        new = {}
        for n, entry in enumerate(entries or (), start=1):
            name = job_name(n)
            kept = old.get(name)
            if kept and kept.command == entry["command"] and kept.text == entry["schedule"]:
                new[name] = kept
                continue
            try:
                new[name] = job = Job(name, entry["command"], entry["schedule"], None)
            except TinyservError as e:  # a build made before the check, edited by hand: say so, run the rest
                self.note("%s: %s not scheduled: %s" % (app, name, e))
                continue
            job.next_at = schedule.next_after(job.schedule, now)
            record = before.get(name)
            if record and record["command"] == job.command and record["schedule"] == job.text:
                for key in ("last_started", "last_exit", "last_finished", "runs", "skipped"):
                    setattr(job, key, record.get(key, getattr(job, key)))
        if new != old:
            if new:
                self.jobs[app] = new
            else:
                self.jobs.pop(app, None)
            self.save(app)

    def saved(self, app):
        """{name: record} from the app's cron.json ({} when there is none or it cannot be read)."""
        try:
            return {j["name"]: j for j in store.load(cron_file(self.layout, app), SAVED, {"jobs": []})["jobs"]}
        except TinyservError:
            return {}

    def due(self, now):
        """[(app, Job)] whose time has come; each is moved on to its schedule's next minute after now."""
        found = []
        for app, jobs in self.jobs.items():
            for job in jobs.values():
                if job.next_at is not None and now >= job.next_at:
                    job.next_at = schedule.next_after(job.schedule, now)
                    found.append((app, job))
        return found

    def started(self, app, job, now):
        """A run of job began at now."""
        job.last_started = now
        job.runs += 1
        self.save(app)

    def skipped_run(self, app, job):
        """A run of job was skipped: its previous run was still going."""
        job.skipped += 1
        self.save(app)

    def finished(self, app, name, code, now):
        """scheduler.N of app ended with code (None: unknown, e.g. a run adopted from another supervisor)."""
        job = self.jobs.get(app, {}).get(name)
        if job is not None:
            job.last_exit, job.last_finished = code, now
            self.save(app)

    def next_due(self, now):
        """Seconds until the next job is due, or None when there is none."""
        times = [j.next_at for jobs in self.jobs.values() for j in jobs.values() if j.next_at is not None]
        return max(0.0, min(times) - now) if times else None

    def save(self, app):
        """apps/<app>/run/cron.json: when each job ran and runs next (what `tinyserv cron` shows)."""
        run_dir = self.layout.app_file(app, "run")
        if not os.path.isdir(run_dir):
            return  # the app was destroyed
        jobs = [j.shown() for _, j in sorted(self.jobs.get(app, {}).items(), key=lambda item: number_of(item[0]))]
        try:
            store.write_json(cron_file(self.layout, app), {"jobs": jobs})
        except TinyservError as e:
            self.note("%s: %s" % (app, e))


def number_of(name):
    """N of scheduler.N."""
    return int(name.rsplit(".", 1)[1])


def cron_file(layout, app):
    """apps/<app>/run/cron.json."""
    return layout.app_file(app, "run", "cron.json")


# --- tinyserv cron ---------------------------------------------------------------------------------


def listing(layout, app):
    """`tinyserv cron`: the current build's jobs, with when they last ran and run next."""
    from tinyserv.state import appstate, releases
    layout.require(app)
    release = releases.current(layout, app)
    if not release or not release["build"]:
        return {"jobs": [], "deployed": False}
    entries = appstate.build_meta(layout, app, release["build"]).get("cron", [])
    saved = {j["name"]: j for j in store.load(cron_file(layout, app), SAVED, {"jobs": []})["jobs"]}
    running = {i["name"]: i["version"] for i in appstate.instances(layout, app)
               if i["type"] == PREFIX and i["state"] == "up"}
    history = {r["version"]: r for r in releases.history(layout, app)}

    def runs(name, entry):
        """Is a run of this job going on? A run an earlier release started counts when that release had the
        same job (a deploy lets a run finish; the job it ran may be gone or changed since)."""
        version = running.get(name)
        if version is None or version == release["version"]:
            return version is not None
        build = (history.get(version) or {}).get("build")
        try:
            earlier = appstate.build_meta(layout, app, build).get("cron", []) if build else []
        except TinyservError:
            return False  # that build was pruned: its jobs are unknown
        n = number_of(name)
        return n <= len(earlier) and earlier[n - 1] == entry

    jobs = []
    for n, entry in enumerate(entries, start=1):
        name = job_name(n)
        known = saved.get(name)
        if not known or known["schedule"] != entry["schedule"] or known["command"] != entry["command"]:
            known = {}
        jobs.append({"name": name, "schedule": entry["schedule"], "command": entry["command"],
                     "next_at": known.get("next_at"), "last_started": known.get("last_started"),
                     "last_exit": known.get("last_exit"), "runs": known.get("runs", 0),
                     "skipped": known.get("skipped", 0), "running": runs(name, entry)})
    return {"jobs": jobs, "deployed": True}
