"""Cost as the number of apps grows (issue 20): N small generic apps behind nginx, on localhost.

Each app's web is Python's own file server (`python3 -S -m http.server $PORT`) serving a page that names
the app, reached through nginx by its domain (<app>.scale.test). Apps are added with `git push` until
there are N of them; then, at that N:

  - a code-only redeploy of one app (`git push` start -> the push returns, and -> nginx answers with the new page);
  - `tinyserv config:set` of one app, `tinyserv ps` of one app, `tinyserv apps` (each the median of --repeat runs);
  - the supervisor's idle CPU (utime+stime from /proc/PID/stat over IDLE_S seconds, % of one core, once the
    replaced webs have drained and stopped: nothing changing) and RSS;
    nginx's RSS (master + workers);
  - `tinyserv-remote shutdown` then `startup`: seconds from `startup` until every app answers at its domain (every
    app watched at once: the slowest one's first answer).

Before measuring at each N, the disk catches up with adding the apps (sync) and the 1-minute load average falls
under 1 (at most 3 minutes): the numbers are those of a machine running N apps, not of one still busy adding them.

Results go to tests/bench/results/scale.json (--out to name another file) and the tables in docs/benchmarks.md.

    python3 tests/bench/scale.py                      # N = 1, 100, 300
    python3 tests/bench/scale.py --counts 1,100,300,1000
"""

import argparse
import concurrent.futures
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402

DOMAIN = "scale.test"
IDLE_S = float(os.environ.get("SCALE_IDLE_S", "20"))
PUSHERS = 2  # apps pushed at once while adding apps (2 cores)
SETTLE_S = 180  # longest wait, after adding apps, for the machine to settle before measuring
QUIET_LOAD = 1.0  # ... until the 1-minute load average is under this
TICKS = os.sysconf("SC_CLK_TCK")


def app_files(name, token="v1"):
    return {"Procfile": "web: python3 -S -m http.server $PORT\n", "index.html": "%s %s\n" % (name, token)}


def get(port, host, timeout=5.0):
    """The body nginx answers for host, or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_answer(ts, name, text, timeout=120):
    """Block until nginx answers name's domain with text in the page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in (get(ts.http_port, "%s.%s" % (name, DOMAIN), 2.0) or ""):
            return
        time.sleep(0.01)
    raise BenchError("%s did not answer %r within %d s" % (name, text, timeout))


def watch_all(ts, names, started, timeout=600, watchers=16):
    """{name: seconds from started until it first answered with its own page}; every app polled every 10 ms by
    `watchers` threads, each going round its share. Raises if one never answers within timeout."""
    first = {}
    deadline = started + timeout

    def watch(share):
        left = list(share)
        while left and time.monotonic() < deadline:
            for name in list(left):
                if name in (get(ts.http_port, "%s.%s" % (name, DOMAIN), 2.0) or ""):
                    first[name] = time.monotonic() - started
                    left.remove(name)
            time.sleep(0.01)
    with concurrent.futures.ThreadPoolExecutor(watchers) as pool:
        list(pool.map(watch, [names[i::watchers] for i in range(watchers)]))
    missing = [n for n in names if n not in first]
    if missing:
        raise BenchError("%d apps did not answer within %d s of startup (%s ...)" % (len(missing), timeout, missing[0]))
    return first


def add_app(ts, n):
    name = "s%04d" % n
    path = os.path.join(ts.work, name)
    common.make_repo(path, app_files(name), ts.env)
    ts.client("apps:create", name, cwd=path)
    ts.git("push", "tinyserv", "main", cwd=path, timeout=300)
    return name


def wait_settled(ts, name, timeout=120):
    """Block until every instance of name is up (the replaced webs drained and gone), then 2 s more."""
    import json
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {i["state"] for i in json.loads(ts.client("ps", "-a", name, "--json").stdout)["instances"]}
        if states == {"up"}:
            time.sleep(2)
            return
        time.sleep(0.2)
    raise BenchError("%s still had %s after %d s" % (name, states, timeout))


def settle(limit=SETTLE_S, quiet=QUIET_LOAD):
    """Until the dirty pages of adding the apps are on disk and the 1-minute load average is under `quiet` (at most
    `limit` s): (seconds waited, load average). A push at N apps must not queue its fsyncs behind the writeback of
    the 700 pushes just before it (measured: 0.62 s against 0.50 s for the same push a few minutes later)."""
    started = time.monotonic()
    os.sync()
    while True:
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        if load < quiet or time.monotonic() - started >= limit:
            return time.monotonic() - started, load
        time.sleep(2)


def timed(argv_fn):
    started = time.monotonic()
    argv_fn()
    return round(time.monotonic() - started, 3)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pids):
    return round(sum(common.read_status_kb(p, "VmRSS") or 0 for p in pids) / 1024, 1)


def idle_cpu(pid, seconds=IDLE_S):
    """% of one core the process used over `seconds` of wall time."""
    before, started = cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    used, wall = cpu_ticks(pid) - before, time.monotonic() - started
    return round(100.0 * used / TICKS / wall, 2)


def measure(ts, names, round_no, repeat):
    """One row of numbers at len(names) apps (each time the median of `repeat` runs)."""
    first = names[0]
    path = os.path.join(ts.work, first)
    pushes, answers, configs, pses, appses = [], [], [], [], []
    for rep in range(repeat):
        token = "r%d.%d" % (round_no, rep)
        common.commit_files(path, app_files(first, token), ts.env, "code-only change")
        started = time.monotonic()
        push_s, code, lines = common.timed_push(path, ts.env)
        if code != 0:
            raise BenchError("redeploy failed:\n%s" % "\n".join(l for _, l in lines))
        wait_answer(ts, first, token)
        pushes.append(push_s)
        answers.append(time.monotonic() - started)
        configs.append(timed(lambda: ts.client("config:set", "-a", first, "BENCH=%s" % token)))
        pses.append(timed(lambda: ts.client("ps", "-a", first)))
        appses.append(timed(lambda: ts.client("apps")))
    push_s, answered_s = common.median(pushes), common.median(answers)
    config_s, ps_s, apps_s = common.median(configs), common.median(pses), common.median(appses)
    wait_settled(ts, first)  # idle means nothing is changing: the old webs have drained and stopped
    sup = ts.supervisor_pid()
    cpu = idle_cpu(sup)
    own = ts.own_processes()
    nginx = ts.nginx_processes()
    row = {"apps": len(names), "redeploy_push_s": round(push_s, 3), "redeploy_answer_s": round(answered_s, 3),
           "config_set_s": config_s, "ps_s": ps_s, "apps_s": apps_s, "supervisor_idle_cpu_pct": cpu,
           "supervisor_rss_mb": rss_mb([sup]), "own_rss_mb": rss_mb(own), "own_processes": len(own),
           "nginx_rss_mb": rss_mb(nginx), "nginx_processes": len(nginx)}
    ts.remote("shutdown", timeout=600)
    started = time.monotonic()
    answer = ts.remote("startup", timeout=600, check=False)
    if answer.returncode != 0:  # said, and timed on: the supervisor it started may still bring the apps up
        row["startup_error"] = (answer.stderr or answer.stdout).strip()[-300:]
        print("  startup failed: %s" % row["startup_error"], flush=True)
    # Every app watched at once (a GET each every 10 ms until it answers): the slowest one's first answer, not the
    # time one watcher takes to go round 1,000 apps after it.
    answered = watch_all(ts, names, started, timeout=600)
    row["all_answer_after_startup_s"] = round(max(answered.values()), 2)
    row["median_app_answers_after_startup_s"] = round(common.median(list(answered.values())), 2)
    print("  %s" % row, flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,100,300")
    parser.add_argument("--commit", help="measure tinyserv at this commit instead of the working tree")
    parser.add_argument("--out", default="scale")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timed command at each N (median)")
    # Below the kernel's ephemeral ports (32768-60999): a boot check's kernel-chosen port never is an app's port.
    parser.add_argument("--start-port", type=int, default=20000)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    began = time.monotonic()
    result = {"machine": common.machine(commit=args.commit), "idle_s": IDLE_S, "repeat": args.repeat, "rows": [],
              "app": "web: python3 -S -m http.server $PORT, behind nginx, reached by its domain"}
    with TinyservRoot(start_port=args.start_port, ports_needed=max(counts) + 20, commit=args.commit,
                      prefix="tinyserv-bench-scale-") as ts:
        ts.env["TINYSERV_DOMAIN"] = DOMAIN
        names = []
        for round_no, count in enumerate(counts, 1):
            adding = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(PUSHERS) as pool:
                names += list(pool.map(lambda n: add_app(ts, n), range(len(names), count)))
            print("%d apps (added in %.0f s)" % (count, time.monotonic() - adding), flush=True)
            for name in names:
                wait_answer(ts, name, name, timeout=300)
            quiet = settle()
            print("  measuring after %.0f s for the machine to settle (load average %.2f)" % quiet, flush=True)
            result["rows"].append(dict(measure(ts, names, round_no, args.repeat), settled_s=round(quiet[0]),
                                       loadavg_at_measure=quiet[1]))
            common.write_result(args.out, result)  # each N as it is measured: a later failure keeps these
    return common.finish(args.out, result, began)


if __name__ == "__main__":
    common.run_main(main)
