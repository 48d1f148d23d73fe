"""A push: build, release phase, boot check, then a transaction that ends when git moves the ref.

The deploy runs in a process of its own (see hook.py), so a client that goes away stops a
build but never a switch. From the moment the new release is recorded until git moves
the ref, the deploy finishes or undoes itself, and the ref is the judge: once
git-receive-pack is done, the release stays if the branch points at the pushed commit
and is undone otherwise. apps/<app>/pending.json records an open transaction, so one whose
process was killed is settled by the next command that touches the app (recover()).
"""

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import time

from tinyserv.state import appstate, logs, releases, store
from tinyserv.deploy import build, rollout, runtimes, swarm
from tinyserv.platform import procs
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError

ZERO = "0" * 40
RECEIVER_GRACE = 60  # seconds git-receive-pack gets to move the ref once the hook has said yes

Push = collections.namedtuple("Push", "old new ref")
PENDING = {"version": int, "build": str, "ref": str, "old": str, "new": str,
           "receiver": int, "receiver_start": (int, None)}


def git(repo, *args):
    """A git command on the app's repository (the push's own quarantine included): its CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    env["GIT_DIR"] = repo
    return subprocess.run(["git", *args], env=env, capture_output=True, text=True)


def git_out(repo, *args):
    """stdout of a git command on the app's repository."""
    return git(repo, *args).stdout.strip()


def check_whole_history(repo, push):
    """Refuse a push from a shallow clone before building it: its history stops at commits this repository
    lacks, and git refuses to move the ref after the hook ('shallow update not allowed')."""
    if git(repo, "rev-list", "--quiet", push.new, "--not", "--all").returncode != 0:
        raise TinyservError("%s comes from a shallow clone, and git takes no shallow push: fetch the whole "
                            "history ('git fetch --unshallow') and push again" % push.new[:7])


def read_ref(repo, ref):
    """The commit ref points at now, or ZERO (refs only: works after the push's quarantine is gone)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(["git", "--git-dir", repo, "for-each-ref", "--format=%(objectname)", ref],
                            env=env, capture_output=True, text=True)
    return result.stdout.strip() or ZERO


class Deploy:
    """One push to one app, run by the deployer process.

    cancelled() raises when the push's client has gone away (honoured until the switch);
    settle(code) tells git the verdict now and goes on in the background.
    """

    def __init__(self, layout, app, steps, cancelled=lambda: None, settle=lambda code: None):
        self.layout = layout
        self.app = app
        self.steps = steps
        self.cancelled = cancelled
        self.settle = settle
        self.repo = layout.repo(app)

    def run(self, push, receiver):
        """Deploy push; receiver is git-receive-pack's (pid, starttime), whose end settles the ref."""
        try:
            self.deploy(push, receiver)
        except Exception:
            self.still_there()  # apps:destroy stopped the build and took its files: say that, not what broke
            raise

    def still_there(self):
        """Raise the one error for an app destroyed while this push ran (apps:destroy never waits for a build)."""
        if not self.layout.exists(self.app):
            raise TinyservError("%s was destroyed during this push (apps:destroy): nothing was deployed" % self.app)

    def deploy(self, push, receiver):
        """run's body."""
        started = time.monotonic()
        waiting = lambda: self.steps.step("Waiting for another deploy of %s to finish" % self.app)  # noqa: E731
        with store.locked(self.layout.app_file(self.app, "deploy.lock"), waiting=waiting, cancelled=self.cancelled):
            recover_locked(self.layout, self.app)
            if read_ref(self.repo, push.ref) != push.old:
                raise TinyservError("%s changed while this push waited; fetch and push again" % push.ref)
            meta, checked = self.build(push)
            try:
                self.transaction(meta, push, receiver, started, checked)
            finally:
                rollout.abandon(self.layout, self.app, checked)  # a web the check kept and the switch never handed over

    def build(self, push):
        """Build, run the release command and boot-check web, within the build time limit: (meta, check result)."""
        config = releases.current_config(self.layout, self.app)
        limit = settings.build_timeout(config)
        deadline = time.monotonic() + limit

        def watch():
            self.cancelled()
            self.still_there()
            if time.monotonic() > deadline:
                raise TinyservError("the build took longer than %d s (TINYSERV_BUILD_TIMEOUT); it was stopped" % limit)
        self.steps.step("Building %s (%s, %s)" % (self.app, push.new[:7], branch(push.ref)))
        if swarm.scheduled(self.layout, self.app):
            return self.build_for_swarm(push, config, watch)
        meta = build.Builder(self.layout, self.app, self.steps, config, watch).build(push.new, dict(os.environ))
        try:
            if "release" in meta["procfile"]:
                self.release_phase(meta, config, watch)
            timeout = settings.boot_timeout(config)
            self.steps.step("Checking that web boots%s (up to %d s)" % (
                " and answers GET %s" % meta["healthcheck"] if meta.get("healthcheck") else "", timeout))
            up = rollout.check_boot(self.layout, self.app, meta["id"], config, watch)
            self.steps.detail(("web answered on port %d" if up.instance else "web answered on trial port %d") % up.port)
        except TinyservError as e:
            for line in e.details:
                self.steps.detail(line)
            build.remove(self.layout, self.app, meta["id"])
            raise
        except BaseException:
            build.remove(self.layout, self.app, meta["id"])
            raise
        return meta, up

    def build_for_swarm(self, push, config, watch):
        """build() for an app on the swarm: an image, the release command in a container of it, a new rollout."""
        meta = swarm.build(self.layout, self.app, push.new, self.steps, config, watch, dict(os.environ))
        version = releases.current(self.layout, self.app)["version"] + 1
        try:
            if "release" in meta["procfile"]:
                swarm.release_phase(self.layout, self.app, meta, config, version, self.steps, watch)
            return meta, swarm.start(self.layout, self.app, meta, config, version, self.steps, watch)
        except BaseException as e:
            for line in getattr(e, "details", ()):
                self.steps.detail(line)
            build.remove(self.layout, self.app, meta["id"])
            swarm.remove_image(meta["image"])
            raise

    def release_phase(self, meta, config, watch):
        from tinyserv.platform import appenv
        command = meta["procfile"]["release"]
        self.steps.step("Running release command: %s" % command)
        build_dir = self.layout.build_dir(self.app, meta["id"])
        env = appenv.process_env(build_dir, meta, config, self.app, "release.1", releases.port(self.layout, self.app),
                                 releases.current(self.layout, self.app)["version"] + 1,
                                 self.layout.mark(self.app, "release.%s" % meta["id"]),
                                 self.layout.ensure_data_dir(self.app))
        build.run_streamed(self.layout, self.app, ["/bin/sh", "-c", command], build_dir, env, self.steps,
                           "the release command", watch)

    def transaction(self, meta, push, receiver, started, checked=None):
        """Record the release, switch to it, tell git yes, and keep it only if git moves the ref."""
        with store.locked(self.layout.app_file(self.app, "lock")):
            self.still_there()
            config = releases.current_config(self.layout, self.app)
            version = releases.current(self.layout, self.app)["version"] + 1
            store.write_json(pending_file(self.layout, self.app), {
                "version": version, "build": meta["id"], "ref": push.ref, "old": push.old, "new": push.new,
                "receiver": receiver[0], "receiver_start": receiver[1]})
            author = git_out(self.repo, "log", "-1", "--format=%ae", push.new)
            release = releases.add(self.layout, self.app, "Deploy %s" % push.new[:7], config,
                                   build=meta["id"], commit=push.new, by=author or None, ref=push.ref,
                                   **rollout.recorded(checked))
            appstate.ensure_formation(self.layout, self.app, meta["procfile"])
            self.steps.step("Launching %s on port %d" % (", ".join(t for t in meta["procfile"] if t != "release"),
                                                         releases.port(self.layout, self.app)))
            try:
                rollout.switch(self.layout, self.app, release, self.steps, checked)
            except BaseException:
                close(self.layout, self.app, load_pending(self.layout, self.app), kept=False)
                raise
            self.steps.detail("done, web is up")
            url = "http://%s:%d" % (settings.host_name(), releases.port(self.layout, self.app))
            self.steps.step("Released v%d (%s) in %.1f s — %s" % (
                release["version"], push.new[:7], time.monotonic() - started, url))
            self.settle(0)
            settle_by_ref(self.layout, self.app, load_pending(self.layout, self.app))


def branch(ref):
    return ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref


def pending_file(layout, app):
    return layout.app_file(app, "pending.json")


def load_pending(layout, app):
    """The open push transaction of app, or None."""
    return store.load(pending_file(layout, app), PENDING, None)


def settle_by_ref(layout, app, pending):
    """Wait for git-receive-pack to move the ref (or give up on it), then keep or undo the release."""
    receiver = (pending["receiver"], pending["receiver_start"])
    deadline = time.monotonic() + RECEIVER_GRACE
    repo = layout.repo(app)
    while read_ref(repo, pending["ref"]) != pending["new"] and procs.alive(*receiver):
        if time.monotonic() > deadline:
            # It had its chance: make sure it can no longer move the ref behind our back.
            procs.signal_pids([receiver], signal.SIGKILL)
        time.sleep(0.01)  # git moves the ref milliseconds after the hook exits: notice it soon
    close(layout, app, pending, kept=read_ref(repo, pending["ref"]) == pending["new"])


def close(layout, app, pending, kept):
    """End a transaction: keep its release (prune old builds) or undo it (and delete its build)."""
    if kept:
        store.remove(pending_file(layout, app))
        build.prune(layout, app, settings.keep_builds(), protect=protected(layout, app))
        runtimes.prune(layout)  # versions only the builds just pruned used
        return
    newest = releases.current(layout, app)
    if newest["version"] == pending["version"] and newest["build"] == pending["build"]:
        rollout.undo(layout, app, pending["version"], "git did not take the push of %s" % pending["new"][:7])
    store.remove(pending_file(layout, app))
    if pending["build"] not in protected(layout, app):
        build.remove(layout, app, pending["build"])


def protected(layout, app):
    """Builds that must survive pruning whatever their age: the current release's."""
    return {r["build"] for r in releases.history(layout, app)[-1:] if r["build"]}


def recover(layout, app):
    """Settle a push transaction whose process was killed (no-op when there is none, or one is running)."""
    if not os.path.exists(pending_file(layout, app)):
        return
    with store.lock_if_free(layout.app_file(app, "deploy.lock")) as free:
        if free:
            recover_locked(layout, app)


@contextlib.contextmanager
def changing(layout, app):
    """Hold the app's lock for a change that is not a push (config, rollback, add-ons), once any interrupted
    push has been settled."""
    recover(layout, app)
    with store.locked(layout.app_file(app, "lock")):
        yield


def recover_locked(layout, app):
    """recover(), for a caller that holds the app's deploy lock."""
    pending = load_pending(layout, app)
    if pending is not None:
        with store.locked(layout.app_file(app, "lock")):
            logs.append(layout.log_file(app), "tinyserv", "Settling the interrupted push of %s" % pending["new"][:7])
            settle_by_ref(layout, app, pending)


def deployed(history):
    """(commit, branch) the app runs: the branch its current build was pushed from (None before that was
    recorded, or never deployed)."""
    current = history[-1] if history else None
    if not current or not current["build"]:
        return None, None
    refs = [r.get("ref") for r in history if r["build"] == current["build"] and r.get("ref")]
    return current["commit"], refs[-1] if refs else None


def plan(updates, deployed_commit, deployed_ref=None):
    """What a push asks for: the Push to deploy, or None (nothing to deploy); raise to refuse it."""
    if not updates:
        return None
    for old, new, ref in updates:
        if not ref.startswith("refs/heads/"):
            raise TinyservError("tinyserv deploys branches, and %s is not one: push a branch "
                                "(git push tinyserv main)" % ref)
    if len(updates) > 1:
        raise TinyservError("this push updates %d branches (%s): push one branch at a time, the one to deploy" % (
            len(updates), ", ".join(branch(u[2]) for u in updates)))
    old, new, ref = updates[0]
    if new == ZERO:
        if ref == deployed_ref or (deployed_ref is None and deployed_commit and old == deployed_commit):
            raise TinyservError("%s is what this app runs: deleting it is refused "
                                "(remove the app with 'tinyserv apps:destroy')" % branch(ref))
        return None
    return Push(old, new, ref)


def parse_updates(text):
    """pre-receive input lines 'old new ref' -> [(old, new, ref)]."""
    return [tuple(line.split()) for line in text.splitlines() if len(line.split()) == 3]


def hook_script(layout, app, interpreter, remote_script):
    """The pre-receive hook: hand the push to tinyserv-remote (paths quoted once).

    interpreter: the words that start Python, e.g. [sys.executable, "-S"]: without the site
    module (tinyserv needs only the standard library), every push starts sooner.
    """
    return ("#!/bin/sh\n# Written by tinyserv: every push is built and checked before git accepts it.\n"
            "export TINYSERV_ROOT=%s\nexec %s %s hook %s\n" % (
                shlex.quote(layout.root), " ".join(shlex.quote(w) for w in interpreter), shlex.quote(remote_script),
                shlex.quote(app)))
