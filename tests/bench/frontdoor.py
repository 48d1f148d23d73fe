"""The front door (issue 8), before and after, side by side in one run, against the floor measured in the same run.

For "before" (tinyserv at --before, default the commit this work started from: every app on its own port, no
nginx) and "after" (the working tree, nginx in front), each in a temporary root of its own:

  (a) first deploy of a fresh express app (npm ci): push start -> the new release answers; floor: push to a bare
      repository + checkout + npm ci + npm start to first answer (deploy.py's Floor);
  (b) code-only redeploy (dependencies reused); floor: push + checkout + one boot to first answer;
  (c) under load: a client GETs the app every 10 ms (one connection per request), first for STEADY_S seconds of
      steady state, then across --redeploys code-only redeploys: failed requests, and p50/p99 latency steady vs
      during the redeploys;
  (d) memory with --apps no-dependency node apps: tinyserv's own processes, plus nginx's ("after").

Results go to tests/bench/results/frontdoor.json and the tables in docs/benchmarks.md.

    python3 tests/bench/frontdoor.py                      # about 5 minutes on 2 cores
"""

import argparse
import os
import sys
import threading
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import deploy  # noqa: E402
import memory  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402

BEFORE = "c4538ae"  # main when issue 8's work began: no nginx
STEADY_S = 5.0


class Loader(threading.Thread):
    """GET the app every 10 ms, each on a new connection; every request's start time, latency and outcome."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.halt = threading.Event()
        self.requests = []  # (start monotonic, seconds, ok)

    def run(self):
        while not self.halt.is_set():
            started = time.monotonic()
            ok = False
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            self.requests.append((started, time.monotonic() - started, ok))
            self.halt.wait(0.01)

    def window(self, start, end):
        return [r for r in list(self.requests) if start <= r[0] <= end]

    def stop(self):
        self.halt.set()
        self.join(10)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))] if values else None


def latency(requests):
    times = [r[1] for r in requests if r[2]]
    return {"requests": len(requests), "failed": len([r for r in requests if not r[2]]),
            "p50_ms": round(percentile(times, 50) * 1000, 1) if times else None,
            "p99_ms": round(percentile(times, 99) * 1000, 1) if times else None,
            "max_ms": round(max(times) * 1000, 1) if times else None}


def deploys(ts, repeat):
    """(a) and (b) for one tinyserv, each run next to its floor."""
    repo = os.path.join(ts.work, "bench")
    common.make_repo(repo, deploy.sample_files("warmup"), ts.env)
    ts.client("apps:create", "bench", cwd=repo)
    deploy.tinyserv_deploy(ts, repo, "bench", "release warmup")  # fills the npm cache, starts the supervisor
    floor_bench = deploy.Floor(ts, "bench")
    floor_bench.deploy(repo, "release warmup")
    out = {}
    runs, floors = [], []
    for i in range(1, repeat + 1):
        name, token = "first%d" % i, "first-%d" % i
        path = os.path.join(ts.work, name)
        common.make_repo(path, deploy.sample_files(token), ts.env)
        ts.client("apps:create", name, cwd=path)
        runs.append(deploy.tinyserv_deploy(ts, path, name, "release " + token))
        floors.append(deploy.round_floor(deploy.Floor(ts, name).deploy(path, "release " + token)))
        ts.client("apps:destroy", name, "--confirm", name, cwd=path)
    out["first"] = deploy.summarize(runs, floors)
    deploy.show("first deploy of a fresh app (npm ci)", out["first"])
    runs, floors = [], []
    for i in range(1, repeat + 1):
        token = "code-%d" % i
        common.commit_files(repo, deploy.sample_files(token), ts.env, token)
        runs.append(deploy.tinyserv_deploy(ts, repo, "bench", "release " + token))
        floors.append(deploy.round_floor(floor_bench.deploy(repo, "release " + token, install=False)))
    out["code_only"] = deploy.summarize(runs, floors)
    deploy.show("code-only redeploy (dependencies reused)", out["code_only"])
    return repo, out


def redeploys_under(loader, repo, env, redeploys):
    """With loader running: (steady-state latency, [(start, end)] of each code-only redeploy's window, until 1 s
    after its push returned)."""
    time.sleep(1.0)
    steady_from = time.monotonic()
    time.sleep(STEADY_S)
    steady = latency(loader.window(steady_from, time.monotonic()))
    windows = []
    for i in range(1, redeploys + 1):
        token = "load-%d" % i
        common.commit_files(repo, deploy.sample_files(token), env, token)
        started = time.monotonic()
        seconds, code, lines = common.timed_push(repo, env)
        if code != 0:
            raise BenchError("push under load failed:\n" + "\n".join(l for _, l in lines))
        ended = time.monotonic() + 1.0  # the old web drains after the push: keep counting a while
        while time.monotonic() < ended:
            time.sleep(0.05)
        windows.append((started, time.monotonic()))
    return steady, windows


def under_load(ts, repo, redeploys):
    """(c) failed requests and latency, steady state, then during code-only redeploys."""
    port = deploy.port_of(ts, "bench")
    loader = Loader(port)
    loader.start()
    try:
        steady, windows = redeploys_under(loader, repo, ts.env, redeploys)
    finally:
        loader.stop()
    during = [r for start, end in windows for r in loader.window(start, end)]
    result = {"steady": steady, "during_redeploys": latency(during), "redeploys": redeploys,
              "failed_per_redeploy": [latency(loader.window(s, e))["failed"] for s, e in windows]}
    print("  under load (GET every 10 ms): steady p50 %s ms p99 %s ms; during %d redeploys p50 %s ms p99 %s ms, "
          "failed %d (%s per redeploy)" % (steady["p50_ms"], steady["p99_ms"], redeploys,
                                           result["during_redeploys"]["p50_ms"], result["during_redeploys"]["p99_ms"],
                                           result["during_redeploys"]["failed"], result["failed_per_redeploy"]))
    return result


def memory_with_apps(ts, n_apps):
    """(d) tinyserv's and nginx's memory with n_apps deployed."""
    for i in range(n_apps):
        name = "m%02d" % i
        path = os.path.join(ts.work, name)
        common.make_repo(path, memory.app_files(name), ts.env)
        ts.client("apps:create", name, cwd=path)
        code = common.timed_push(path, ts.env)[1]
        if code != 0:
            raise BenchError("push of %s failed" % name)
    time.sleep(2)
    worst = None
    for _ in range(memory.SAMPLES):
        own = {pid: memory.process_memory(pid) for pid in ts.own_processes()}
        door = {pid: memory.process_memory(pid) for pid in ts.nginx_processes()}
        look = {"tinyserv_processes": len(own), "nginx_processes": len(door),
                "tinyserv_rss_mb": round(sum(p["rss_kb"] or 0 for p in own.values()) / 1024, 1),
                "tinyserv_pss_mb": round(sum(p["pss_kb"] or 0 for p in own.values()) / 1024, 1),
                "nginx_rss_mb": round(sum(p["rss_kb"] or 0 for p in door.values()) / 1024, 1),
                "nginx_pss_mb": round(sum(p["pss_kb"] or 0 for p in door.values()) / 1024, 1)}
        look["total_rss_mb"] = round(look["tinyserv_rss_mb"] + look["nginx_rss_mb"], 1)
        look["total_pss_mb"] = round(look["tinyserv_pss_mb"] + look["nginx_pss_mb"], 1)
        if worst is None or look["total_rss_mb"] > worst["total_rss_mb"]:
            worst = look
        time.sleep(memory.SAMPLE_EVERY)
    worst["apps"] = n_apps
    print("  memory with %d apps: tinyserv %d processes RSS %.1f MB (PSS %.1f), nginx %d processes RSS %.1f MB "
          "(PSS %.1f); together RSS %.1f MB, PSS %.1f MB" % (
              n_apps, worst["tinyserv_processes"], worst["tinyserv_rss_mb"], worst["tinyserv_pss_mb"],
              worst["nginx_processes"], worst["nginx_rss_mb"], worst["nginx_pss_mb"], worst["total_rss_mb"],
              worst["total_pss_mb"]))
    return worst


def one_side(label, commit, args):
    print("%s: tinyserv %s" % (label, commit or "working tree"))
    machine = common.machine(args.python, commit)
    with TinyservRoot(python=args.python, commit=commit, start_port=args.start_port,
                      ports_needed=args.apps + args.repeat + 10) as ts:
        if commit is None and not ts.env.get("TINYSERV_NGINX"):
            print("  nginx: %s" % ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else "missing!"))
        repo, side = deploys(ts, args.repeat)
        side["load"] = under_load(ts, repo, args.redeploys)
        side["memory"] = memory_with_apps(ts, args.apps)
        machine["loadavg_at_end"] = os.getloadavg()[0]
        side["machine"] = machine
        return side


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--redeploys", type=int, default=5)
    p.add_argument("--apps", type=int, default=50)
    p.add_argument("--before", default=BEFORE, help="the commit measured as 'before' (default %s)" % BEFORE)
    p.add_argument("--python", default=common.SERVER_PYTHON)
    p.add_argument("--start-port", type=int, default=31300)
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    began = time.monotonic()
    result = {"benchmark": "frontdoor", "repeat": args.repeat, "redeploys": args.redeploys, "apps": args.apps,
              "machine": common.machine(args.python), "before_commit": args.before}
    result["before"] = one_side("before", args.before, args)
    result["after"] = one_side("after", None, args)
    return common.finish("frontdoor", result, began)


if __name__ == "__main__":
    common.run_main(main)
