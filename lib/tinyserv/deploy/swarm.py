"""Docker Swarm as a second scheduler: the same push and commands, the app's processes placed by Swarm.

Design (docs/swarm.md tells the user's side):

- The scheduler is per app: apps/<app>/scheduler.json says "local" (the default, unchanged) or
  "swarm"; `apps:create --scheduler` and `scheduler:set` write it, TINYSERV_SCHEDULER is the server's
  default for new apps, `apps:info` shows it. A swarm app needs the front door (nginx).
- A push builds an image instead of a build directory's dependencies: the app's own Dockerfile, else
  one written here per runtime on the base image the server names (TINYSERV_SWARM_BASE_NODE, _PYTHON,
  _GENERIC), with the dependency manifests copied and installed before the code, so a code-only push
  reuses the engine's cached dependency layer. With TINYSERV_REGISTRY the image is pushed there.
- A rollout is one set of services, one per Procfile process type, named APP-ROLLOUT-TYPE and labelled
  with this root's tag, the app, the rollout and the type; replicas = the formation, environment =
  config vars + PORT, web published in host mode on a port the engine picks per task (the ingress mesh
  is not used). Every change that makes a release (push, config, rollback) starts a new rollout next to
  the old one, boot-checks that its web tasks answer, records the release (history.json's
  "swarm": {"rollout", "image"}), lets the front door switch (new tasks primary, old ones backup) and
  only then removes the old services. Undo is the same in reverse: nothing is switched before it answers.
  Scaling updates the replicas of the current rollout; a restart is a new rollout of the current release
  (same image and config, no new release), switched like a config change.
- The release phase is a one-off container of the new image (`docker run --rm`) that gates the release.
- The front door learns where the tasks listen from frontdoor/swarm.py (the supervisor's one watcher).
- Refused in one line: app.json cron and a data directory that holds files (no volume driver is chosen:
  never silently local to one node); swarm tasks get no TINYSERV_DATA_DIR.
"""

import collections
import os
import random
import re
import shutil
import time

from tinyserv.state import appstate, logs, releases, store
from tinyserv.platform import docker, procs
from tinyserv.frontdoor import router
from tinyserv.platform import control
from tinyserv.supervise import cron
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.common.procfile import process_types

SCHEDULERS = ("local", "swarm")
CONTAINER_PORT = 5000  # PORT inside every web task; the engine publishes it on a port of its own per task
SHOWN_LINES = 15
DOCKERFILE = ".tinyserv.Dockerfile"  # written next to the code when the app has no Dockerfile
RUNTIME_DIR = "/opt/tinyserv-runtime"  # where a generated image keeps the runtime version the app asks for

Started = collections.namedtuple("Started", "rollout image services ports")


# --- the app's scheduler --------------------------------------------------------------------------

def scheduler(layout, app):
    """'local' or 'swarm'."""
    return appstate.scheduler(layout, app)


def scheduled(layout, app):
    """Does Swarm run this app's processes?"""
    return layout.exists(app) and scheduler(layout, app) == "swarm"


def check_scheduler(name):
    if name not in SCHEDULERS:
        raise TinyservError("unknown scheduler %r: use local or swarm" % (name,))
    return name


def refuse_data(layout, app):
    """A swarm app's tasks have no TINYSERV_DATA_DIR: refuse when the app keeps files in its data directory."""
    data = layout.data_dir(app)
    if os.path.isdir(data) and os.listdir(data):
        raise TinyservError("%s keeps files in its data directory (TINYSERV_DATA_DIR), which swarm tasks on other "
                            "nodes cannot see: move them to an add-on first (no volume driver is chosen yet)" % app)


def check_rollback(layout, app, target):
    """A rollback stays on the app's scheduler: a swarm app runs images, a local app build directories."""
    imaged = "image" in appstate.build_meta(layout, app, target["build"])
    if imaged != scheduled(layout, app):
        was, now = ("swarm", "local") if imaged else ("local", "swarm")
        raise TinyservError("v%d ran on the %s scheduler and %s now runs on the %s one: its build cannot run here; "
                            "push again, or move the app back first with 'tinyserv scheduler:set %s'" % (
                                target["version"], was, app, now, was))


# --- names ----------------------------------------------------------------------------------------

def new_rollout():
    """A short id of one set of services: time-ordered, with a random tail (no two pushes share one)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    n, word = int(time.time() * 100) % 36 ** 6, ""
    for _ in range(6):
        n, d = divmod(n, 36)
        word = digits[d] + word
    return word + "".join(random.choice(digits) for _ in range(2))


def service_name(app, rollout, ptype):
    """APP-ROLLOUT-TYPE (lower-case: the engine's names are DNS labels); refused past the engine's 63."""
    name = "%s-%s-%s" % (app, rollout, ptype.lower().replace("_", "-"))
    if len(name) > 63:
        raise TinyservError("process type %r is too long for a swarm service name (at most %d characters)" % (
            ptype, 63 - len(app) - len(rollout) - 2))
    return name


def image_name(layout, app, build_id, registry=None):
    """tinyserv-TAG-APP:BUILD, under the registry when there is one."""
    repo = "tinyserv-%s-%s" % (layout.tag, app)
    return "%s%s:%s" % (registry.rstrip("/") + "/" if registry else "", repo, build_id.lower())


# --- the image --------------------------------------------------------------------------------------

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


def build(layout, app, commit, steps, config, watch, git_env):
    """Extract the commit, read what it declares, build its image (pushed when there is a registry): meta."""
    from tinyserv.deploy import build as builds
    build_id = builds.new_build_id(layout, app, commit)
    build_dir = layout.build_dir(app, build_id)
    builds.extract(layout, app, commit, build_dir, git_env, layout.mark(app, "build.%s" % build_id))
    try:
        meta = {"id": build_id, "commit": commit, "path": [], "env": {}}
        meta["procfile"] = builds.read_procfile(build_dir)
        if cron.read_jobs(builds.read_pushed_text(build_dir, "app.json")):
            raise TinyservError("app.json declares cron jobs, which swarm apps cannot run yet (no volume driver or "
                                "job placement is chosen): remove them, or use 'tinyserv scheduler:set local'")
        health = builds.read_healthcheck(build_dir)
        if health:
            meta["healthcheck"] = health
        meta["runtime"] = builds.detect_runtime(build_dir, meta["procfile"])
        meta["image"] = image_name(layout, app, build_id, settings.registry())
        build_image(layout, app, build_dir, meta, steps, watch)
        store.write_json(layout.build_meta(app, build_id), meta, mode=0o644)
        return meta
    except BaseException:
        builds.remove(layout, app, build_id)
        raise


def release_phase(layout, app, meta, config, version, steps, watch):
    """The Procfile's release command in a one-off container of the new image; it gates the release."""
    from tinyserv.deploy import build as builds
    command = meta["procfile"]["release"]
    steps.step("Running release command: %s" % command)
    env = task_env(app, config, version, "release.1")
    words = ["run", "--rm", "--add-host", docker.HOST_GATEWAY]
    for key, value in sorted(docker.labels(layout.tag, app, ptype="release").items()):
        words += ["--label", "%s=%s" % (key, value)]
    words += env_words(env) + [meta["image"], "/bin/sh", "-c", command]
    builds.run_streamed(layout, app, ["docker", *words], layout.build_dir(app, meta["id"]),
                        client_env(env, layout.mark(app, "release.%s" % meta["id"])), steps, "the release command",
                        watch)


def build_image(layout, app, build_dir, meta, steps, watch):
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
        env = client_env({}, layout.mark(app, "build.%s" % meta["id"]))
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


# --- what a task runs with --------------------------------------------------------------------------

LOOPBACK_URL = re.compile(r"^([a-z][a-z0-9+.-]*://(?:[^/@\s]*@)?)(127\.0\.0\.1|localhost)(?=[:/?]|$)", re.I)


def reachable(config):
    """config with *_URLs that name this server's loopback (the add-ons' DATABASE_URL, REDIS_URL) naming the
    host as a task reaches it instead (HOST_ALIAS: the engine's bridge gateway, given to every task)."""
    return {k: LOOPBACK_URL.sub(lambda m: m.group(1) + docker.HOST_ALIAS, v) if k.endswith("_URL") else v
            for k, v in config.items()}


def task_env(app, config, version, ptype):
    """Config vars (loopback URLs as tasks reach them), then what tinyserv sets (no TINYSERV_DATA_DIR: a
    task may run on any node)."""
    env = reachable(config)
    env.update(PORT=str(CONTAINER_PORT), DYNO=ptype, PS=ptype, TINYSERV_APP=app, TINYSERV_RELEASE="v%d" % version)
    return env


def service_args(name, image, command, found_labels, replicas, env, web, grace, health=None):
    """`docker service create` arguments of one process type (env values travel in the client's environment)."""
    words = ["service", "create", "--detach", "--quiet", "--name", name, "--replicas", str(replicas),
             "--update-order", "start-first", "--update-parallelism", "1", "--restart-condition", "any",
             "--restart-delay", "1s", "--stop-grace-period", "%ds" % max(1, int(grace)), "--no-resolve-image",
             "--host", docker.HOST_GATEWAY]
    for key, value in sorted(found_labels.items()):
        words += ["--label", "%s=%s" % (key, value), "--container-label", "%s=%s" % (key, value)]
    words += env_words(env)
    if web:
        words += ["--publish", "mode=host,target=%d" % CONTAINER_PORT]
    if health:
        words += ["--health-cmd", health, "--health-interval", "1s", "--health-retries", "3",
                  "--health-start-period", "60s"]
    return words + [image, "/bin/sh", "-c", command]


def env_words(env):
    """`--env KEY` (the value from the client's environment); DOCKER_* keys, which steer the client, as KEY=VALUE."""
    words = []
    for key in sorted(env):
        words += ["--env", "%s=%s" % (key, env[key]) if key.startswith("DOCKER_") else key]
    return words


def client_env(env, mark=None):
    """The docker client's environment: the values `--env KEY` names, and the mark a stopped build is found by."""
    merged = docker.client_env({k: v for k, v in env.items() if not k.startswith("DOCKER_")})
    if mark:
        merged[procs.MARK] = mark
    return merged


# --- a rollout: start, boot-check, switch, undo -------------------------------------------------------

def start(layout, app, meta, config, version, steps=None, watch=lambda: None, image=None):
    """Start one service per process type for (image, config) next to what runs; wait until web answers.

    Returns Started; on failure the new services are removed and the error carries web's last lines.
    """
    rollout = new_rollout()
    image = image or meta["image"]
    saved = appstate.formation(layout, app)
    services = {}
    try:
        for ptype in process_types(meta["procfile"]):
            replicas = 0 if ptype in saved["stopped"] else saved["quantity"].get(ptype, 1)
            name = service_name(app, rollout, ptype)
            env = task_env(app, config, version, ptype)
            docker.run(service_args(name, image, meta["procfile"][ptype], docker.labels(layout.tag, app, rollout, ptype),
                                    replicas, env, ptype == "web", settings.stop_timeout(config)),
                       env=client_env(env))
            services[ptype] = name
        web = services.get("web")
        replicas = 0 if "web" in saved["stopped"] else saved["quantity"].get("web", 1)
        if steps:
            steps.step("Checking that web boots%s on the swarm (%d task%s, up to %d s)" % (
                " and answers GET %s" % meta["healthcheck"] if meta.get("healthcheck") else "", replicas,
                "" if replicas == 1 else "s", settings.boot_timeout(config)))
        ports = wait_answering(layout, app, rollout, web, replicas, meta.get("healthcheck"),
                               settings.boot_timeout(config), watch) if web and replicas else ()
        if steps and ports:
            steps.detail("web answered on published port%s %s" % ("" if len(ports) == 1 else "s",
                                                                  ", ".join(map(str, ports))))
        return Started(rollout, image, services, tuple(ports))
    except BaseException:
        remove_services(list(services.values()))
        raise


def wait_answering(layout, app, rollout, service, replicas, health, timeout, watch=lambda: None):
    """The published ports of `replicas` web tasks that accept connections (and answer health); raise if not."""
    from tinyserv.platform import boot
    deadline = time.monotonic() + timeout
    while True:
        watch()
        failed = [t for t in tasks([service]) if t.state in ("failed", "rejected", "complete", "shutdown")
                  and t.desired == "shutdown"]
        if failed:
            raise TinyservError("web %s on the swarm (%s); the running release was not touched" % (
                failed[0].state, failed[0].error or "see its lines below"), details=service_lines(service))
        ports = [c.ports[0] for c in containers(layout, app, rollout, "web") if c.ports]
        answering = [p for p in ports if (boot.healthy(p, health) if health else answers(p))]
        if len(answering) >= replicas:
            return sorted(answering)
        if time.monotonic() > deadline:
            raise TinyservError("web did not answer on the swarm within %d s (%d of %d tasks); the running release "
                                "was not touched" % (timeout, len(answering), replicas),
                                details=service_lines(service))
        time.sleep(0.2)


def answers(port, timeout=1.0):
    """Does an HTTP server answer on 127.0.0.1:port? A TCP connection is not enough: the engine's proxy for a
    published port accepts connections before the task listens, and closes them."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("HEAD", "/", headers={"Connection": "close", "User-Agent": "tinyserv-bootcheck"})
        conn.getresponse()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def switch(layout, app, release, started, steps=None):
    """The release (recorded, with started's rollout) serves once nginx routes to its tasks; old services go."""
    logs.append(layout.log_file(app), "tinyserv", "Release v%d: %s (swarm rollout %s)" % (
        release["version"], release["description"], started.rollout))
    route(layout, app, started, release["config"])


def route(layout, app, started, config):
    """Let nginx send traffic to started's tasks (the recorded rollout), then remove every other rollout."""
    control.sync(layout, app)
    wanted = set(started.ports)
    router.wait_until_live(layout, app, lambda site: site is not None and wanted <= set(site["primary"]),
                           timeout=settings.boot_timeout(config))
    retire_others(layout, app, started.rollout)


def retire_others(layout, app, keep):
    """Remove the app's services of every rollout but keep (nginx routes to keep's tasks by now)."""
    remove_services([s for s, rollout in services_of(layout, app) if rollout != keep])


def undo(layout, app, version, why):
    """Forget release `version` (a swarm one) and let the one before it serve again; its services go."""
    newest = releases.current(layout, app)
    doomed = (newest.get("swarm") or {}).get("rollout") if newest["version"] == version else None
    releases.drop_last(layout, app, version)
    previous = releases.current(layout, app)
    logs.append(layout.log_file(app), "tinyserv", "Release v%d undone (%s); back to v%d" % (
        version, why, previous["version"]))
    control.sync(layout, app)
    if doomed:
        router.wait_until_live(layout, app, lambda site: site is None or not set(site["primary"]) & set(
            ports_of(layout, app, doomed)), timeout=settings.boot_timeout(previous["config"]))
        remove_services([s for s, rollout in services_of(layout, app) if rollout == doomed])
    return previous


def abandon(started):
    """Remove the services of a rollout that was never recorded."""
    remove_services(list(started.services.values()))


# --- the engine, for one app ----------------------------------------------------------------------------

def containers(layout, app, rollout=None, ptype=None):
    """This node's running task containers of app (of one rollout and type)."""
    words = ["ps", *docker.label_filters(docker.labels(layout.tag, app, rollout, ptype)), "--format", docker.PS_FORMAT]
    return docker.parse_containers(docker.run(words))


def ports_of(layout, app, rollout):
    return [p for c in containers(layout, app, rollout, "web") for p in c.ports]


def services_of(layout, app):
    """[(service name, rollout)] of app (the rollout is the name's middle word: APP-ROLLOUT-TYPE)."""
    out = docker.run(["service", "ls", *docker.label_filters(docker.labels(layout.tag, app)), "--format",
                      "{{.Name}}"])
    return [(name, name[len(app) + 1:len(app) + 9]) for name in out.split()]


def tasks(services):
    """The tasks of services (their history included), newest first per slot."""
    if not services:
        return []
    return docker.parse_tasks(docker.run(["service", "ps", "--no-trunc", "--format", docker.TASK_FORMAT, *services],
                                         check=False))


def service_lines(service, count=SHOWN_LINES):
    """The last lines a service's tasks printed."""
    out = docker.run(["service", "logs", "--raw", "--tail", str(count), service], check=False)
    return out.splitlines()[-count:]


def remove_services(names):
    if names:
        docker.run(["service", "rm", *names], check=False)


def remove_image(image):
    """Remove the image of a build that was never released (its layers stay cached while other images use them)."""
    docker.run(["image", "rm", image], check=False)


def current_services(layout, app):
    """{type: service name} of the current release's rollout ({} before a swarm deploy)."""
    release = releases.current(layout, app)
    rollout = (release.get("swarm") or {}).get("rollout") if release else None
    if not rollout:
        return {}
    meta = appstate.build_meta(layout, app, release["build"])
    return {t: service_name(app, rollout, t) for t in process_types(meta["procfile"])}


def scale(layout, app, changes):
    """ps:scale on the swarm: the current rollout's replicas."""
    services = current_services(layout, app)
    words = ["%s=%d" % (services[t], n) for t, n in sorted(changes.items()) if t in services]
    if words:
        docker.run(["service", "scale", "--detach", *words])


def restart(layout, app, ptype=None):
    """ps:restart: every type (or web) as a new rollout of the current release, the path a config change takes
    without making a release: same image and config, boot-checked, switched, then the old services go. Another
    type alone has no traffic to hand over: its tasks are replaced in place (start-first).

    The caller holds the app's lock."""
    release = releases.current(layout, app)
    running = release.get("swarm")
    if not running:
        return  # never deployed on the swarm: nothing runs
    if ptype not in (None, "web"):
        services = current_services(layout, app)
        if ptype in services:
            docker.run(["service", "update", "--detach", "--quiet", "--force", services[ptype]])
        return
    meta = appstate.build_meta(layout, app, release["build"])
    started = start(layout, app, meta, release["config"], release["version"], image=running["image"])
    try:
        releases.rerun(layout, app, {"rollout": started.rollout, "image": started.image})
        logs.append(layout.log_file(app), "tinyserv", "Restart of v%d (swarm rollout %s)" % (
            release["version"], started.rollout))
        route(layout, app, started, release["config"])
    except BaseException:
        releases.rerun(layout, app, running)  # the old tasks never stopped: they serve again
        control.sync(layout, app)
        abandon(started)
        raise


def destroy(layout, app):
    """Remove every service, task container and image of app (what a test checks is gone)."""
    remove_services([s for s, _ in services_of(layout, app)])
    remove_images(layout, app)


def remove_images(layout, app, timeout=60):
    """Remove every image built for app (a destroy, or a move off the swarm), once its task containers are gone
    (the engine keeps an image a container still uses)."""
    found = docker.labels(layout.tag, app)
    deadline = time.monotonic() + timeout
    while docker.run(["ps", "-aq", *docker.label_filters(found)], check=False).strip():
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    images = docker.run(["images", "-q", *docker.label_filters(found)], check=False).split()
    if images:
        docker.run(["image", "rm", "-f", *sorted(set(images))], check=False)
