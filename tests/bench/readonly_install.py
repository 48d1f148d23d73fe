"""A read-only install against a compiled one: `tinyserv-remote apps` and `tinyserv-remote ps APP` (localhost,
TINYSERV_REMOTE unset) run by a user who cannot write the code, next to the same commands from a compiled copy
that user owns.

Needs root: it creates a throwaway user (useradd), copies this tree's bin/ and lib/ twice —
  read-only: into a root-owned directory, no bytecode, `chmod -R a-w` (the README's "copy bin/ onto PATH" done by
             root): the user's commands keep their bytecode in ~/.cache/tinyserv (lib/tinyserv/__init__.py,
             cache_bytecode_per_user);
  compiled:  into the user's home, compiled with `python3 -m compileall` (what `server:install` leaves);
— deploys one generic app (`python3 -S -m http.server $PORT`) as that user into a small TINYSERV_ROOT, then times
the commands as whole processes, run by that user with a clean environment (no PYTHONDONTWRITEBYTECODE), in
alternating pairs (read-only, compiled, read-only, ...) after one warm-up run of each:
  - warm: the per-user cache kept (every run after a user's first);
  - cold: ~/.cache/tinyserv emptied before each read-only run (a user's very first run; every run before the
    per-user cache existed).
Medians of --runs pairs and the median of each pair's ratio go to tests/bench/results/readonly_install.json.
In a `finally` it shuts the user's tinyserv down, deletes the user, its home and the copies.

    python3 tests/bench/readonly_install.py [--runs 20] [--keep]
"""

import argparse
import contextlib
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import REPO, BenchError  # noqa: E402

USER = "tsbench-ro"
READONLY = "/opt/tinyserv-readonly-bench"
PYTHON = "/usr/bin/python3"
APP = "one"


class Setup:
    """The throwaway user, the two copies of tinyserv, and a TINYSERV_ROOT with one deployed app."""

    def __init__(self, start_port):
        self.start_port = start_port
        self.user_created = False

    def create(self):
        if os.geteuid() != 0:
            raise BenchError("run as root: it creates a user and a root-owned read-only copy")
        common.run(["useradd", "--create-home", "--shell", "/bin/sh", USER])
        self.user_created = True
        self.pw = pwd.getpwnam(USER)
        self.home = self.pw.pw_dir
        self.compiled = os.path.join(self.home, "tinyserv")
        self.root = os.path.join(self.home, "root")
        for dest in (READONLY, self.compiled):
            for part in ("bin", "lib"):
                shutil.copytree(os.path.join(REPO, part), os.path.join(dest, part),
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        common.run(["chown", "-R", "%s:%s" % (USER, USER), self.compiled])
        common.run(["chmod", "-R", "a+rX,a-w", READONLY])
        self.as_user([PYTHON, "-m", "compileall", "-q", os.path.join(self.compiled, "lib")])
        probe = self.as_user(["sh", "-c", "test -w %s/lib/tinyserv && echo writable || echo read-only" % READONLY])
        if probe.stdout.strip() != "read-only":
            raise BenchError("the read-only copy is writable by %s" % USER)
        self.deploy_app()

    def env(self):
        """A clean environment, as a login would give: no PYTHONDONTWRITEBYTECODE, no TINYSERV_REMOTE."""
        return {"HOME": self.home, "USER": USER, "LOGNAME": USER, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin",
                "TINYSERV_ROOT": self.root, "TINYSERV_START_PORT": str(self.start_port),
                "TINYSERV_HTTP_PORT": str(self.start_port + 8), "TINYSERV_HTTPS_PORT": str(self.start_port + 9),
                "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@tinyserv.invalid",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@tinyserv.invalid"}

    def user_argv(self, argv):
        """argv run as the throwaway user, in a clean environment."""
        return ["setpriv", "--reuid", USER, "--regid", USER, "--init-groups", "env", "-i",
                *["%s=%s" % kv for kv in sorted(self.env().items())], *argv]

    def as_user(self, argv, cwd=None, timeout=300):
        return common.run(self.user_argv(argv), cwd=cwd or self.home, timeout=timeout)

    def deploy_app(self):
        """One generic app, pushed with git in localhost mode (the compiled copy's client)."""
        repo = os.path.join(self.home, APP)
        script = ("set -e; mkdir %s; cd %s; git init -q -b main; printf 'web: python3 -S -m http.server $PORT\\n' "
                  "> Procfile; echo hello > index.html; git add -A; git commit -q -m one; %s apps:create %s; "
                  "git push -q tinyserv main") % (repo, repo, os.path.join(self.compiled, "bin", "tinyserv"), APP)
        self.as_user(["sh", "-c", script])

    def commands(self, words):
        """(read-only argv, compiled argv) for `tinyserv-remote WORDS`, both as the user."""
        return tuple(self.user_argv([os.path.join(tree, "bin", "tinyserv-remote"), *words])
                     for tree in (READONLY, self.compiled))

    def empty_cache(self):
        shutil.rmtree(os.path.join(self.home, ".cache", "tinyserv"), ignore_errors=True)

    def remove(self):
        if self.user_created:
            with open(os.devnull, "w") as null:
                subprocess.run(self.user_argv([os.path.join(self.compiled, "bin", "tinyserv-remote"), "shutdown"]),
                               stdout=null, stderr=null, timeout=120)
                # whatever of the user's is left (the app's web, nginx): by pid, never by name
                for line in subprocess.run(["pgrep", "-u", USER], capture_output=True, text=True).stdout.split():
                    with contextlib.suppress(OSError):
                        os.kill(int(line), 9)
                deadline = time.monotonic() + 10
                while subprocess.run(["pgrep", "-u", USER], stdout=null).returncode == 0:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
            subprocess.run(["userdel", "--remove", USER], capture_output=True)
        shutil.rmtree(READONLY, ignore_errors=True)


def timed(argv):
    started = time.perf_counter()
    common.run(argv, timeout=60)
    return time.perf_counter() - started


def pairs(setup, words, runs, cold):
    """Alternating read-only/compiled runs after one warm-up of each; seconds of each, and each pair's ratio."""
    readonly, compiled = setup.commands(words)
    timed(readonly)
    timed(compiled)
    a, b = [], []
    for _ in range(runs):
        if cold:
            setup.empty_cache()
        a.append(timed(readonly))
        b.append(timed(compiled))
    return {"readonly_s": common.stats(a), "compiled_s": common.stats(b),
            "ratio_median_of_pairs": round(common.median([x / y for x, y in zip(a, b)]), 3),
            "ratio_of_medians": round(common.median(a) / common.median(b), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--keep", action="store_true", help="leave the user and copies; print the commands")
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    began = time.monotonic()
    result = {"benchmark": "readonly_install", "runs": args.runs, "machine": common.machine(PYTHON),
              "python": common.version_of([PYTHON, "--version"]), "commands": {}}
    setup = Setup(common.free_block(31700, 10))
    try:
        setup.create()
        for name, words in (("apps", ["apps"]), ("ps", ["ps", APP])):
            result["commands"][name] = {"warm": pairs(setup, words, args.runs, cold=False),
                                        "cold": pairs(setup, words, args.runs, cold=True)}
            for kind in ("warm", "cold"):
                r = result["commands"][name][kind]
                print("  tinyserv-remote %-7s %s: read-only %.1f ms, compiled %.1f ms, ratio %.3f" % (
                    " ".join(words), kind, 1000 * r["readonly_s"]["median"], 1000 * r["compiled_s"]["median"],
                    r["ratio_median_of_pairs"]), flush=True)
        if args.keep:
            for words in (["apps"], ["ps", APP]):
                for argv in setup.commands(words):
                    print("  " + shlex.join(argv))
    finally:
        if not args.keep:
            setup.remove()
    return common.finish("readonly_install", result, began)


if __name__ == "__main__":
    common.run_main(main)
