"""A push, from the pre-receive hook: build, release phase, boot check, switch.

Runs while git waits, so any failure rejects the push and the running release is
never touched: the new build only replaces it once its web has answered on a
trial port, and if the switch itself fails the app goes back on its own.
"""

import collections
import os
import shlex
import socket
import subprocess
import tempfile
import time

from . import appenv, appstate, build, control, logs, procs, releases, store
from .errors import TinyservError
from .names import number

ZERO = "0" * 40
DEFAULT_BOOT_TIMEOUT = 60
DEFAULT_KEEP = 5
SETTLE = 0.3  # web must keep running this long after it first accepts a connection


def boot_timeout(config):
    """Seconds web gets to listen (config TINYSERV_BOOT_TIMEOUT, default 60)."""
    return number(config.get("TINYSERV_BOOT_TIMEOUT"), DEFAULT_BOOT_TIMEOUT)


def keep_builds(environ=os.environ):
    """How many builds to keep for rollback (TINYSERV_KEEP_BUILDS, default 5)."""
    return number(environ.get("TINYSERV_KEEP_BUILDS"), DEFAULT_KEEP)


def parse_updates(text):
    """pre-receive input lines 'old new ref' -> [(old, new, ref)]."""
    return [tuple(line.split()) for line in text.splitlines() if len(line.split()) == 3]


def host_name():
    return os.environ.get("TINYSERV_HOST") or socket.gethostname()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_out(repo, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    env["GIT_DIR"] = repo
    return subprocess.run(["git", *args], env=env, capture_output=True, text=True).stdout.strip()


class Deploy:
    """One push to one app."""

    def __init__(self, layout, app, steps):
        self.layout = layout
        self.app = app
        self.steps = steps

    def pre_receive(self, text):
        """Entry point of the hook: deploy the last branch pushed; raise to reject."""
        updates = [u for u in parse_updates(text) if u[1] != ZERO]
        if not updates:
            return
        old, new, ref = updates[-1]
        started = time.monotonic()
        lock = self.layout.app_file(self.app, "deploy.lock")
        with store.locked(lock, waiting=lambda: self.steps.step("Waiting for another deploy of %s to finish" % self.app)):
            if self.settled_ref(ref) != old:
                raise TinyservError("%s changed while this push waited; fetch and push again" % ref)
            self.deploy(new, ref, started)
            self.remember_receiver()

    def settled_ref(self, ref):
        """The commit ref points at, once git has finished with the last push we deployed.

        git updates the ref only after the hook that deployed it has exited (and let go of
        the deploy lock), so a push that waited for that lock first waits for that push's
        git-receive-pack, the hook's parent, to finish (for at most 10 s).
        """
        last = store.read_json(self.layout.app_file(self.app, "last-push.json"), {}) or {}
        deadline = time.monotonic() + 10
        while last.get("pid") and procs.alive(last["pid"], last["starttime"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return git_out(self.layout.repo(self.app), "rev-parse", "-q", "--verify", ref) or ZERO

    def remember_receiver(self):
        """Note our git-receive-pack (the hook's parent) for the next push to wait on."""
        receiver = os.getppid()
        store.write_json(self.layout.app_file(self.app, "last-push.json"),
                         {"pid": receiver, "starttime": procs.starttime(receiver)})

    def deploy(self, commit, ref, started):
        short = commit[:7]
        self.steps.step("Building %s (%s, %s)" % (self.app, short, ref.replace("refs/heads/", "")))
        config = releases.current_config(self.layout, self.app)
        meta = build.Builder(self.layout, self.app, self.steps, config).build(commit, dict(os.environ))
        build_dir = self.layout.build_dir(self.app, meta["id"])
        try:
            if "release" in meta["procfile"]:
                self.release_phase(build_dir, meta, config)
            self.boot_check(build_dir, meta, config)
            release = self.switch(meta, commit)
        except BaseException:
            build.remove(self.layout, self.app, meta["id"])
            raise
        build.prune(self.layout, self.app, keep_builds(), protect=self.protected())
        url = "http://%s:%d" % (host_name(), releases.port(self.layout, self.app))
        self.steps.step("Released v%d (%s) in %.1f s — %s" % (
            release["version"], short, time.monotonic() - started, url))

    def protected(self):
        """The build that must survive pruning whatever its age: the current release's."""
        return {r["build"] for r in releases.history(self.layout, self.app)[-1:] if r["build"]}

    def release_phase(self, build_dir, meta, config):
        command = meta["procfile"]["release"]
        self.steps.step("Running release command: %s" % command)
        env = appenv.process_env(build_dir, meta, config, self.app, "release.1",
                                 releases.port(self.layout, self.app), 0, self.layout.mark(self.app, "release.1"))
        build.run_streamed(["/bin/sh", "-c", command], build_dir, env, self.steps, "the release command")

    def boot_check(self, build_dir, meta, config):
        """Start web on a trial port; it must accept connections before we switch."""
        timeout = boot_timeout(config)
        port = free_port()
        self.steps.step("Checking that web boots (trial port %d, up to %d s)" % (port, timeout))
        env = appenv.process_env(build_dir, meta, config, self.app, "web.1",
                                 port, len(releases.history(self.layout, self.app)) + 1,
                                 self.layout.mark(self.app, "trial.web.1"))
        with tempfile.TemporaryFile() as out:
            pid = procs.spawn(["/bin/sh", "-c", meta["procfile"]["web"]], build_dir, env, out.fileno())
            try:
                failure = self.wait_listening(pid, port, timeout)
            finally:
                procs.stop_groups([pid], grace=5)
                procs.reap(pid)
            if failure:
                out.seek(0)
                for line in collections.deque(out.read().decode("utf-8", "replace").splitlines(), 15):
                    self.steps.detail(line)
                raise TinyservError(failure + "; the running release was not touched")
        self.steps.detail("web answered on port %d" % port)

    def wait_listening(self, pid, port, timeout):
        """None once port accepts connections and web is still running SETTLE s later; else why not."""
        from .supervisor import listening
        deadline = time.monotonic() + timeout
        listening_at = None
        while True:
            code = procs.reap(pid)
            if code is not None:
                return "web exited with %d at boot" % code
            if listening_at is None and listening(port, pid):
                listening_at = time.monotonic()
            if listening_at is not None and time.monotonic() - listening_at >= SETTLE:
                return None
            if listening_at is None and time.monotonic() > deadline:
                return "web did not listen on $PORT within %d s" % timeout
            time.sleep(0.05)

    def switch(self, meta, commit):
        """Make the build current, let the supervisor swap processes, and verify web."""
        with store.locked(self.layout.app_file(self.app, "lock")):
            config = releases.current_config(self.layout, self.app)
            author = git_out(self.layout.repo(self.app), "log", "-1", "--format=%ae", commit)
            release = releases.add(self.layout, self.app, "Deploy %s" % commit[:7], config,
                                   build=meta["id"], commit=commit, by=author or None)
            appstate.ensure_formation(self.layout, self.app, meta["procfile"])
        self.steps.step("Launching %s on port %d" % (", ".join(t for t in meta["procfile"] if t != "release"),
                                                     releases.port(self.layout, self.app)))
        logs.append(self.layout.log_file(self.app), "tinyserv", "Release v%d: %s" % (
            release["version"], release["description"]))
        control.sync(self.layout, self.app)
        failed = control.wait_for_web(self.layout, self.app, release["version"], boot_timeout(config), SETTLE)
        if failed:
            self.switch_back(release)
            why = "timed out" if failed == "timeout" else "crashed (exit %s)" % failed.get("exit_code")
            raise TinyservError("web %s after the switch; the previous release is serving again" % why)
        self.steps.detail("done, web is up")
        return release

    def switch_back(self, release):
        """The new release failed on the app's port: drop it and wait for the old one to serve."""
        with store.locked(self.layout.app_file(self.app, "lock")):
            releases.drop_last(self.layout, self.app, release["version"])
            previous = releases.current(self.layout, self.app)
        self.steps.detail("web failed on port %d: going back to v%d" % (
            releases.port(self.layout, self.app), previous["version"]))
        logs.append(self.layout.log_file(self.app), "tinyserv", "Release v%d failed; back to v%d" % (
            release["version"], previous["version"]))
        control.sync(self.layout, self.app)
        if previous["build"]:
            control.wait_for_web(self.layout, self.app, previous["version"], boot_timeout(previous["config"]))


def hook_script(layout, app, python, remote_script):
    """The pre-receive hook: hand the push to tinyserv-remote (paths quoted once)."""
    return ("#!/bin/sh\n# Written by tinyserv: every push is built and checked before git accepts it.\n"
            "export TINYSERV_ROOT=%s\nexec %s %s hook %s\n" % (
                shlex.quote(layout.root), shlex.quote(python), shlex.quote(remote_script), shlex.quote(app)))
