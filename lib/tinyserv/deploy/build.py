"""Building a pushed commit into a fresh build directory (never the running one).

A build: extract the commit, read the Procfile, detect the runtime, install
dependencies (or reuse them when the manifests did not change), run the build
script. Any failure raises TinyservError and removes the half-made build.
"""

import hashlib
import os
import re
import select
import shutil
import subprocess
import time

from tinyserv.platform import appenv, privileged, procs
from tinyserv.deploy import runtimes, versions
from tinyserv.supervise import cron
from tinyserv.state import nofollow, store
from tinyserv.common import userfiles
from tinyserv.common.errors import TinyservError
from tinyserv.common.procfile import parse_procfile

RUNTIMES = (("node", "package.json"), ("python", "requirements.txt"), ("python", "uv.lock"))


def run_streamed(layout, app, argv, cwd, env, steps, what, watch=lambda: None):
    """Run argv as the app in a session of its own, indenting its output into the push; raise if it fails.

    watch() is called while it runs and may raise (the time limit, a client that went
    away): the command is then stopped with every process it started.
    """
    fd, write = os.pipe()
    try:
        proc = privileged.start(layout, app, argv, cwd, env, stdout=write)
    except (OSError, ValueError) as e:
        os.close(fd)
        raise TinyservError("%s failed: cannot run %s (%s)" % (what, argv[0], getattr(e, "strerror", e))) from None
    except BaseException:
        os.close(fd)  # the supervisor could not be asked (it says why)
        raise
    finally:
        os.close(write)
    try:
        _stream(proc, fd, steps, watch)
    except BaseException:
        proc.stop(env[procs.MARK])
        raise
    finally:
        os.close(fd)
    code = proc.wait()
    if code != 0:
        raise TinyservError("%s failed (exit %d)" % (what, code))


def _stream(proc, fd, steps, watch):
    """Copy proc's output (read from fd) into the push, line by line, until it has exited and said everything."""
    os.set_blocking(fd, False)
    rest = b""
    while True:
        watch()
        exited = proc.poll() is not None
        readable, _, _ = select.select([fd], [], [], 0 if exited else 0.2)
        chunk = _read(fd) if readable else None
        if chunk:
            lines, rest = split_lines(rest + chunk)
            for line in lines:
                steps.detail(line.decode("utf-8", "replace").rstrip())
        elif chunk == b"" or exited:
            break  # end of output, or it exited and what is left holding its output is a daemon
    if rest:
        steps.detail(rest.decode("utf-8", "replace").rstrip())


def _read(fd):
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return None


def split_lines(data):
    """(whole lines, unfinished rest) of data; lines are cut at MAX_LINE bytes, as Heroku cuts log lines."""
    *lines, rest = data.split(b"\n")
    if len(rest) > MAX_LINE:
        lines.append(rest)
        rest = b""
    return [l if len(l) <= MAX_LINE else l[:MAX_LINE] + CUT for l in lines], rest


MAX_LINE = 10000
CUT = b" [cut at 10000 bytes]"
MAX_FILE = 1024 * 1024  # Procfile, package.json, requirements.txt, app.json
MAX_LOCKFILE = 32 * 1024 * 1024


def read_pushed(build_dir, name, limit=MAX_FILE):
    """The bytes of a file tinyserv reads from a push, or None when the push has none.

    It must be a regular file inside the pushed tree (a symlink may point to one) and at
    most limit bytes: a Procfile linked to /dev/zero or /etc/passwd rejects the push. The app's
    user may change the build directory meanwhile (its running web, in root mode): each name on
    the way is opened once, never followed out of the tree, and the file read from that descriptor.
    """
    top = nofollow.open_dir(build_dir)  # builds/ is the deploy user's: the build directory itself stays put
    if top is None:
        return None
    try:
        found = nofollow.read_beneath(top, name, limit)
    except nofollow.Outside:
        raise TinyservError("%s points outside the pushed tree: commit the file itself" % name) from None
    except OSError as e:
        raise TinyservError("cannot read %s: %s" % (name, e.strerror)) from None
    finally:
        os.close(top)
    return None if found is None else found[1]


def read_pushed_text(build_dir, name, limit=MAX_FILE):
    """read_pushed, decoded as UTF-8 (None when absent)."""
    data = read_pushed(build_dir, name, limit)
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        raise TinyservError("%s is not UTF-8 text" % name) from None


def new_build_id(layout, app, commit):
    """A unique, sortable build directory name: time and short commit."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    build_id = "%s-%s" % (stamp, commit[:7])
    n = 1
    while os.path.exists(layout.build_dir(app, build_id)):
        n += 1
        build_id = "%s-%s-%d" % (stamp, commit[:7], n)
    return build_id


def extract(layout, app, commit, dest, git_env, mark):
    """Write the commit's tree into dest (git archive: the bare repo's HEAD is never moved).

    tar writes the files as the app (its own user in root mode): they are the app's to change while it builds.
    """
    import tempfile
    os.makedirs(dest)
    privileged.claim(layout, app, dest)
    env = dict(git_env, GIT_DIR=layout.repo(app))
    env.pop("GIT_WORK_TREE", None)
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with tempfile.TemporaryFile() as errors:
        try:
            untar = privileged.start(layout, app, ["tar", "-x", "-C", dest], dest,
                                     {"PATH": appenv.BASE_PATH, "LANG": "C.UTF-8", procs.MARK: mark},
                                     stdin=archive.stdout.fileno(), stdout=errors.fileno())
        finally:
            archive.stdout.close()
        code = untar.wait()
        err = archive.stderr.read().decode(errors="replace").strip()
        if archive.wait() != 0 or code != 0:
            errors.seek(0)
            raise TinyservError("cannot extract %s: %s" % (commit[:7], err or errors.read().decode(
                errors="replace").strip()))


def read_procfile(build_dir):
    """The build's Procfile as {type: command}; it must declare web."""
    text = read_pushed_text(build_dir, "Procfile", 64 * 1024)
    if text is None:
        raise TinyservError("no Procfile: add one with a web process, e.g. 'web: npm start'")
    types = parse_procfile(text)
    if "web" not in types:
        raise TinyservError("the Procfile declares no web process: add a line like 'web: node index.js'")
    return types


def read_healthcheck(build_dir):
    """The path web must answer with 2xx/3xx before it counts as up: app.json's healthchecks.web (dokku's
    convention: a list of checks; the first with a path that is not a liveness check), or None."""
    text = read_pushed_text(build_dir, "app.json")
    if text is None:
        return None
    manifest = userfiles.parse_json(text, "app.json")
    checks = (manifest.get("healthchecks") or {}).get("web") if isinstance(manifest, dict) else None
    if checks is None:
        return None
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        raise TinyservError("app.json: healthchecks.web must be a list of checks like "
                            '{"type": "startup", "path": "/health"}')
    for check in checks:
        if check.get("type") != "liveness" and "path" in check:
            path = check["path"]
            if not isinstance(path, str) or not HEALTH_PATH.match(path):
                raise TinyservError("app.json: the health check path %r must start with / and hold no spaces "
                                    "(at most 1000 characters)" % (path,))
            return path
    return None


HEALTH_PATH = re.compile(r"/[!-~]{0,999}\Z")


def detect_runtime(build_dir, procfile):
    """'node', 'python' or 'generic' (a Procfile alone)."""
    for runtime, manifest in RUNTIMES:
        if read_pushed(build_dir, manifest) is not None:
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
        h.update(b"\0" + name.encode() + b"\0")
        h.update(read_pushed(build_dir, name, MAX_LOCKFILE) or b"")
    return h.hexdigest()[:16]


NODE_MANIFESTS = ["package.json", "package-lock.json", "yarn.lock", "pnpm-lock.yaml"]


def install_argv(manager, npm_lock):
    """The command that installs a node app's dependencies with its package manager, from its lockfile."""
    if manager == "npm":
        return ["npm", "ci"] if npm_lock else ["npm", "install"]
    if manager == "yarn":
        return ["yarn", "install", "--frozen-lockfile", "--non-interactive"]
    return ["pnpm", "install", "--frozen-lockfile"]


PYTHON_MANIFESTS = ["requirements.txt", "uv.lock", "pyproject.toml", ".python-version", "runtime.txt"]


def python_install_steps(interpreter, venv, uv, locked):
    """[(argv, what)] that make venv with interpreter and install the app's dependencies into it."""
    if locked:
        return [([uv, "sync", "--frozen", "--no-dev", "--python", interpreter], "uv sync --frozen")]
    if uv:
        return [([uv, "venv", "--quiet", "--python", interpreter, venv], "venv"),
                ([uv, "pip", "install", "--python", os.path.join(venv, "bin", "python"), "-r", "requirements.txt"],
                 "uv pip install -r requirements.txt")]
    return [([interpreter, "-m", "venv", venv], "venv"),
            ([os.path.join(venv, "bin", "pip"), "install", "--disable-pip-version-check", "-r", "requirements.txt"],
             "pip install -r requirements.txt")]


def is_django(build_dir):
    """A Django app: manage.py at the top and django among its requirements (requirements.txt, uv.lock or
    pyproject.toml)."""
    if read_pushed(build_dir, "manage.py") is None:
        return False
    pattern = re.compile(rb"^\s*(name\s*=\s*)?[\"']?django\b", re.IGNORECASE | re.MULTILINE)
    return any(pattern.search(read_pushed(build_dir, name, MAX_LOCKFILE) or b"")
               for name in ("requirements.txt", "uv.lock", "pyproject.toml"))


def read_package_json(build_dir):
    package = userfiles.parse_json(read_pushed_text(build_dir, "package.json"), "package.json")
    if not isinstance(package, dict):
        raise TinyservError("package.json is not a JSON object")
    return package


class Builder:
    """Builds one commit of one app, printing Heroku-style steps."""

    def __init__(self, layout, app, steps, config, watch=lambda: None):
        self.layout = layout
        self.app = app
        self.steps = steps
        self.config = config
        self.watch = watch  # raises when the build must stop (time limit, client gone)

    def build(self, commit, git_env):
        """Make a complete build directory for commit; return its metadata."""
        build_id = new_build_id(self.layout, self.app, commit)
        build_dir = self.layout.build_dir(self.app, build_id)
        self.mark = self.layout.mark(self.app, "build.%s" % build_id)
        try:
            extract(self.layout, self.app, commit, build_dir, git_env, self.mark)
            meta = {"id": build_id, "commit": commit, "path": [], "env": {}}
            meta["procfile"] = read_procfile(build_dir)
            meta["cron"] = cron.read_jobs(read_pushed_text(build_dir, "app.json"))
            cron.check_names(meta["cron"], meta["procfile"])
            health = read_healthcheck(build_dir)
            if health:
                meta["healthcheck"] = health
            meta["runtime"] = detect_runtime(build_dir, meta["procfile"])
            self.steps.step({"node": "Node.js app detected", "python": "Python app detected",
                             "generic": "Generic app detected (Procfile only)"}[meta["runtime"]])
            getattr(self, "install_" + meta["runtime"])(build_dir, meta)
            self.steps.step("Discovering process types")
            self.steps.detail("Procfile declares types -> %s" % ", ".join(meta["procfile"]))
            if meta["cron"]:
                self.steps.detail("app.json declares cron jobs -> %s" % ", ".join(
                    "%s (%s)" % (cron.job_name(n), job["schedule"]) for n, job in enumerate(meta["cron"], 1)))
            store.write_json(self.layout.build_meta(self.app, build_id), meta, mode=0o644)
            return meta
        except BaseException:
            privileged.remove(self.layout, self.app, build_dir)
            raise
        finally:
            # What the build started and left running (a postinstall's daemon) ends with it.
            procs.stop([], grace=5, what="stopping what the build left running", marks=[self.mark])

    def env(self, build_dir, meta):
        """What build commands run with: the app's base environment and its config vars."""
        env = appenv.base_env(build_dir, meta, self.mark)
        env.update(self.config)
        return env

    def deps_dir(self, key):
        return self.layout.app_file(self.app, "deps", key)

    def cached(self, key):
        """Is a complete dependency install with this key on disk?"""
        return os.path.exists(os.path.join(self.deps_dir(key), ".complete"))

    def fresh_deps_dir(self, key):
        """An empty dependency directory for key, the app's own to install into."""
        privileged.remove(self.layout, self.app, self.deps_dir(key))
        os.makedirs(self.deps_dir(key))
        privileged.claim(self.layout, self.app, self.deps_dir(key))

    def run(self, argv, build_dir, env, what):
        """One build command, as the app, its output in the push."""
        run_streamed(self.layout, self.app, argv, build_dir, env, self.steps, what, self.watch)

    def mark_complete(self, key):
        store.write_atomic(os.path.join(self.deps_dir(key), ".complete"), "", 0o644)

    def install_generic(self, build_dir, meta):
        pass

    def install_node(self, build_dir, meta):
        """The node (and npm, yarn or pnpm) the app asks for, its dependencies (reused when the manifests, the
        runtime and the lockfile kind did not change), then its build script."""
        package = read_package_json(build_dir)
        manager = versions.package_manager(lambda name: read_pushed(build_dir, name, MAX_LOCKFILE) is not None)
        tools = runtimes.node_tools(self.layout, package, manager, lambda name: read_pushed_text(build_dir, name),
                                    self.steps)
        self.uses(meta, tools)
        meta["path"] = ["node_modules/.bin"] + [r.bin for r in tools if r.bin]
        key = "node-" + digest(build_dir, NODE_MANIFESTS, "%s %s" % (manager, runtimes.describe(tools)))
        meta["deps"] = key
        target = os.path.join(self.deps_dir(key), "node_modules")
        if self.cached(key):
            self.steps.step("Reusing dependencies (manifests, lockfile and runtime unchanged)")
        else:
            argv = install_argv(manager, read_pushed(build_dir, "package-lock.json", MAX_LOCKFILE) is not None)
            self.steps.step("Installing dependencies (%s)" % " ".join(argv))
            self.run(argv, build_dir, self.env(build_dir, meta), " ".join(argv))
            self.fresh_deps_dir(key)
            installed = os.path.join(build_dir, "node_modules")
            if os.path.isdir(installed) and not os.path.islink(installed):
                os.rename(installed, target)
            else:
                os.makedirs(target)
            self.mark_complete(key)
        _replace_with_link(os.path.join(build_dir, "node_modules"), target)
        if "build" in (package.get("scripts") or {}):
            self.steps.step("Running build script (%s run build)" % manager)
            self.run([manager, "run", "build"], build_dir, self.env(build_dir, meta), "%s run build" % manager)

    def uses(self, meta, tools):
        """Record the runtimes a build uses (apps:info shows them; pruning spares them) and say which."""
        meta["runtimes"] = [r.entry for r in tools if r.entry]
        meta["runtime_version"] = runtimes.describe(tools)
        self.steps.detail("using %s" % meta["runtime_version"])

    def install_python(self, build_dir, meta):
        """The Python the app asks for and a virtualenv of its dependencies (uv when the server has it, else
        pip), reused when the manifests and the interpreter did not change; then Django's collectstatic."""
        read = lambda name: read_pushed_text(build_dir, name)
        uv = runtimes.uv_path(self.layout)
        python = runtimes.python(self.layout, versions.python_request(read), uv, self.steps)
        locked = read_pushed(build_dir, "uv.lock", MAX_LOCKFILE) is not None
        if locked and not uv:
            raise TinyservError("this app has a uv.lock and the server has no uv: install it with "
                                "tinyserv server:install (or commit a requirements.txt: uv export > requirements.txt)")
        self.uses(meta, [python._replace(version=python.version + (" with uv" if uv else " with pip"))])
        key = "python-" + digest(build_dir, PYTHON_MANIFESTS, "%s %s %s" % (python.bin, python.version, bool(uv)))
        venv = os.path.join(self.deps_dir(key), "venv")
        meta.update(deps=key, path=[os.path.join(venv, "bin")], env={"VIRTUAL_ENV": venv})
        if self.cached(key):
            self.steps.step("Reusing virtualenv (requirements and Python unchanged)")
        else:
            self.fresh_deps_dir(key)
            env = self.env(build_dir, meta)
            if uv:  # uv finds nothing but the interpreter named, downloads none, keeps the venv where we say
                env.update(runtimes.uv_settings(self.layout), UV_PROJECT_ENVIRONMENT=venv, UV_PYTHON_DOWNLOADS="never")
            try:
                for argv, what in python_install_steps(python.bin, venv, uv, locked):
                    if what != "venv":
                        self.steps.step("Installing dependencies (%s)" % what)
                    self.run(argv, build_dir, env, what)
            except TinyservError:
                privileged.remove(self.layout, self.app, self.deps_dir(key))
                raise
            self.mark_complete(key)
        if is_django(build_dir) and self.config.get("DISABLE_COLLECTSTATIC") != "1":
            self.steps.step("Running collectstatic (Django; DISABLE_COLLECTSTATIC=1 turns it off)")
            self.run([os.path.join(venv, "bin", "python"), "manage.py", "collectstatic", "--noinput"], build_dir,
                     self.env(build_dir, meta), "manage.py collectstatic")


def _replace_with_link(path, target):
    """Make path a symlink to target, replacing whatever was there."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
    os.symlink(target, path)


def remove(layout, app, build_id):
    """Delete one build (a deploy that failed after building)."""
    privileged.remove(layout, app, layout.build_dir(app, build_id))
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
            privileged.remove(layout, app, os.path.join(deps_dir, key))
    return doomed
