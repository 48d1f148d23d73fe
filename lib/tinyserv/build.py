"""Building a pushed commit into a fresh build directory (never the running one).

A build: extract the commit, read the Procfile, detect the runtime, install
dependencies (or reuse them when the manifests did not change), run the build
script. Any failure raises TinyservError and removes the half-made build.
"""

import collections
import hashlib
import json
import os
import shutil
import subprocess
import time

from . import appenv, store
from .errors import TinyservError
from .procfile import parse_procfile

RUNTIMES = (("node", "package.json"), ("python", "requirements.txt"))


def run_streamed(argv, cwd, env, steps, what):
    """Run argv, indenting its output into the push; raise with its last lines on failure."""
    last = collections.deque(maxlen=20)
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise TinyservError("%s failed: cannot run %s (%s)" % (what, argv[0], e.strerror)) from e
    with proc.stdout:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            last.append(line)
            steps.detail(line)
    if proc.wait() != 0:
        raise TinyservError("%s failed (exit %d)" % (what, proc.returncode))


def new_build_id(layout, app, commit):
    """A unique, sortable build directory name: time and short commit."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    build_id = "%s-%s" % (stamp, commit[:7])
    n = 1
    while os.path.exists(layout.build_dir(app, build_id)):
        n += 1
        build_id = "%s-%s-%d" % (stamp, commit[:7], n)
    return build_id


def extract(repo, commit, dest, git_env):
    """Write the commit's tree into dest (git archive: the bare repo's HEAD is never moved)."""
    os.makedirs(dest)
    env = dict(git_env, GIT_DIR=repo)
    env.pop("GIT_WORK_TREE", None)
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout,
                           stderr=subprocess.PIPE)
    archive.stdout.close()
    err = archive.stderr.read().decode(errors="replace").strip()
    if archive.wait() != 0 or untar.returncode != 0:
        raise TinyservError("cannot extract %s: %s" % (commit[:7], err or untar.stderr.decode().strip()))


def read_procfile(build_dir):
    """The build's Procfile as {type: command}; it must declare web."""
    try:
        with open(os.path.join(build_dir, "Procfile"), encoding="utf-8") as f:
            types = parse_procfile(f.read())
    except FileNotFoundError:
        raise TinyservError("no Procfile: add one with a web process, e.g. 'web: npm start'") from None
    except UnicodeDecodeError:
        raise TinyservError("the Procfile is not UTF-8 text") from None
    if "web" not in types:
        raise TinyservError("the Procfile declares no web process: add a line like 'web: node index.js'")
    return types


def detect_runtime(build_dir, procfile):
    """'node', 'python' or 'generic' (a Procfile alone)."""
    for runtime, manifest in RUNTIMES:
        if os.path.exists(os.path.join(build_dir, manifest)):
            return runtime
    for command in procfile.values():
        if command.split()[0] in ("npm", "node", "npx", "yarn"):
            raise TinyservError("the Procfile runs %r but there is no package.json: "
                                "add one (npm init -y) and commit it" % command.split()[0])
    return "generic"


def digest(build_dir, names, extra):
    """A hash of the dependency manifests that exist, plus extra (a runtime version)."""
    h = hashlib.sha256(extra.encode())
    for name in names:
        path = os.path.join(build_dir, name)
        h.update(b"\0" + name.encode() + b"\0")
        if os.path.exists(path):
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def tool_version(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
    except OSError:
        raise TinyservError("%s is not installed on the server" % argv[0]) from None


def read_package_json(build_dir):
    try:
        with open(os.path.join(build_dir, "package.json"), encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise TinyservError("package.json is not valid JSON: %s" % e) from None


class Builder:
    """Builds one commit of one app, printing Heroku-style steps."""

    def __init__(self, layout, app, steps, config):
        self.layout = layout
        self.app = app
        self.steps = steps
        self.config = config

    def build(self, commit, git_env):
        """Make a complete build directory for commit; return its metadata."""
        build_id = new_build_id(self.layout, self.app, commit)
        build_dir = self.layout.build_dir(self.app, build_id)
        try:
            extract(self.layout.repo(self.app), commit, build_dir, git_env)
            meta = {"id": build_id, "commit": commit, "path": [], "env": {}}
            meta["procfile"] = read_procfile(build_dir)
            meta["runtime"] = detect_runtime(build_dir, meta["procfile"])
            self.steps.step({"node": "Node.js app detected", "python": "Python app detected",
                             "generic": "Generic app detected (Procfile only)"}[meta["runtime"]])
            getattr(self, "install_" + meta["runtime"])(build_dir, meta)
            self.steps.step("Discovering process types")
            self.steps.detail("Procfile declares types -> %s" % ", ".join(meta["procfile"]))
            store.write_json(self.layout.build_meta(self.app, build_id), meta, mode=0o644)
            return meta
        except BaseException:
            shutil.rmtree(build_dir, ignore_errors=True)
            raise

    def env(self, build_dir, meta):
        """What build commands run with: the app's base environment and its config vars."""
        env = appenv.base_env(build_dir, meta, self.layout.mark(self.app, "build." + meta["id"]))
        env.update(self.config)
        return env

    def deps_dir(self, key):
        return self.layout.app_file(self.app, "deps", key)

    def cached(self, key):
        """Is a complete dependency install with this key on disk?"""
        return os.path.exists(os.path.join(self.deps_dir(key), ".complete"))

    def mark_complete(self, key):
        store.write_atomic(os.path.join(self.deps_dir(key), ".complete"), "", 0o644)

    def install_generic(self, build_dir, meta):
        pass

    def install_node(self, build_dir, meta):
        """npm ci (lockfile) or npm install, reused when package*.json did not change; then build."""
        package = read_package_json(build_dir)
        meta["path"] = ["node_modules/.bin"]
        key = "node-" + digest(build_dir, ["package.json", "package-lock.json"], tool_version(["node", "--version"]))
        meta["deps"] = key
        target = os.path.join(self.deps_dir(key), "node_modules")
        if self.cached(key):
            self.steps.step("Reusing dependencies (package.json and package-lock.json unchanged)")
        else:
            lock = os.path.exists(os.path.join(build_dir, "package-lock.json"))
            argv = ["npm", "ci"] if lock else ["npm", "install"]
            self.steps.step("Installing dependencies (%s)" % " ".join(argv))
            run_streamed(argv, build_dir, self.env(build_dir, meta), self.steps, " ".join(argv))
            shutil.rmtree(self.deps_dir(key), ignore_errors=True)
            os.makedirs(self.deps_dir(key))
            installed = os.path.join(build_dir, "node_modules")
            if os.path.isdir(installed) and not os.path.islink(installed):
                os.rename(installed, target)
            else:
                os.makedirs(target)
            self.mark_complete(key)
        _replace_with_link(os.path.join(build_dir, "node_modules"), target)
        if "build" in (package.get("scripts") or {}):
            self.steps.step("Running build script (npm run build)")
            run_streamed(["npm", "run", "build"], build_dir, self.env(build_dir, meta), self.steps, "npm run build")

    def install_python(self, build_dir, meta):
        """A virtualenv per requirements.txt, reused when requirements.txt did not change."""
        key = "python-" + digest(build_dir, ["requirements.txt"], tool_version(["python3", "--version"]))
        venv = os.path.join(self.deps_dir(key), "venv")
        meta.update(deps=key, path=[os.path.join(venv, "bin")], env={"VIRTUAL_ENV": venv})
        if self.cached(key):
            self.steps.step("Reusing virtualenv (requirements.txt unchanged)")
            return
        shutil.rmtree(self.deps_dir(key), ignore_errors=True)
        self.steps.step("Installing dependencies (pip install -r requirements.txt)")
        env = self.env(build_dir, meta)
        try:
            run_streamed(["python3", "-m", "venv", venv], build_dir, env, self.steps, "creating the virtualenv")
            run_streamed([os.path.join(venv, "bin", "pip"), "install", "--disable-pip-version-check",
                          "-r", "requirements.txt"], build_dir, env, self.steps, "pip install")
        except TinyservError:
            shutil.rmtree(self.deps_dir(key), ignore_errors=True)
            raise
        self.mark_complete(key)


def _replace_with_link(path, target):
    """Make path a symlink to target, replacing whatever was there."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
    os.symlink(target, path)


def remove(layout, app, build_id):
    """Delete one build (a deploy that failed after building)."""
    shutil.rmtree(layout.build_dir(app, build_id), ignore_errors=True)
    try:
        os.unlink(layout.build_meta(app, build_id))
    except FileNotFoundError:
        pass


def prune(layout, app, keep, protect):
    """Delete all but the newest `keep` builds (never those in protect) and unused deps."""
    builds_dir = layout.app_file(app, "builds")
    ids = sorted(n[:-5] for n in os.listdir(builds_dir) if n.endswith(".json"))
    doomed = [b for b in ids[:-keep] if b not in protect] if keep > 0 else []
    for build_id in doomed:
        remove(layout, app, build_id)
    used = {(store.read_json(layout.build_meta(app, b)) or {}).get("deps") for b in ids if b not in doomed}
    deps_dir = layout.app_file(app, "deps")
    for key in os.listdir(deps_dir) if os.path.isdir(deps_dir) else []:
        if key not in used:
            shutil.rmtree(os.path.join(deps_dir, key), ignore_errors=True)
    return doomed
