"""Apps that keep data: how long a whole-server backup and restore take, how big the archive is, and what the
supervisor weighs with cron jobs and Redis add-ons running.

Backup/restore (on this machine, localhost mode): 10 no-dependency apps deployed with `git push`, each with
100 MB in its data directory (random bytes: incompressible, like uploads), backed up with
`tinyserv-remote backup FILE` while they run, then restored with `tinyserv-remote restore FILE` into a
second root with another START_PORT, until every app answers again; the files are checked byte for byte.

Memory (in the e2e image, which has redis-server): the supervisor's RSS/PSS with 10 apps, then with a cron
job every minute in each and a Redis add-on each, sampled across a minute boundary while the jobs run.

    python3 tests/bench/data.py                 # both parts (the memory part needs Docker and the e2e image)
    python3 tests/bench/data.py --part backup   # only the backup/restore part
"""

import argparse
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402

APPS = 10
MB_PER_APP = 100
FILE_MB = 4
IMAGE = "tinyserv-e2e:latest"
WEB = "web: python3 -m http.server $PORT --bind 127.0.0.1\n"
CRON = json.dumps({"cron": [{"command": "echo tick from $DYNO", "schedule": "* * * * *"}]})


def deploy_apps(ts, count, files, prefix):
    """count apps, each created and pushed (a Python http.server: no dependencies to install)."""
    names = []
    for n in range(count):
        name = "%s%02d" % (prefix, n)
        path = os.path.join(ts.work, name)
        common.make_repo(path, files, ts.env)
        ts.client("apps:create", name, cwd=path)
        ts.git("push", "tinyserv", "main", cwd=path, timeout=300)
        names.append(name)
    return names


def fill(path, megabytes, seed):
    """megabytes of random data in FILE_MB files under path; their SHA-256 ({name: hex})."""
    os.makedirs(path, exist_ok=True)
    hashes = {}
    for n in range(megabytes // FILE_MB):
        data = hashlib.shake_256(b"%s-%d" % (seed.encode(), n)).digest(FILE_MB * 1024 * 1024)
        name = "upload-%03d.bin" % n
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


def wait_all_answer(ts, names, timeout=120):
    """Seconds until every app answers HTTP on its port."""
    started = time.monotonic()
    ports = [json.loads(ts.client("apps:info", "-a", n, "--json").stdout)["port"] for n in names]
    for port in ports:
        common.wait_for_body(port, "", started, timeout)
    return time.monotonic() - started


def backup_part():
    """Backup and restore of APPS apps with MB_PER_APP MB each; a result dict."""
    with TinyservRoot(start_port=31300, ports_needed=APPS + 5, prefix="tinyserv-bench-data-") as source, \
            TinyservRoot(start_port=31400, ports_needed=APPS + 5, prefix="tinyserv-bench-restore-") as target:
        names = deploy_apps(source, APPS, {"Procfile": WEB, "app.json": CRON}, "keep")
        expected = {n: fill(os.path.join(source.root, "apps", n, "data"), MB_PER_APP, n) for n in names}
        archive = os.path.join(source.tmp, "server.tar.gz")
        os.sync()
        started = time.monotonic()
        out = source.remote("backup", archive, timeout=1800)
        backup_s = time.monotonic() - started
        size = os.path.getsize(archive)
        os.sync()
        started = time.monotonic()
        target.remote("restore", archive, timeout=1800)
        restore_s = time.monotonic() - started
        answer_s = wait_all_answer(target, names)
        for name, hashes in expected.items():
            for file, digest in hashes.items():
                with open(os.path.join(target.root, "apps", name, "data", file), "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != digest:
                        raise BenchError("%s's %s differs after the restore" % (name, file))
        return {"apps": APPS, "mb_per_app": MB_PER_APP, "data_mb": APPS * MB_PER_APP,
                "backup_s": round(backup_s, 2), "archive_mb": round(size / 1024 / 1024, 1),
                "restore_s": round(restore_s, 2), "answer_after_restore_s": round(answer_s, 2),
                "backup_says": out.stderr.strip().splitlines()[-1],
                "data": "random, incompressible bytes in %d MB files" % FILE_MB}


# --- memory, inside the e2e image ---------------------------------------------------------------------


def supervisor_memory(ts, seconds, every=0.5):
    """The supervisor's largest RSS/PSS/USS (MB) and the Redis servers' summed PSS over `seconds`."""
    worst = {"rss": 0, "pss": 0, "uss": 0, "redis_pss": 0, "redis_rss": 0, "cron_runs_seen": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pid = ts.supervisor_pid()
        rollup = common.read_rollup_kb(pid) if pid else {}
        worst["rss"] = max(worst["rss"], common.read_status_kb(pid, "VmRSS") or 0)
        worst["pss"] = max(worst["pss"], rollup.get("Pss", 0))
        worst["uss"] = max(worst["uss"], rollup.get("Uss", 0))
        redis = [p for p in common.live_pids() if "redis-server" in common.cmdline(p)]
        worst["redis_pss"] = max(worst["redis_pss"], sum(common.read_rollup_kb(p).get("Pss", 0) for p in redis))
        worst["redis_rss"] = max(worst["redis_rss"], sum(common.read_status_kb(p, "VmRSS") or 0 for p in redis))
        worst["redis_servers"] = len(redis)
        time.sleep(every)
    return {k: round(v / 1024, 1) if k not in ("redis_servers", "cron_runs_seen") else v for k, v in worst.items()}


def memory_part_inside():
    """Run in the container: baseline, then cron jobs and Redis add-ons; prints a JSON result."""
    with TinyservRoot(start_port=5000, ports_needed=APPS + 5, prefix="tinyserv-bench-mem-") as ts:
        names = deploy_apps(ts, APPS, {"Procfile": WEB}, "plain")
        baseline = supervisor_memory(ts, 5)
        for name in names:
            path = os.path.join(ts.work, name)
            common.commit_files(path, {"app.json": CRON}, ts.env, "cron")
            ts.git("push", "tinyserv", "main", cwd=path, timeout=300)
            ts.client("addons:create", "redis", "-a", name)
        wait = 60 - time.time() % 60 + 5  # across the next minute boundary, while every job runs
        loaded = supervisor_memory(ts, wait + 10)
        logs = sum(ts.client("logs", "-a", n, "--ps", "scheduler", "-n", "10").stdout.count("tick from scheduler.1")
                   for n in names)
        loaded["cron_runs_seen"] = logs
        machine = common.machine()
        machine["loadavg_at_end"] = os.getloadavg()[0]
        print(json.dumps({"apps": APPS, "baseline": baseline, "with_cron_and_redis": loaded, "machine": machine}))


def memory_part():
    """Run memory_part_inside() in a container of the e2e image with this checkout mounted; its result."""
    image = os.environ.get("TINYSERV_BENCH_IMAGE", IMAGE)
    argv = ["docker", "run", "--rm", "-v", "%s:/src:ro" % common.REPO, "-e", "HOME=/root", "--entrypoint",
            "python3", image, "/src/tests/bench/data.py", "--inside-memory"]
    result = common.run(argv, timeout=900)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["machine"]["tinyserv"] = common.tinyserv_version()  # the checkout's git is not in the container
    return measured


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["backup", "memory", "all"], default="all")
    parser.add_argument("--inside-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside_memory:
        memory_part_inside()
        return 0
    common.interrupt_on_sigterm()
    began = time.monotonic()
    previous = {}
    path = os.path.join(common.RESULTS, "data.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
    result = {"machine": common.machine()}
    result["backup"] = backup_part() if args.part in ("backup", "all") else previous.get("backup")
    print("backup:", result["backup"])
    result["memory"] = memory_part() if args.part in ("memory", "all") else previous.get("memory")
    print("memory:", result["memory"])
    return common.finish("data", result, began)


if __name__ == "__main__":
    common.run_main(main)
