"""Docker Swarm as a second scheduler: the same push and commands, the app's processes placed by Swarm.

Design (docs/swarm.md tells the user's side):

- The scheduler is per app: apps/<app>/scheduler.json says "local" (the default, unchanged) or
  "swarm"; `apps:create --scheduler` and `scheduler:set` write it, TINYSERV_SCHEDULER is the server's
  default for new apps, `apps:info` shows it. A swarm app needs the front door (nginx).
- A push builds an image instead of a build directory's dependencies (deploy/image.py: the app's own
  Dockerfile, else one written per runtime, with the runtime version the app asks for).
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
import time

from tinyserv.state import appstate, logs, releases, store
from tinyserv.platform import docker, procs
from tinyserv.frontdoor import nginx, router
from tinyserv.platform import control
from tinyserv.supervise import cron
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.common.procfile import process_types
from tinyserv.deploy import image as images
from tinyserv.deploy.image import CONTAINER_PORT

SCHEDULERS = ("local", "swarm")
SHOWN_LINES = 15

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
        images.build(layout, app, build_dir, meta, steps, watch)
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
    """The published ports of `replicas` web tasks that answer HTTP (and health): this node's as ints, other
    nodes' as "ADDRESS:PORT"; raise if they do not."""
    deadline = time.monotonic() + timeout
    several = docker.several_nodes()
    while True:
        watch()
        failed = failed_task(tasks([service]))
        if failed:
            raise TinyservError("web %s on the swarm (%s); the running release was not touched" % (
                failed.state, failed.error or "see its lines below"), details=service_lines(service))
        ports = web_endpoints(layout, app, rollout, several)
        answering = [p for p in ports if answers(p, health)]
        if len(answering) >= replicas:
            return sorted(answering, key=nginx.upstream_order)
        if time.monotonic() > deadline:
            raise TinyservError("web did not answer on the swarm within %d s (%d of %d tasks); the running release "
                                "was not touched" % (timeout, len(answering), replicas),
                                details=service_lines(service))
        time.sleep(0.2)


# The engine picks a task's published port from the kernel's ephemeral range, which outgoing connections draw from
# too: a port it picked can be taken before its proxy binds it. The swarm replaces such a task (restart-condition
# any) with one on another port, so the boot check waits for that one; any other failure is the app's own.
PORT_TAKEN = "address already in use"


def failed_task(found):
    """The first task of found that ended in a way that rejects the push (None if none did)."""
    for task in found:
        if (task.state in ("failed", "rejected", "complete", "shutdown") and task.desired == "shutdown"
                and PORT_TAKEN not in task.error):
            return task
    return None


def web_endpoints(layout, app, rollout, several=True):
    """Where a rollout's web tasks listen: this node's published ports (ints), then other nodes' "ADDRESS:PORT"."""
    found = containers(layout, app, rollout, "web")
    if several:
        found += docker.remote_tasks(docker.labels(layout.tag, app, rollout, "web"))
    return [c.ports[0] for c in found if c.ports]


def answers(endpoint, health=None, timeout=1.0):
    """Does an HTTP server answer at endpoint (a port here, or "ADDRESS:PORT"): any answer to HEAD /, or 2xx/3xx
    to GET health? A TCP connection is not enough: the engine's proxy for a published port accepts connections
    before the task listens, and closes them."""
    import http.client
    host, _, port = nginx.upstream_address(endpoint).rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET" if health else "HEAD", health or "/", headers={
            "Connection": "close", "User-Agent": "tinyserv-healthcheck" if health else "tinyserv-bootcheck"})
        status = conn.getresponse().status
        return not health or 200 <= status < 400
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
    return web_endpoints(layout, app, rollout, docker.several_nodes())


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
