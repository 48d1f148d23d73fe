"""How long a `git push` deploy of the express sample app takes, against the floor measured in the same run.

  (a) push start -> the new release answers HTTP with its new content: a fresh app's first deploy, and a
      deploy that changes package.json (so npm ci runs);
  (b) the floor for the same commits: `git push` to a plain bare repository (no hook) + a fresh checkout +
      `npm ci` (same warm npm cache) + `npm start` until its first HTTP answer; ratio deploy/floor (goal <= 1.15);
  (c) a code-only redeploy (dependencies reused);
  (d) `tinyserv rollback` until the old content answers;
  (e) the longest time without an HTTP answer during a code-only redeploy, polling every 10 ms.

Each is repeated (--repeat, default 3); medians with min/max go to tests/bench/results/deploy.json.

    python3 tests/bench/deploy.py
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402

SAMPLE = os.path.join(common.REPO, "tests", "sample-app")
INDEX_JS = """// The sample app, answering with a token so the benchmark can tell releases apart.
const express = require("express");

const app = express();
const port = process.env.PORT || 5000;

app.get("/", (req, res) => {
  res.type("text/plain").send("release %s\\n");
});

app.listen(port, () => {
  console.log(`listening on port ${port}`);
});
"""
POLL_MS = 10

# The push output's step lines, in order; each phase ends at its marker. The last phase,
# from "Launching" to the first answer with the new content, is timed by polling HTTP.
MARKERS = [
    ("Building ", "git push -> hook starts"),
    (("Installing dependencies", "Reusing dependencies"), "extract, detect runtime"),
    ("Discovering process types", "dependencies"),
    ("Checking that web boots", "Procfile, build metadata"),
    ("web answered on port", "boot check (trial boot, settle, stop)"),
    ("Launching ", "record the release"),
]
SWITCH = "switch: stop old web, start new, first answer"
PHASES = [name for _, name in MARKERS] + [SWITCH]


def sample_files(token, description=None):
    """The sample app's files with index.js answering `token` (and package.json's description changed if given)."""
    files = {"index.js": INDEX_JS % token}
    for name in ("Procfile", "package.json", "package-lock.json"):
        with open(os.path.join(SAMPLE, name)) as f:
            files[name] = f.read()
    if description is not None:
        package = json.loads(files["package.json"])
        package["description"] = description
        files["package.json"] = json.dumps(package, indent=2) + "\n"
    return files


def phases(lines, answer_s, markers=MARKERS):
    """Seconds per phase from the stamped push lines (None for a phase whose marker is missing)."""
    stamps = [0.0]
    for marker, _ in markers:
        keys = marker if isinstance(marker, tuple) else (marker,)
        stamps.append(next((t for t, line in lines if any(k in line for k in keys)), None))
    stamps.append(answer_s)
    out = {}
    for i, name in enumerate([name for _, name in markers] + [SWITCH]):
        a, b = stamps[i], stamps[i + 1]
        out[name] = round(b - a, 3) if a is not None and b is not None else None
    return out


def floor_env(checkout):
    """What tinyserv gives its builds and apps (appenv.base_env): the floor runs with the same."""
    import pwd
    user = pwd.getpwuid(os.getuid())
    return {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name, "LANG": "C.UTF-8",
            "PATH": os.path.join(checkout, "node_modules", ".bin") + ":" + common.BASE_PATH}


def stop_group(pgid, timeout=10):
    """SIGTERM a process group we started, SIGKILL it if it lingers; wait until it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not [p for p in common.live_pids() if _pgid(p) == pgid]:
                return
            time.sleep(0.02)


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def boot(checkout, command, token, timeout=60):
    """Start `command` like tinyserv does (sh -c, own session, PORT set); seconds to the first answer."""
    port = common.free_port()
    env = dict(floor_env(checkout), PORT=str(port))
    started = time.monotonic()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=checkout, env=env, stdin=subprocess.DEVNULL,
                                stdout=null, stderr=null, start_new_session=True)
    try:
        return common.wait_for_body(port, token, started, timeout=timeout, interval=POLL_MS / 1000)
    finally:
        stop_group(proc.pid)
        proc.wait()


class Floor:
    """The work a deploy cannot avoid, done by hand: push to a bare repo, check out, npm ci, boot."""

    def __init__(self, ts, name):
        self.ts = ts
        self.bare = os.path.join(ts.tmp, "floor", name + ".git")
        self.checkouts = os.path.join(ts.tmp, "floor", name + "-checkouts")
        os.makedirs(self.checkouts, exist_ok=True)
        common.run(["git", "init", "--bare", "-q", self.bare], env=ts.env)
        self.count = 0
        self.last = None

    def deploy(self, repo, token, install=True):
        """Time each step for repo's HEAD; install=False reuses the previous checkout's node_modules."""
        self.count += 1
        env = self.ts.env
        common.run(["git", "remote", "remove", "floor"], cwd=repo, env=env, check=False)
        common.run(["git", "remote", "add", "floor", self.bare], cwd=repo, env=env)
        push_s, code, lines = common.timed_push(repo, env, remote="floor")
        if code != 0:
            raise BenchError("floor push failed:\n" + "\n".join(l for _, l in lines))
        commit = common.run(["git", "rev-parse", "HEAD"], cwd=repo, env=env).stdout.strip()
        checkout = os.path.join(self.checkouts, "c%d" % self.count)
        t0 = time.monotonic()
        os.makedirs(checkout)
        archive = subprocess.Popen(["git", "--git-dir", self.bare, "archive", "--format=tar", commit],
                                   stdout=subprocess.PIPE, env=env)
        subprocess.run(["tar", "-x", "-C", checkout], stdin=archive.stdout, check=True)
        archive.stdout.close()
        if archive.wait() != 0:
            raise BenchError("git archive failed in the floor")
        checkout_s = time.monotonic() - t0
        result = {"push_s": push_s, "checkout_s": checkout_s}
        if install:
            t0 = time.monotonic()
            common.run(["npm", "ci"], cwd=checkout, env=floor_env(checkout), timeout=300)
            result["npm_ci_s"] = time.monotonic() - t0
        else:
            os.symlink(os.path.join(self.last, "node_modules"), os.path.join(checkout, "node_modules"))
        result["boot_s"] = boot(checkout, "npm start", token)
        result["total_s"] = sum(result.values())
        if self.last and install:
            shutil.rmtree(self.last, ignore_errors=True)
        if install:
            self.last = checkout
        return result


def port_of(ts, app):
    with open(os.path.join(ts.root, "releases", app + ".json")) as f:
        return json.load(f)["port"]


def tinyserv_deploy(ts, repo, app, token, markers=MARKERS, port=None):
    """Push repo to its app (with ts.env); a run dict: push start -> first answer with token, push time, phases
    (between markers' lines), output. port: where the new release answers (default: the app's, on this machine).

    HTTP polling (every POLL_MS) starts when the push says "Launching": the new release
    cannot answer earlier, and the build and boot check run unperturbed.
    """
    pollers = []

    def on_line(t, line):
        if "Launching " in line and not pollers:
            pollers.append(common.Poller(port or port_of(ts, app), every=POLL_MS / 1000))
            pollers[0].start()

    started = time.monotonic()
    push_s, code, lines = common.timed_push(repo, ts.env, on_line=on_line)
    if code != 0:
        raise BenchError("git push to %s failed:\n%s" % (app, "\n".join(l for _, l in lines)))
    if not pollers:
        on_line(0, "Launching ")
    try:
        answer_s = pollers[0].wait_for(token) - started
    except BenchError as e:
        last = pollers[0].answers[-1:] or ["nothing"]
        raise BenchError("%s (last answer: %s); the push said:\n%s" % (e, last, "\n".join(l for _, l in lines)))
    finally:
        pollers[0].stop()
    return {"answer_s": round(answer_s, 3), "push_s": round(push_s, 3),
            "push_ends_after_answer_s": round(push_s - answer_s, 3),
            "phases": phases(lines, answer_s, markers), "push_output": lines}


def summarize(runs, floors=None):
    """Median/min/max of push->answer and of each phase; with floors, the floor and the ratios."""
    out = {"push_to_answer_s": common.stats([r["answer_s"] for r in runs]),
           "push_s": common.stats([r["push_s"] for r in runs]),
           "push_ends_after_answer_median_s": round(common.median([r["push_ends_after_answer_s"] for r in runs]), 3),
           "phases_median_s": {p: (round(common.median([r["phases"][p] for r in runs]), 3)
                                   if all(r["phases"][p] is not None for r in runs) else None)
                               for p in runs[0]["phases"]},
           "runs": runs}
    if floors:
        out["floor"] = {k: common.stats([f[k] for f in floors]) for k in floors[0]}
        out["floor"]["runs"] = floors
        out["ratio"] = round(out["push_to_answer_s"]["median"] / out["floor"]["total_s"]["median"], 2)
        out["pair_ratios"] = [round(r["answer_s"] / f["total_s"], 2) for r, f in zip(runs, floors)]
        if "npm_ci_s" in floors[0]:
            # npm ci's own time swings by seconds (it revalidates package metadata online);
            # without it, what is left is what tinyserv adds to the unavoidable push and boot.
            out["without_npm_ci"] = {
                "tinyserv_s": common.stats([r["answer_s"] - r["phases"]["dependencies"] for r in runs]),
                "floor_s": common.stats([f["total_s"] - f["npm_ci_s"] for f in floors]),
                "tinyserv_npm_ci_s": common.stats([r["phases"]["dependencies"] for r in runs]),
            }
    return out


def show(title, summary):
    s = summary["push_to_answer_s"]
    line = "  %-44s %.2f s (%.2f-%.2f)" % (title, s["median"], s["min"], s["max"])
    if "floor" in summary:
        f = summary["floor"]["total_s"]
        line += "   floor %.2f s (%.2f-%.2f)   ratio %.2f" % (f["median"], f["min"], f["max"], summary["ratio"])
    print(line)
    if "pair_ratios" in summary:
        print("      ratio of each run to its floor: %s" % summary["pair_ratios"])
    if "without_npm_ci" in summary:
        w = summary["without_npm_ci"]
        print("      without npm ci: tinyserv %.2f s, floor %.2f s (npm ci inside tinyserv: %.2f s)" % (
            w["tinyserv_s"]["median"], w["floor_s"]["median"], w["tinyserv_npm_ci_s"]["median"]))
    shown = ["%s %.2f" % (p, v) for p, v in summary["phases_median_s"].items() if v is not None]
    print("      phases: " + ", ".join(shown))


def round_floor(f):
    return {k: round(v, 3) for k, v in f.items()}


def rollbacks(ts, repo, port, current, previous, repeat):
    """(d) `tinyserv rollback`, repeat times, alternating between the last two releases."""
    to_answer, commands = [], []
    for _ in range(repeat):
        poller = common.Poller(port, every=POLL_MS / 1000)
        started = time.monotonic()
        poller.start()
        try:
            ts.client("rollback", "-a", "bench", cwd=repo, timeout=120)
            commands.append(time.monotonic() - started)
            to_answer.append(poller.wait_for("release " + previous) - started)
        finally:
            poller.stop()
        current, previous = previous, current
    return {"command_to_answer_s": common.stats(to_answer), "command_s": common.stats(commands)}


def switch_gaps(ts, repo, port, description, repeat):
    """(e) Poll every POLL_MS during code-only redeploys; the longest stretch without an answer."""
    runs = []
    for i in range(1, repeat + 1):
        token = "gap-%d" % i
        common.commit_files(repo, sample_files(token, description=description), ts.env, token)
        poller = common.Poller(port, every=POLL_MS / 1000)
        poller.start()
        try:
            time.sleep(0.2)
            t0 = time.monotonic()
            push_s, code, lines = common.timed_push(repo, ts.env)
            if code != 0:
                raise BenchError("git push failed:\n" + "\n".join(l for _, l in lines))
            poller.wait_for(token)
            time.sleep(0.3)
            t1 = time.monotonic()
        finally:
            poller.stop()
        old = [t for t, body in poller.answers if token not in body and t0 <= t]
        runs.append({"longest_gap_s": round(poller.longest_gap(t0, t1), 3),
                     "failed_requests": len([t for t in poller.failures if t0 <= t <= t1]),
                     "answers": len([t for t, _ in poller.answers if t0 <= t <= t1]),
                     "last_old_answer_s": round(max(old) - t0, 3) if old else None,
                     "first_new_answer_s": round(poller.first(token) - t0, 3), "push_s": round(push_s, 3)})
    return {"interval_ms": POLL_MS, "longest_gap_s": common.stats([r["longest_gap_s"] for r in runs]), "runs": runs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--python", default=common.SERVER_PYTHON, help="the python3 put first on PATH for tinyserv")
    p.add_argument("--commit", help="measure this commit's bin/ and lib/ (exported to the temporary dir) "
                   "instead of the working tree")
    p.add_argument("--start-port", type=int, default=31100)
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    began = time.monotonic()
    result = {"benchmark": "deploy", "app": "sample-app (express)", "repeat": args.repeat,
              "machine": common.machine(args.python, args.commit), "phase_names": PHASES, "deploys": {}}
    print("tinyserv deploy benchmark: express sample app, %d repeats, %s (%s)" % (
        args.repeat, args.python, result["machine"]["server_python_version"]))
    with TinyservRoot(python=args.python, commit=args.commit, start_port=args.start_port,
                      ports_needed=args.repeat + 5) as ts:
        print("  temporary root %s, ports from %d" % (ts.root, ts.start_port))
        repo = os.path.join(ts.work, "bench")
        common.make_repo(repo, sample_files("warmup"), ts.env)
        # Warm-up, not measured: fills the npm cache (both sides use ~/.npm) and starts the supervisor.
        ts.client("apps:create", "bench", cwd=repo)
        tinyserv_deploy(ts, repo, "bench", "release warmup")
        floor_bench = Floor(ts, "bench")
        floor_bench.deploy(repo, "release warmup")
        port = port_of(ts, "bench")
        deployed = ["warmup"]  # tokens of the bench app's releases, oldest first

        runs, floors = [], []
        for i in range(1, args.repeat + 1):
            name, token = "first%d" % i, "first-%d" % i
            path = os.path.join(ts.work, name)
            common.make_repo(path, sample_files(token), ts.env)
            ts.client("apps:create", name, cwd=path)
            runs.append(tinyserv_deploy(ts, path, name, "release " + token))
            floors.append(round_floor(Floor(ts, name).deploy(path, "release " + token)))
            ts.client("apps:destroy", name, "--confirm", name, cwd=path)
        result["deploys"]["first"] = summarize(runs, floors)
        show("first deploy of a fresh app (npm ci)", result["deploys"]["first"])

        runs, floors = [], []
        for i in range(1, args.repeat + 1):
            token = "package-%d" % i
            common.commit_files(repo, sample_files(token, description="bench package change %d" % i), ts.env, token)
            runs.append(tinyserv_deploy(ts, repo, "bench", "release " + token))
            deployed.append(token)
            floors.append(round_floor(floor_bench.deploy(repo, "release " + token)))
        result["deploys"]["package_change"] = summarize(runs, floors)
        show("deploy changing package.json (npm ci)", result["deploys"]["package_change"])

        runs, floors = [], []
        description = "bench package change %d" % args.repeat  # unchanged from now on: dependencies are reused
        for i in range(1, args.repeat + 1):
            token = "code-%d" % i
            common.commit_files(repo, sample_files(token, description=description), ts.env, token)
            runs.append(tinyserv_deploy(ts, repo, "bench", "release " + token))
            deployed.append(token)
            floors.append(round_floor(floor_bench.deploy(repo, "release " + token, install=False)))
        result["deploys"]["code_only"] = summarize(runs, floors)
        show("code-only redeploy (dependencies reused)", result["deploys"]["code_only"])
        print("      (floor here: push + checkout + the previous node_modules + npm start to first answer)")

        result["rollback"] = rollbacks(ts, repo, port, deployed[-1], deployed[-2], args.repeat)
        r = result["rollback"]["command_to_answer_s"]
        print("  %-44s %.2f s (%.2f-%.2f)" % (
            "tinyserv rollback until old content answers", r["median"], r["min"], r["max"]))

        result["switch_gap"] = switch_gaps(ts, repo, port, description, args.repeat)
        g = result["switch_gap"]["longest_gap_s"]
        print("  %-44s %.3f s (%.3f-%.3f), failed requests per deploy: %s" % (
            "longest time without an answer during switch", g["median"], g["min"], g["max"],
            [r["failed_requests"] for r in result["switch_gap"]["runs"]]))
    return common.finish("deploy", result, began)


if __name__ == "__main__":
    common.run_main(main)
