"""What one app writing output nonstop costs the others: the supervisor's CPU and memory, how fast another
app's crashed web serves again, and how long `tinyserv ps` takes.

50 quiet no-dependency node apps are deployed with `git push` (localhost mode, temporary root). Then, first
without and then with one more app whose worker runs `yes` (nonstop output):
  - the supervisor's CPU, in % of one core: utime+stime from /proc/PID/stat over a fixed window;
  - resident memory (VmRSS, PSS) of the supervisor and of its standby;
  - SIGKILL of one quiet app's node process until that app answers HTTP again (a different app each trial:
    a second crash of one app within 60 s would wait out a 2 s backoff), next to the time a bare
    `node server.js` takes from start to first answer, measured in the same phase;
  - `tinyserv ps -a APP` from start to exit.
Then, with the noisy app still running, SIGKILL of the supervisor until its standby answers on the control socket.
Medians of --trials (default 5). Everything talks to 127.0.0.1 and every wait has a deadline.

    python3 tests/bench/noisy.py
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402
from memory import app_files, deploy_apps, ports_of, wait_all_answer  # noqa: E402

APPS = 50
WINDOW = 10.0  # seconds of CPU accounting per phase
NOISY = "noisy"
NOISY_PROCFILE = "web: node server.js\nworker: yes tinyserv-noisy-output\n"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_percent(pid, window, log=None):
    """The share of one core pid used over the next `window` seconds, and (given a log) the log's growth per second."""
    before, started = cpu_seconds(pid), time.monotonic()
    growth = LogGrowth(log) if log else None
    while time.monotonic() - started < window:
        time.sleep(0.05)
        if growth:
            growth.sample()
    elapsed = time.monotonic() - started
    return round(100 * (cpu_seconds(pid) - before) / elapsed, 2), growth and round(growth.total / elapsed)


class LogGrowth:
    """Bytes appended to an app log, across its rotations into app.log.1 (sampled often enough to see each one)."""

    def __init__(self, path):
        self.path = path
        self.inode, self.size = self.look()
        self.total = 0

    def look(self):
        try:
            st = os.stat(self.path)
            return st.st_ino, st.st_size
        except FileNotFoundError:
            return None, 0

    def sample(self):
        inode, size = self.look()
        if inode != self.inode:  # rotated: the old file is app.log.1 now
            try:
                self.total += os.path.getsize(self.path + ".1") - self.size
            except FileNotFoundError:
                pass
            self.size = 0
        self.total += size - self.size
        self.inode, self.size = inode, size


def memory_mb(pid):
    """{rss_mb, pss_mb} of one process."""
    rollup = common.read_rollup_kb(pid)
    return {"rss_mb": round((common.read_status_kb(pid, "VmRSS") or 0) / 1024, 1),
            "pss_mb": round(rollup.get("Pss", 0) / 1024, 1)}


def standby_pid(ts):
    """The standby supervisor's pid (it waits with `supervise --standby`), or None."""
    return next((pid for pid, line in ts.own_processes().items() if "--standby" in line), None)


def restart_time(app, port):
    """SIGKILL app's node process; seconds until app answers HTTP again (polled every 10 ms)."""
    pid = common.node_pid(app)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return common.wait_for_body(port, app, started, timeout=60)


def node_boot(directory, name):
    """Seconds from starting a bare `node server.js` until its first HTTP answer."""
    port = common.free_port()
    env = dict(os.environ, PORT=str(port))
    started = time.monotonic()
    proc = subprocess.Popen(["node", "server.js"], cwd=directory, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return common.wait_for_body(port, name, started, timeout=60)
    finally:
        proc.kill()
        proc.wait()


def ps_time(ts, app):
    """Seconds `tinyserv ps -a app` takes."""
    started = time.monotonic()
    ts.client("ps", "-a", app, timeout=60)
    return time.monotonic() - started


def phase(ts, label, victims, ports, boot_dir, window, log=None):
    """One look at the supervisor: CPU over window, memory, restart and ps times, bare node boots."""
    sup, standby = ts.supervisor_pid(), standby_pid(ts)
    if not standby:
        raise BenchError("no standby supervisor runs")
    cpu, growth = cpu_percent(sup, window, log)
    result = {"cpu_percent": cpu, "supervisor": memory_mb(sup), "standby": memory_mb(standby)}
    if growth is not None:
        result["noisy_log_bytes_per_s"] = growth
    restarts, boots, ps = [], [], []
    for app in victims:
        restarts.append(restart_time(app, ports[app]))
        boots.append(node_boot(boot_dir, "bench-boot"))
        ps.append(ps_time(ts, app))
    result.update(restart_s=common.stats(restarts), node_boot_s=common.stats(boots), ps_s=common.stats(ps))
    result["restart_minus_boot_s"] = round(result["restart_s"]["median"] - result["node_boot_s"]["median"], 3)
    print("  %-8s supervisor CPU %5.1f%% of a core, RSS %.1f MB (PSS %.1f), standby RSS %.1f MB (PSS %.1f); "
          "restart %.2f s vs bare node boot %.2f s; ps %.2f s" % (
              label, result["cpu_percent"], result["supervisor"]["rss_mb"], result["supervisor"]["pss_mb"],
              result["standby"]["rss_mb"], result["standby"]["pss_mb"], result["restart_s"]["median"],
              result["node_boot_s"]["median"], result["ps_s"]["median"]))
    return result


def ping(sock_path):
    """The pid of the supervisor answering on sock_path, or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1)
            conn.connect(sock_path)
            conn.sendall(b'{"cmd": "ping"}\n')
            return json.loads(conn.makefile().readline()).get("pid")
    except (OSError, ValueError):
        return None


def takeover_time(ts, timeout=30):
    """SIGKILL the supervisor (once a standby waits); seconds until another one answers on the control socket."""
    deadline = time.monotonic() + timeout
    while not standby_pid(ts) and time.monotonic() < deadline:
        time.sleep(0.05)
    old = ts.supervisor_pid()
    sock = os.path.join(ts.root, "run", "supervisor.sock")
    started = time.monotonic()
    os.kill(old, signal.SIGKILL)
    while time.monotonic() < deadline:
        pid = ping(sock)
        if pid and pid != old:
            return time.monotonic() - started
        time.sleep(0.01)
    raise BenchError("no supervisor answered within %d s of killing pid %d" % (timeout, old))


def noisy_log(ts):
    """Sizes of the noisy app's log files and how many throttling notices they hold."""
    path = os.path.join(ts.root, "apps", NOISY, "log", "app.log")
    sizes, notices = {}, 0
    for name in (path, path + ".1"):
        if os.path.exists(name):
            sizes[os.path.basename(name)] = os.path.getsize(name)
            with open(name, "rb") as f:
                notices += f.read().count(b"Error L10")
    return {"sizes": sizes, "throttle_notices": notices}


def wait_for_output(ts, timeout=30):
    """Until the noisy worker's lines reach its log."""
    path = os.path.join(ts.root, "apps", NOISY, "log", "app.log")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            if b"worker.1: tinyserv-noisy-output" in f.read():
                return
        time.sleep(0.1)
    raise BenchError("the noisy worker's output did not reach its log within %d s" % timeout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--window", type=float, default=WINDOW, help="seconds of CPU accounting per phase")
    p.add_argument("--python", default=common.SERVER_PYTHON, help="the python3 put first on PATH for tinyserv")
    p.add_argument("--commit", help="measure this commit's bin/ and lib/ instead of the working tree")
    p.add_argument("--start-port", type=int, default=31200)
    args = p.parse_args(argv)
    if 2 * args.trials > APPS:
        raise BenchError("at most %d trials (each kills a different app)" % (APPS // 2))
    common.interrupt_on_sigterm()
    began = time.monotonic()
    result = {"benchmark": "noisy", "apps": APPS, "window_s": args.window, "trials": args.trials,
              "noisy_procfile": NOISY_PROCFILE, "machine": common.machine(args.python, args.commit)}
    print("tinyserv noisy-neighbour benchmark: %d apps, %d trials, %.0f s CPU windows" % (
        APPS, args.trials, args.window))
    with TinyservRoot(python=args.python, commit=args.commit, start_port=args.start_port,
                      ports_needed=APPS + 10) as ts, tempfile.TemporaryDirectory() as boot_dir:
        with open(os.path.join(boot_dir, "server.js"), "w") as f:
            f.write(app_files("bench-boot")["server.js"])
        names = ["app%02d" % i for i in range(1, APPS + 1)]
        push_times = []
        deploy_apps(ts, names, push_times)
        ports = ports_of(ts, names)
        wait_all_answer(ports, time.monotonic(), timeout=60)
        print("  %d apps deployed (median push %.2f s)" % (APPS, common.median(push_times)))
        result["quiet"] = phase(ts, "quiet", names[:args.trials], ports, boot_dir, args.window)

        files = dict(app_files(NOISY), Procfile=NOISY_PROCFILE)
        path = os.path.join(ts.work, NOISY)
        common.make_repo(path, files, ts.env)
        ts.client("apps:create", NOISY, cwd=path)
        seconds, code, lines = common.timed_push(path, ts.env)
        if code != 0:
            raise BenchError("git push of %s failed:\n%s" % (NOISY, "\n".join(l for _, l in lines)))
        wait_for_output(ts)
        result["noisy"] = phase(ts, "noisy", names[args.trials:2 * args.trials], ports, boot_dir, args.window,
                                log=os.path.join(ts.root, "apps", NOISY, "log", "app.log"))
        print("  the noisy app's log grew by %.0f KiB/s" % (result["noisy"]["noisy_log_bytes_per_s"] / 1024))
        result["takeover_s"] = common.stats([takeover_time(ts) for _ in range(args.trials)])
        print("  SIGKILL of the supervisor until its standby answers: median %.3f s" % result["takeover_s"]["median"])
        result["noisy"]["log"] = noisy_log(ts)
        result["log_max_bytes"] = 5 * 1024 * 1024
        print("  the noisy app's log: %s, %d throttling notices" % (
            result["noisy"]["log"]["sizes"], result["noisy"]["log"]["throttle_notices"]))
    return common.finish("noisy", result, began)


if __name__ == "__main__":
    common.run_main(main)
