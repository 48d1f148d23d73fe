"""The image a swarm app runs: built with the app's own Dockerfile, or with one written here for its runtime.

A generated Dockerfile starts from the base image the server names per runtime (TINYSERV_SWARM_BASE_NODE,
_PYTHON, _GENERIC), copies the dependency manifests and installs them before the code, so a code-only push reuses
the engine's cached dependency layer. When the app asks for a node or python version the base image's does not
satisfy, that version (chosen as a local build chooses it, from the server's runtime cache) is copied in and put
first on PATH. With TINYSERV_REGISTRY the image is pushed there, so other nodes can pull it.
"""

import collections
import os
import shutil

from tinyserv.state import store
from tinyserv.platform import docker, procs
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError

CONTAINER_PORT = 5000  # PORT inside every web task; the engine publishes it on a port of its own per task
DOCKERFILE = ".tinyserv.Dockerfile"  # written next to the code when the app has no Dockerfile
RUNTIME_DIR = "/opt/tinyserv-runtime"  # where a generated image keeps the runtime version the app asks for


def dockerfile(runtime, base, has_lock=False, build_script=False, copied=None):
    """The Dockerfile for an app without one: dependencies first (their layer is cached), then the code.

    copied: the directory to put on PATH inside a runtime the context holds in runtime/ (the version the app asks
    for, from the server's cache, when the base image's does not fit); the code is then in the context's app/.
    """
    code = "app/" if copied else ""
    lines = ["# Written by tinyserv for a %s app (commit a Dockerfile of your own to replace it)." % runtime,
             "FROM %s" % base]
    if copied:
        lines += ["COPY runtime %s" % RUNTIME_DIR, "ENV PATH=%s:$PATH" % os.path.join(RUNTIME_DIR, copied)]
    lines += ["WORKDIR /app", "ENV PORT=%d" % CONTAINER_PORT]
    if runtime == "node":
        lines += ["COPY %spackage.json %s./" % (code, "%spackage-lock.json " % code if has_lock else ""),
                  "RUN %s" % ("npm ci" if has_lock else "npm install"),
                  "ENV PATH=/app/node_modules/.bin:$PATH"]
    elif runtime == "python":
        lines += ["COPY %srequirements.txt ./" % code,
                  "RUN python3 -m venv /venv && /venv/bin/pip install --disable-pip-version-check "
                  "-r requirements.txt",
                  "ENV PATH=/venv/bin:$PATH VIRTUAL_ENV=/venv"]
    lines.append("COPY %s ." % (code or "."))
    if build_script:
        lines.append("RUN npm run build")
    return "\n".join(lines) + "\n"


def base_image(runtime, environ=os.environ):
    """The base image of a generated Dockerfile (TINYSERV_SWARM_BASE_NODE, _PYTHON, _GENERIC)."""
    default = {"node": "node:20-bookworm-slim", "python": "python:3.11-slim-bookworm",
               "generic": "debian:bookworm-slim"}[runtime]
    return environ.get("TINYSERV_SWARM_BASE_" + runtime.upper()) or default


def build(layout, app, build_dir, meta, steps, watch):
    """docker build with the app's Dockerfile or a generated one; push it when there is a registry."""
    from tinyserv.deploy import build as builds
    context = build_dir
    try:
        if builds.read_pushed(build_dir, "Dockerfile") is not None:
            steps.step("Dockerfile found: building the image with it")
            path = os.path.join(build_dir, "Dockerfile")
        else:
            runtime = meta["runtime"]
            scripts = builds.read_package_json(build_dir).get("scripts") or {} if runtime == "node" else {}
            base = base_image(runtime)
            copied = image_runtime(layout, build_dir, runtime, base, steps)
            steps.step("%s app detected: building an image on %s%s" % (
                runtime.capitalize(), base, " with %s %s from the server's runtime cache" % (
                    runtime, copied.version) if copied else ""))
            if copied:
                meta["runtime_version"] = "%s %s" % (runtime, copied.version)
                context = assemble(layout, app, build_dir, copied.home)
            path = os.path.join(context, DOCKERFILE)
            store.write_atomic(path, dockerfile(runtime, base, os.path.exists(os.path.join(
                build_dir, "package-lock.json")), "build" in scripts, copied and copied.bin), 0o644)
        words = ["build", "--pull=false", "-f", path, "-t", meta["image"]]
        for key, value in sorted(docker.labels(layout.tag, app).items()):
            words += ["--label", "%s=%s" % (key, value)]
        env = dict(docker.client_env({}), **{procs.MARK: layout.mark(app, "build.%s" % meta["id"])})
        builds.run_streamed(layout, app, ["docker", *words, context], build_dir, env, steps, "docker build", watch)
    finally:
        if context != build_dir:
            shutil.rmtree(context, ignore_errors=True)
    if settings.registry():
        steps.step("Pushing %s" % meta["image"])
        builds.run_streamed(layout, app, ["docker", "push", meta["image"]], build_dir, env, steps, "docker push",
                            watch)


# A runtime copied into a generated image: its directory on the server, the directory (relative to it) that goes
# on PATH, its version.
Copied = collections.namedtuple("Copied", "home bin version")


def image_runtime(layout, build_dir, runtime, base, steps):
    """Copied of the node or python the app asks for (chosen as a local build chooses it) when the base image's
    does not satisfy the request; None when the app asks for none or the base image's fits."""
    from tinyserv.deploy import build as builds, runtimes, versions
    read = lambda name: builds.read_pushed_text(build_dir, name)  # noqa: E731
    if runtime == "node":
        request = versions.node_request(builds.read_package_json(build_dir), read)
        if request is None or request.spec is None:
            return None
        have = base_version(base, ["node", "--version"])
        if have and versions.satisfies(have, request.spec):
            return None
        found = runtimes.ensure(layout, "node", runtimes.node_package(), request, steps)
        return Copied(runtimes.runtimes_dir(layout, found.entry), "node_modules/.bin", found.version)
    if runtime == "python":
        request = versions.python_request(read)
        if request is None:
            return None
        have = base_version(base, ["python3", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        if have and versions.python_satisfies(tuple(int(n) for n in have.split(".")), request.spec):
            return None
        found = runtimes.python(layout, request, runtimes.uv_path(layout), steps)
        if not found.entry:  # a Python of the server's packages: its files are all over /usr, not one directory
            raise TinyservError("this app asks for Python %s (%s), which %s has not got (python3 %s) and the server "
                                "has only as a system package: give the server uv (tinyserv server:install) so it "
                                "can install one to copy into the image, or name a base image that has it "
                                "(TINYSERV_SWARM_BASE_PYTHON)" % (request.spec, request.source, base, have or "?"))
        return Copied(os.path.dirname(os.path.dirname(os.path.realpath(found.bin))), "bin", found.version)
    return None


def base_version(image, argv):
    """The version a base image's runtime says it is (`docker run --rm IMAGE ...`), or None."""
    out = docker.run(["run", "--rm", "--entrypoint", argv[0], image, *argv[1:]], check=False)
    return (out.strip().splitlines() or [""])[-1].lstrip("v") or None


def assemble(layout, app, build_dir, home):
    """A build context of app/ (the code) and runtime/ (home), hard-linked where the disk allows: the runtime
    must not land in the code's layer nor the code's COPY in the runtime's."""
    import tempfile
    context = tempfile.mkdtemp(prefix=".image-", dir=layout.app_dir(app))
    try:
        link_tree(build_dir, os.path.join(context, "app"))
        link_tree(home, os.path.join(context, "runtime"))
    except OSError as e:
        shutil.rmtree(context, ignore_errors=True)
        raise TinyservError("cannot prepare the image's build context: %s" % e) from None
    return context


def link_tree(source, target):
    """Copy a tree (symlinks kept), each file a hard link when source and target share a disk."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, target, symlinks=True, copy_function=link)
