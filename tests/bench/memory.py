"""How much memory tinyserv's own processes use while supervising 1, 10 and 50 apps,
and how long `tinyserv-remote startup` takes to bring 50 stopped apps back.

Each app is a dependency-free node HTTP server deployed with a real `git push` in
localhost mode, into a temporary TINYSERV_ROOT. Goal (from the issue): tinyserv's
own processes <= 30 MB resident in total with 50 apps.

    python3 tests/bench/memory.py                       # Debian's /usr/bin/python3 runs tinyserv
    python3 tests/bench/memory.py --python ~/.pyenv/versions/3.11.7/bin/python3 --tag pyenv
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402

SERVER_JS = """// A dependency-free app for tinyserv's memory benchmark.
const http = require("http");
http.createServer((req, res) => {
  res.end("%s answers\\n");
}).listen(process.env.PORT, "127.0.0.1");
"""
GOAL_MB = 30
SAMPLES = 5
SAMPLE_EVERY = 0.5


def app_files(name):
    """The files of one tiny app: server.js, Procfile, package.json and its lockfile (so npm ci runs)."""
    package = '{\n  "name": "%s",\n  "version": "1.0.0",\n  "private": true\n}\n' % name
    lock = ('{\n  "name": "%s",\n  "version": "1.0.0",\n  "lockfileVersion": 3,\n  "requires": true,\n'
            '  "packages": {\n    "": {\n      "name": "%s",\n      "version": "1.0.0"\n    }\n  }\n}\n' % (name, name))
    return {"server.js": SERVER_JS % name, "Procfile": "web: node server.js\n",
            "package.json": package, "package-lock.json": lock}


def process_memory(pid):
    """VmRSS, VmHWM, Pss and Uss of one process, in kB."""
    rollup = common.read_rollup_kb(pid)
    return {"rss_kb": common.read_status_kb(pid, "VmRSS"), "hwm_kb": common.read_status_kb(pid, "VmHWM"),
            "pss_kb": rollup.get("Pss"), "uss_kb": rollup.get("Uss")}


def sample(ts):
    """One look at tinyserv's own processes and, for scale, at the apps'."""
    own = {pid: dict(process_memory(pid), cmdline=line, exe=os.path.realpath("/proc/%d/exe" % pid))
           for pid, line in ts.own_processes().items()}
    apps = [process_memory(pid) for pid in ts.app_processes()]
    return {
        "own": own,
        "own_rss_kb": sum(p["rss_kb"] or 0 for p in own.values()),
        "own_pss_kb": sum(p["pss_kb"] or 0 for p in own.values()),
        "own_uss_kb": sum(p["uss_kb"] or 0 for p in own.values()),
        "app_processes": len(apps),
        "apps_rss_kb": sum(p["rss_kb"] or 0 for p in apps),
        "apps_pss_kb": sum(p["pss_kb"] or 0 for p in apps),
    }


def wait_deploys_done(ts, timeout=60):
    """The last push's deployer goes on after git returns (it drains the old web): wait until it is gone."""
    deadline = time.monotonic() + timeout
    while any(" hook " in line for line in ts.own_processes().values()):
        if time.monotonic() > deadline:
            raise BenchError("a deploy still runs %d s after its push: %s" % (timeout, ts.own_processes()))
        time.sleep(0.1)


def measure(ts, label, n_apps):
    """SAMPLES looks, SAMPLE_EVERY apart; report the largest (the supervisor ticks in between)."""
    looks = []
    for i in range(SAMPLES):
        if i:
            time.sleep(SAMPLE_EVERY)
        looks.append(sample(ts))
    worst = max(looks, key=lambda s: s["own_rss_kb"])
    row = {
        "label": label, "apps": n_apps,
        "own_processes": [{"pid": pid, **p} for pid, p in sorted(worst["own"].items())],
        "own_process_count": len(worst["own"]),
        "own_rss_mb": round(worst["own_rss_kb"] / 1024, 1),
        "own_pss_mb": round(max(s["own_pss_kb"] for s in looks) / 1024, 1),
        "own_uss_mb": round(max(s["own_uss_kb"] for s in looks) / 1024, 1),
        "own_rss_mb_samples": [round(s["own_rss_kb"] / 1024, 1) for s in looks],
        "app_processes": worst["app_processes"],
        "apps_rss_mb": round(worst["apps_rss_kb"] / 1024, 1),
        "apps_pss_mb": round(worst["apps_pss_kb"] / 1024, 1),
    }
    print("  %-28s own processes: %d  RSS %.1f MB  PSS %.1f MB  USS %.1f MB   (apps: %d processes, PSS %.0f MB)" % (
        label, row["own_process_count"], row["own_rss_mb"], row["own_pss_mb"], row["own_uss_mb"],
        row["app_processes"], row["apps_pss_mb"]))
    for p in row["own_processes"]:
        print("      pid %d  %s  (%s)" % (p["pid"], p["cmdline"], p["exe"]))
    return row


def ports_of(ts, names):
    """{app: port} from the public release files (releases/<app>.json)."""
    import json
    ports = {}
    for name in names:
        with open(os.path.join(ts.root, "releases", name + ".json")) as f:
            ports[name] = json.load(f)["port"]
    return ports


def wait_all_answer(ports, started, timeout):
    """Poll every app until each has answered once; {app: seconds since started}."""
    pending = dict(ports)
    answered = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, port in list(pending.items()):
            body = common.http_get(port, timeout=0.3)
            if body and name in body:
                answered[name] = time.monotonic() - started
                del pending[name]
        if pending:
            time.sleep(0.01)
    if pending:
        raise BenchError("%d app(s) did not answer within %d s: %s" % (
            len(pending), timeout, ", ".join(sorted(pending))))
    return answered


def deploy_apps(ts, names, push_times):
    """Create each app (git remote 'tinyserv') and deploy it with a real git push."""
    for name in names:
        path = os.path.join(ts.work, name)
        common.make_repo(path, app_files(name), ts.env)
        ts.client("apps:create", name, cwd=path)
        seconds, code, lines = common.timed_push(path, ts.env)
        if code != 0:
            raise BenchError("git push of %s failed (exit %d):\n%s" % (name, code, "\n".join(l for _, l in lines)))
        push_times.append(seconds)


def startup_timing(ts, names, ports):
    """`tinyserv-remote shutdown`, then time `startup` until every app answers HTTP."""
    t0 = time.monotonic()
    ts.remote("shutdown", timeout=180)
    shutdown_s = time.monotonic() - t0
    still = [n for n, p in ports.items() if common.http_get(p, timeout=0.3) is not None]
    if still or ts.own_processes():
        raise BenchError("after shutdown, still answering: %s; tinyserv processes: %s" % (still, ts.own_processes()))
    started = time.monotonic()
    proc = subprocess.Popen([ts.remote_path, "startup"], cwd=ts.work, env=ts.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        answered = wait_all_answer(ports, started, timeout=180)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    command_s = time.monotonic() - started  # upper bound: communicate() returns after the exit
    if proc.returncode != 0:
        raise BenchError("tinyserv-remote startup failed (exit %d): %s%s" % (proc.returncode, out, err))
    times = sorted(answered.values())
    return {"apps": len(names), "shutdown_s": round(shutdown_s, 3),
            "all_answer_s": round(times[-1], 3), "first_answer_s": round(times[0], 3),
            "median_answer_s": round(common.median(times), 3),
            "startup_command_exit_s_at_most": round(max(command_s, times[-1]), 3)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", default="1,10,50", help="app counts to measure at (default 1,10,50)")
    p.add_argument("--python", default=common.SERVER_PYTHON, help="the python3 put first on PATH for tinyserv")
    p.add_argument("--commit", help="measure this commit's bin/ and lib/ (exported to the temporary dir) "
                   "instead of the working tree")
    p.add_argument("--tag", default="", help="suffix for the result file (memory-TAG.json)")
    p.add_argument("--start-port", type=int, default=31000)
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    counts = sorted({int(c) for c in args.apps.split(",")})
    began = time.monotonic()
    result = {"benchmark": "memory", "goal_mb": GOAL_MB, "machine": common.machine(args.python, args.commit),
              "rows": []}
    print("tinyserv memory benchmark: %s (%s), apps %s" % (
        args.python, result["machine"]["server_python_version"], counts))
    with TinyservRoot(python=args.python, commit=args.commit, start_port=args.start_port,
                      ports_needed=counts[-1] + 10) as ts:
        print("  temporary root %s, ports from %d" % (ts.root, ts.start_port))
        names, push_times = [], []
        for n in counts:
            new = ["app%02d" % i for i in range(len(names) + 1, n + 1)]
            deploy_apps(ts, new, push_times)
            names += new
            wait_all_answer(ports_of(ts, names), time.monotonic(), timeout=60)
            wait_deploys_done(ts)
            result["rows"].append(measure(ts, "%d app(s), after deploys" % n, n))
        result["push_s"] = common.stats(push_times)
        print("  git push per no-dependency app: median %.2f s (min %.2f, max %.2f), %d pushes" % (
            result["push_s"]["median"], result["push_s"]["min"], result["push_s"]["max"], len(push_times)))
        ports = ports_of(ts, names)
        result["startup"] = startup_timing(ts, names, ports)
        print("  shutdown %.2f s; startup of %d apps: every app answers after %.2f s (first %.2f s); "
              "the startup command exits after %.1f s" % (
                  result["startup"]["shutdown_s"], len(names), result["startup"]["all_answer_s"],
                  result["startup"]["first_answer_s"], result["startup"]["startup_command_exit_s_at_most"]))
        result["rows"].append(measure(ts, "%d apps, after startup" % len(names), len(names)))
        result["supervisor_exe"] = os.path.realpath("/proc/%d/exe" % ts.supervisor_pid())
    return common.finish("memory" + ("-" + args.tag if args.tag else ""), result, began)


if __name__ == "__main__":
    common.run_main(main)
