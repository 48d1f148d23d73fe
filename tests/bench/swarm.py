"""The same express sample app deployed on the local scheduler and on a one-node Docker Swarm (issue 18), side by side.

Localhost mode (a temporary TINYSERV_ROOT, nginx in front, this machine's own Docker engine in swarm mode): the
setup the e2e swarm server has (tests/e2e/test_swarm.py runs tinyserv in a container on the host's network, driving
this same engine), without its ssh hop, which is not what is measured here. The generated Dockerfile starts from
the swarm base image the e2e suite builds (tests/e2e/images.py: tinyserv-swarm-node:bookworm, Debian's nodejs).

  (a) first deploy of a fresh app, push start -> its content answers through nginx, npm ci on both sides (each
      app's package.json is new, so no dependency layer of an earlier image fits);
  (b) code-only redeploys (dependencies reused: the local build's node_modules, the engine's cached layer), local
      and swarm interleaved, with a GET every 10 ms through nginx meanwhile: push -> new content answers, the
      ratio swarm/local of each pair, and every failed request;
  (c) a web task's container killed (`docker kill`) with web=1: seconds until nginx serves again and the requests
      that failed meanwhile; then the same with web=2 (the failed requests; goal 0); the local app's web
      SIGKILLed for comparison.

The engine is put in swarm mode when it is not, and left again at the end only then. Everything the run made on the
engine carries the label tinyserv.root of its temporary root and is removed at the end.

    python3 tests/bench/swarm.py              # --repeat N (first deploys, kills; default 3), --redeploys N (5)
"""

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import deploy  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402

BASE_IMAGE = "tinyserv-swarm-node:bookworm"  # built by tests/e2e/images.py
POLL_MS = 10
MARKERS = [
    ("Building ", "git push -> hook starts"),
    ("Checking that web boots", "build (extract; dependencies or image)"),
    ("Launching ", "boot check"),
]


class Loader(common.Poller):
    """A GET every `every` seconds through nginx; anything but a 200 (nginx's 502 too) is a failed request."""

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.halt.is_set() and time.monotonic() < deadline:
            body = ok_body(self.port)
            if body is None:
                self.failures.append(time.monotonic())
            else:
                self.answers.append((time.monotonic(), body.strip()))
            self.halt.wait(self.every)


def ok_body(port, timeout=5.0):
    """GET http://127.0.0.1:port/ -> the body of a 200 answer, else None."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def docker(*args, check=True, timeout=300):
    return common.run(["docker", *args], check=check, timeout=timeout)


def ensure_swarm():
    """The engine in swarm mode; True when this run made the swarm (and so leaves it at the end)."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state == "active":
        return False
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    return True


def remove_everything(tag):
    """Services, containers and images labelled with this run's root tag (after the apps' own destroy)."""
    found = ["--filter", "label=tinyserv.root=%s" % tag]
    services = docker("service", "ls", *found, "-q", check=False).stdout.split()
    if services:
        docker("service", "rm", *services, check=False)
    deadline = time.monotonic() + 60
    while docker("ps", "-aq", *found, check=False).stdout.split() and time.monotonic() < deadline:
        time.sleep(0.5)
    containers = docker("ps", "-aq", *found, check=False).stdout.split()
    if containers:
        docker("rm", "-f", *containers, check=False)
    images = sorted(set(docker("images", "-q", *found, check=False).stdout.split()))
    if images:
        docker("image", "rm", "-f", *images, check=False)
    networks = docker("network", "ls", "-q", *found, check=False).stdout.split()
    if networks:
        docker("network", "rm", *networks, check=False)


def root_tag(root):
    import hashlib
    return hashlib.sha256(root.encode()).hexdigest()[:8]


def load():
    return [round(x, 2) for x in os.getloadavg()]


def create(ts, path, name, scheduler, token, description):
    common.make_repo(path, deploy.sample_files(token, description=description), ts.env)
    ts.client("apps:create", name, *(["--scheduler", "swarm"] if scheduler == "swarm" else []), cwd=path)


def first_deploys(ts, repeat):
    """(a) A fresh app on each scheduler, repeat times, interleaved; npm ci runs on both."""
    runs = {"local": [], "swarm": []}
    for i in range(1, repeat + 1):
        for scheduler in ("local", "swarm"):
            name, token = "first-%s-%d" % (scheduler, i), "first-%s-%d" % (scheduler, i)
            path = os.path.join(ts.work, name)
            create(ts, path, name, scheduler, token, "bench first deploy %s %d %s" % (scheduler, i, ts.root))
            run = deploy.tinyserv_deploy(ts, path, name, "release " + token, MARKERS)
            run["load"] = load()
            runs[scheduler].append(run)
            print("    %s first deploy %d: %.2f s (load %s)" % (scheduler, i, run["answer_s"], run["load"][0]))
            ts.client("apps:destroy", name, "--confirm", name, cwd=path, timeout=300)
    return pairs(runs)


def pairs(runs):
    """Both sides' medians and the ratio swarm/local of each pair of runs made one after the other."""
    out = {side: deploy.summarize(r) for side, r in runs.items()}
    out["pair_ratios"] = [round(s["answer_s"] / l["answer_s"], 2) for l, s in zip(runs["local"], runs["swarm"])]
    out["ratio_of_medians"] = round(out["swarm"]["push_to_answer_s"]["median"] /
                                    out["local"]["push_to_answer_s"]["median"], 2)
    return out


def redeploy_under_load(ts, repos, redeploys):
    """(b) Code-only redeploys, local and swarm interleaved, each under its own GET every POLL_MS through nginx."""
    runs = {"local": [], "swarm": []}
    pollers = {side: Loader(deploy.port_of(ts, app), every=POLL_MS / 1000, limit=3600)
               for side, (app, _) in repos.items()}
    for poller in pollers.values():
        poller.start()
    try:
        time.sleep(1)
        began = time.monotonic()
        for i in range(1, redeploys + 1):
            for side, (app, path) in repos.items():
                token = "code-%s-%d" % (side, i)
                common.commit_files(path, deploy.sample_files(token, description="bench " + side), ts.env, token)
                failed_before = len(pollers[side].failures)
                run = deploy.tinyserv_deploy(ts, path, app, "release " + token, MARKERS)
                pollers[side].wait_for(token)
                time.sleep(0.5)  # the old release's drain, still under load
                run["failed_requests"] = len(pollers[side].failures) - failed_before
                run["load"] = load()
                runs[side].append(run)
                print("    %s code-only redeploy %d: %.2f s, %d failed requests (load %s)" % (
                    side, i, run["answer_s"], run["failed_requests"], run["load"][0]))
        ended = time.monotonic()
    finally:
        for poller in pollers.values():
            poller.stop()
    out = pairs(runs)
    for side, poller in pollers.items():
        out[side]["load"] = {"interval_ms": POLL_MS, "requests": len([t for t, _ in poller.answers if began <= t <= ended])
                             + len([t for t in poller.failures if began <= t <= ended]),
                             "failed": len([t for t in poller.failures if began <= t <= ended]),
                             "failed_per_redeploy": [r["failed_requests"] for r in runs[side]],
                             "longest_gap_s": round(poller.longest_gap(began, ended), 3)}
    return out


def running_web(tag, app):
    return docker("ps", "--filter", "label=tinyserv.root=%s" % tag, "--filter", "label=tinyserv.app=%s" % app,
                  "--filter", "label=tinyserv.type=web", "-q").stdout.split()


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.1)


def kill_and_serve(port, token, kill, settle):
    """kill() under a GET every POLL_MS, then settle(); seconds until serving again and the failed requests.

    settled_s: until settle() returned (on the swarm: the replacement task runs).

    Serving again: the first answer after the last failed request (after the kill itself when none failed); the
    window ends once 2 s have passed without a failure after settle() returned.
    """
    poller = Loader(port, every=POLL_MS / 1000)
    poller.start()
    try:
        poller.wait_for(token)
        time.sleep(0.5)
        killed = time.monotonic()
        kill()
        settle()
        settled = time.monotonic()
        wait_until(lambda: time.monotonic() - max([killed] + list(poller.failures)) > 2, 120,
                   "2 s without a failed request")
        ended = time.monotonic()
    finally:
        poller.stop()
    failed = [t for t in poller.failures if killed <= t <= ended]
    back = min((t for t, _ in poller.answers if t > (max(failed) if failed else killed)), default=None)
    return {"serving_again_s": round(back - killed, 3) if back else None, "settled_s": round(settled - killed, 3),
            "failed_requests": len(failed),
            "requests": len(failed) + len([t for t, _ in poller.answers if killed <= t <= ended]),
            "longest_gap_s": round(poller.longest_gap(killed, ended), 3), "load": load()}


def swarm_kills(ts, tag, app, port, token, replicas, repeat):
    """(c) docker kill of one web task container, repeat times, with `replicas` web tasks."""
    ts.client("ps:scale", "web=%d" % replicas, "-a", app)
    wait_until(lambda: len(running_web(tag, app)) == replicas, 120, "%d web tasks" % replicas)
    runs = []
    for _ in range(repeat):
        wait_until(lambda: len(running_web(tag, app)) == replicas, 120, "%d web tasks" % replicas)
        victim = running_web(tag, app)[0]

        def replaced():
            wait_until(lambda: len(running_web(tag, app)) == replicas and victim not in running_web(tag, app),
                       120, "a replacement task")
        run = kill_and_serve(port, token, lambda: docker("kill", victim), replaced)
        runs.append(run)
        print("    swarm web=%d: docker kill -> serving again %s s, replacement task runs %s s, %d failed of %d "
              "requests (load %s)" % (replicas, run["serving_again_s"], run["settled_s"], run["failed_requests"],
                                      run["requests"], run["load"][0]))
    return summarize_kills(runs)


def local_kills(app, port, token, repeat):
    """SIGKILL of the local app's web (the supervisor restarts it), for comparison."""
    runs = []
    for _ in range(repeat):
        pid = common.node_pid(app)
        run = kill_and_serve(port, token, lambda: os.kill(pid, signal.SIGKILL), lambda: None)
        runs.append(run)
        print("    local web=1: SIGKILL -> serving again %s s, %d failed of %d requests (load %s)" % (
            run["serving_again_s"], run["failed_requests"], run["requests"], run["load"][0]))
    return summarize_kills(runs)


def summarize_kills(runs):
    again = [r["serving_again_s"] for r in runs if r["serving_again_s"] is not None]
    return {"serving_again_s": common.stats(again) if again else None,
            "replaced_s": common.stats([r["settled_s"] for r in runs]),
            "failed_requests": [r["failed_requests"] for r in runs], "runs": runs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="first deploys per side, and kills per case")
    p.add_argument("--redeploys", type=int, default=5, help="code-only redeploys per side, under load")
    p.add_argument("--python", default=common.SERVER_PYTHON, help="the python3 put first on PATH for tinyserv")
    p.add_argument("--commit", help="measure this commit's bin/ and lib/ instead of the working tree")
    p.add_argument("--start-port", type=int, default=31700)
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    began = time.monotonic()
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode:
        raise BenchError("no %s image: build it with `python3 tests/e2e/images.py` first" % BASE_IMAGE)
    result = {"benchmark": "swarm", "app": "sample-app (express)", "repeat": args.repeat, "redeploys": args.redeploys,
              "setup": "localhost mode, nginx in front, this machine's Docker engine as a one-node swarm",
              "base_image": BASE_IMAGE, "machine": common.machine(args.python, args.commit),
              "docker": docker("version", "--format", "{{.Server.Version}}").stdout.strip(),
              "phase_names": [name for _, name in MARKERS] + [deploy.SWITCH]}
    print("tinyserv swarm benchmark: express sample app, local against a one-node swarm (load %s)" % load())
    made = ensure_swarm()
    tag = None
    try:
        with TinyservRoot(python=args.python, commit=args.commit, start_port=args.start_port, ports_needed=40,
                          prefix="tinyserv-bench-swarm-") as ts:
            tag = root_tag(ts.root)
            ts.env.update(TINYSERV_SWARM_BASE_NODE=BASE_IMAGE, TINYSERV_BOOT_TIMEOUT="120")
            print("  temporary root %s (engine label tinyserv.root=%s), ports from %d" % (ts.root, tag, ts.start_port))
            try:
                print("  (a) first deploys")
                result["first"] = first_deploys(ts, args.repeat)
                repos = {}
                for side in ("local", "swarm"):
                    name = "bench-" + side
                    path = os.path.join(ts.work, name)
                    create(ts, path, name, side, "warmup-" + side, "bench " + side)
                    deploy.tinyserv_deploy(ts, path, name, "release warmup-" + side, MARKERS)
                    repos[side] = (name, path)
                print("  (b) code-only redeploys under a GET every %d ms" % POLL_MS)
                result["code_only"] = redeploy_under_load(ts, repos, args.redeploys)
                print("  (c) a killed web")
                token = "code-%%s-%d" % args.redeploys
                result["crash"] = {
                    "local_web1": local_kills("bench-local", deploy.port_of(ts, "bench-local"), token % "local",
                                              args.repeat),
                    "swarm_web1": swarm_kills(ts, tag, "bench-swarm", deploy.port_of(ts, "bench-swarm"),
                                              token % "swarm", 1, args.repeat),
                    "swarm_web2": swarm_kills(ts, tag, "bench-swarm", deploy.port_of(ts, "bench-swarm"),
                                              token % "swarm", 2, args.repeat)}
            finally:
                for side in ("local", "swarm"):
                    ts.client("apps:destroy", "bench-" + side, "--confirm", "bench-" + side, timeout=300) \
                        if os.path.isdir(os.path.join(ts.root, "apps", "bench-" + side)) else None
    finally:
        if tag:
            remove_everything(tag)
        if made:
            docker("swarm", "leave", "--force", check=False)
    show(result)
    return common.finish("swarm", result, began)


def show(result):
    for key, title in (("first", "first deploy (npm ci)"), ("code_only", "code-only redeploy")):
        r = result[key]
        print("  %-22s local %.2f s, swarm %.2f s; swarm/local per pair %s" % (
            title, r["local"]["push_to_answer_s"]["median"], r["swarm"]["push_to_answer_s"]["median"],
            r["pair_ratios"]))
    for side in ("local", "swarm"):
        print("  failed requests through %d %s redeploys: %s" % (
            result["redeploys"], side, result["code_only"][side]["load"]["failed_per_redeploy"]))
    for key, c in result["crash"].items():
        print("  %s: serving again %s, failed requests %s" % (
            key, c["serving_again_s"] and c["serving_again_s"]["median"], c["failed_requests"]))


if __name__ == "__main__":
    common.run_main(main)
