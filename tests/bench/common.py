"""What the benchmarks share: a throwaway tinyserv root, commands, HTTP polling, /proc readers.

Stdlib only, so `python3 tests/bench/memory.py` runs anywhere tinyserv does. Everything
talks to 127.0.0.1, every loop has a deadline, and TinyservRoot.close() leaves no
process of ours behind.
"""

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import http.client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPO, "tests", "bench", "results")

sys.path.insert(0, os.path.join(REPO, "lib"))
from tinyserv.deploy.ports import free as port_free  # noqa: E402  the same "is this port free" tinyserv asks
SERVER_PYTHON = "/usr/bin/python3"  # Debian's, the server's Python in the e2e container
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"  # what tinyserv gives builds and apps (appenv.BASE_PATH)


class BenchError(Exception):
    """A step of a benchmark failed; the message says which command and what it printed."""


def interrupt_on_sigterm():
    """Make SIGTERM act like Ctrl-C, so a killed benchmark still shuts tinyserv down in its finally."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def run(argv, cwd=None, env=None, input=None, timeout=300, check=True):
    """Run argv; on failure raise BenchError with the command, exit code and output."""
    try:
        result = subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, text=True,
                                timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError("timed out after %d s: %s" % (timeout, " ".join(argv))) from None
    if check and result.returncode != 0:
        raise BenchError("command failed (exit %d): %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            result.returncode, " ".join(argv), result.stdout, result.stderr))
    return result


def http_get(port, timeout=1.0):
    """GET http://127.0.0.1:port/ -> body text, or None if nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        return response.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for_body(port, contains, started, timeout=120, interval=0.01):
    """Poll until the body contains `contains`; seconds since `started` (a monotonic time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = http_get(port, timeout=0.5)
        if body is not None and contains in body:
            return time.monotonic() - started
        time.sleep(interval)
    raise BenchError("port %d did not answer with %r within %d s" % (port, contains, timeout))


def free_block(first, count, last=39000):
    """The lowest port >= first where `count` consecutive ports are all free."""
    port = first
    while port + count <= last:
        busy = [p for p in range(port, port + count) if not port_free(p)]
        if not busy:
            return port
        port = busy[-1] + 1
    raise BenchError("no %d free consecutive ports between %d and %d" % (count, first, last))


def free_port():
    """An ephemeral port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def version_of(argv):
    try:
        return run(argv, check=False).stdout.strip() or run(argv, check=False).stderr.strip()
    except OSError:
        return None


def machine(server_python=SERVER_PYTHON, commit=None):
    """Facts a reader needs to compare numbers: cores, CPU, Pythons, node, npm, git, date, tinyserv's commit."""
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "server_python": server_python,
        "server_python_version": version_of([server_python, "--version"]),
        "node": version_of(["node", "--version"]),
        "npm": version_of(["npm", "--version"]),
        "git": version_of(["git", "--version"]),
        "loadavg_at_start": os.getloadavg()[0],
        "tinyserv": tinyserv_version(commit),  # other work on the machine skews timings
    }


def finish(name, result, began):
    """Stamp the run's duration and end load, write the result, say where; the script's exit code."""
    result["script_s"] = round(time.monotonic() - began, 1)
    result["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    path = write_result(name, result)
    print("  wrote %s (%.0f s in all)" % (os.path.relpath(path, REPO), result["script_s"]))
    return 0


def run_main(main):
    """A benchmark's entry point: its own errors are one line and exit 1, Ctrl-C exits 130."""
    try:
        sys.exit(main())
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def write_result(name, data):
    """bench/results/<name>.json, then the Markdown tables from every result file."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)
    import tables
    tables.main()
    return path


def median(values):
    values = sorted(values)
    n = len(values)
    return None if not n else (values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2)


def stats(values):
    """{median, min, max, runs} of a list of seconds, rounded to milliseconds."""
    return {"median": round(median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "runs": [round(v, 3) for v in values]}


# --- /proc ------------------------------------------------------------------------------------


def read_status_kb(pid, field):
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM), or None."""
    with contextlib.suppress(OSError), open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def read_rollup_kb(pid):
    """Pss and private (USS) kB from /proc/PID/smaps_rollup, or {}."""
    out = {}
    with contextlib.suppress(OSError), open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].rstrip(":") in ("Pss", "Private_Clean", "Private_Dirty", "Rss"):
                out[parts[0].rstrip(":")] = int(parts[1])
    if out:
        out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def cmdline(pid):
    with contextlib.suppress(OSError), open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return ""


def environ_has(pid, assignment):
    with contextlib.suppress(OSError), open("/proc/%d/environ" % pid, "rb") as f:
        return assignment.encode() in f.read().split(b"\0")
    return False


def state_letter(pid):
    with contextlib.suppress(OSError), open("/proc/%d/stat" % pid) as f:
        data = f.read()
        return data[data.rindex(")") + 2]
    return None


def live_pids():
    """Every pid that is not a zombie."""
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and state_letter(int(n)) not in (None, "Z", "X")]


def wait_for_ssh(server, timeout=120):
    """Poll until `server.ssh("true")` (an argument list, run with server.env) succeeds."""
    deadline = time.monotonic() + timeout
    while run(server.ssh("true"), env=server.env, check=False, timeout=20).returncode != 0:
        if time.monotonic() > deadline:
            raise BenchError("ssh to the container did not answer within %d s" % timeout)
        time.sleep(0.2)


def node_pid(app):
    """The local node process of app's web.1 (found by the environment tinyserv gives it)."""
    for pid in live_pids():
        if environ_has(pid, "TINYSERV_APP=" + app) and environ_has(pid, "DYNO=web.1"):
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "node":
                    return pid
    raise BenchError("no node process for %s's web.1" % app)


def parent_of(pid):
    with contextlib.suppress(OSError, ValueError), open("/proc/%d/stat" % pid) as f:
        data = f.read()
        return int(data[data.rindex(")") + 2:].split()[1])
    return None


def cwd_of(pid):
    with contextlib.suppress(OSError):
        return os.readlink("/proc/%d/cwd" % pid)
    return None


# --- a throwaway tinyserv root ------------------------------------------------------------------


def export_tinyserv(commit, dest):
    """bin/ and lib/ of a commit into dest: a snapshot that others' uncommitted edits cannot change mid-run."""
    os.makedirs(dest)
    archive = subprocess.Popen(["git", "-C", REPO, "archive", "--format=tar", commit, "bin", "lib"],
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise BenchError("git archive %s failed" % commit)
    return dest


def tinyserv_version(commit=None):
    """Which tinyserv was measured: a commit, or the working tree (and whether bin/ or lib/ had edits)."""
    head = run(["git", "-C", REPO, "rev-parse", "--short", commit or "HEAD"], check=False).stdout.strip()
    if commit:
        return {"measured": "commit %s" % head, "commit": head, "uncommitted_edits": False}
    dirty = bool(run(["git", "-C", REPO, "status", "--porcelain", "--", "bin", "lib"], check=False).stdout.strip())
    return {"measured": "working tree at %s%s" % (head, " with uncommitted edits in bin/ or lib/" if dirty else ""),
            "commit": head, "uncommitted_edits": dirty}


class TinyservRoot:
    """A temporary TINYSERV_ROOT in localhost mode, with the chosen Python first on PATH.

    The supervisor runs under sys.executable of whoever started it, so the Python
    first on PATH (via bin/tinyserv's `#!/usr/bin/env python3`) decides which one we measure.
    """

    def __init__(self, python=SERVER_PYTHON, start_port=31000, ports_needed=60, commit=None,
                 prefix="tinyserv-bench-"):
        self.start_port = free_block(start_port, ports_needed + 2)
        self.http_port, self.https_port = self.start_port + ports_needed, self.start_port + ports_needed + 1
        self.python = python
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        try:
            self.tree = export_tinyserv(commit, os.path.join(self.tmp, "tinyserv")) if commit else REPO
            # Compiled first, as `tinyserv server:install` leaves a server: else every tinyserv process
            # would compile its modules again where PYTHONDONTWRITEBYTECODE is set (it is on our machines).
            run([python, "-m", "compileall", "-q", os.path.join(self.tree, "lib")])
            self.client_path = os.path.join(self.tree, "bin", "tinyserv")
            self.remote_path = os.path.join(self.tree, "bin", "tinyserv-remote")
            self.root = os.path.join(self.tmp, "root")
            self.work = os.path.join(self.tmp, "work")
            os.makedirs(self.work)
            self.env = self.environment(python)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def environment(self, python):
        """Our environment without tinyserv's or git's variables, the chosen python3 first on PATH."""
        if os.path.basename(python) == "python3":
            pybin = os.path.dirname(os.path.abspath(python))  # e.g. /usr/bin, as on the server
        else:
            pybin = os.path.join(self.tmp, "pybin")
            os.makedirs(pybin)
            os.symlink(os.path.realpath(python), os.path.join(pybin, "python3"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSERV_", "GIT_", "VIRTUAL_ENV"))}
        env.update(PATH=pybin + ":" + BASE_PATH + ":" + env.get("PATH", ""),
                   TINYSERV_ROOT=self.root, TINYSERV_START_PORT=str(self.start_port), NO_COLOR="1",
                   # nginx's ports (where nginx is installed) from the block too: never 80 and 443 on this machine
                   TINYSERV_HTTP_PORT=str(self.http_port), TINYSERV_HTTPS_PORT=str(self.https_port),
                   GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@tinyserv.invalid",
                   GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@tinyserv.invalid")
        return env

    def client(self, *args, cwd=None, timeout=300):
        return run([self.client_path, *args], cwd=cwd or self.work, env=self.env, timeout=timeout)

    def remote(self, *args, timeout=300, check=True):
        return run([self.remote_path, *args], cwd=self.work, env=self.env, timeout=timeout, check=check)

    def git(self, *args, cwd, timeout=120):
        return run(["git", *args], cwd=cwd, env=self.env, timeout=timeout)

    def supervisor_pid(self):
        with contextlib.suppress(OSError, ValueError), open(os.path.join(self.root, "run", "supervisor.pid")) as f:
            return int(f.read())
        return None

    def own_processes(self):
        """tinyserv's own live processes for this root: pid -> command line (apps excluded).

        The supervisor and any tinyserv-remote command inherit TINYSERV_ROOT; apps get an
        environment built from scratch (appenv) and so never carry it.
        """
        me = os.getpid()
        found = {}
        for pid in live_pids():
            if pid != me and environ_has(pid, "TINYSERV_ROOT=" + self.root):
                line = cmdline(pid)
                if "tinyserv" in line:
                    found[pid] = line
        return found

    def nginx_processes(self):
        """nginx's master and workers running for this root (the front door), pid -> command line."""
        with contextlib.suppress(OSError, ValueError, KeyError), open(os.path.join(self.root, "run",
                                                                                  "services.json")) as f:
            master = json.load(f)["services"]["nginx"]["pid"]
            return {pid: cmdline(pid) for pid in live_pids() if pid == master or parent_of(pid) == master}
        return {}

    def app_processes(self):
        """Live processes whose working directory is inside this root (the apps, their npm and sh)."""
        return [pid for pid in live_pids() if (cwd_of(pid) or "").startswith(self.root + os.sep)]

    def close(self):
        """Shut tinyserv down, kill whatever of ours is left (by pid), delete the temporary tree."""
        if os.path.isdir(self.root):
            with contextlib.suppress(BenchError, OSError):
                self.remote("shutdown", timeout=120, check=False)
        leftovers = set(self.app_processes()) | set(self.own_processes())
        for pid in leftovers:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while leftovers and time.monotonic() < deadline:
            leftovers = {p for p in leftovers if state_letter(p) not in (None, "Z", "X")}
            time.sleep(0.05)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return sorted(leftovers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        left = self.close()
        if left:
            print("warning: processes still alive after cleanup: %s" % left)


def make_repo(path, files, env):
    """A git repository on branch main with `files` ({name: text}) committed; returns the commit."""
    os.makedirs(path, exist_ok=True)
    run(["git", "init", "-q", "-b", "main"], cwd=path, env=env)
    return commit_files(path, files, env, "initial")


def commit_files(path, files, env, message):
    """Write files ({name: text}) into the repository and commit them; return the commit id."""
    for name, text in files.items():
        full = os.path.join(path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    run(["git", "add", "-A"], cwd=path, env=env)
    run(["git", "commit", "-q", "-m", message], cwd=path, env=env)
    return run(["git", "rev-parse", "HEAD"], cwd=path, env=env).stdout.strip()


def timed_push(cwd, env, remote="tinyserv", ref="main", timeout=300, on_line=None):
    """`git push`, its output lines stamped with seconds since the push started.

    Returns (seconds, exit code, [(t, line)]). git relays the hook's lines as they
    come (sideband), so the stamps tell where a deploy spends its time. on_line(t, line)
    is called as each line arrives.
    """
    started = time.monotonic()
    proc = subprocess.Popen(["git", "push", remote, ref], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for raw in proc.stdout:
            stamped = (round(time.monotonic() - started, 3), raw.decode("utf-8", "replace").rstrip())
            lines.append(stamped)
            if on_line:
                on_line(*stamped)
        proc.wait()
    finally:
        watchdog.cancel()
    return time.monotonic() - started, proc.returncode, lines


class Poller(threading.Thread):
    """GET 127.0.0.1:port every `every` seconds until stopped (at most `limit` s); keeps every answer."""

    def __init__(self, port, every=0.01, limit=180):
        super().__init__(daemon=True)
        self.port = port
        self.every = every
        self.limit = limit
        self.halt = threading.Event()
        self.answers = []  # (monotonic time the answer arrived, body)
        self.failures = []  # monotonic times of requests that got no answer

    def run(self):
        deadline = time.monotonic() + self.limit
        while not self.halt.is_set() and time.monotonic() < deadline:
            body = http_get(self.port, timeout=0.5)
            if body is None:
                self.failures.append(time.monotonic())
            else:
                self.answers.append((time.monotonic(), body.strip()))
            self.halt.wait(self.every)

    def first(self, text):
        """When an answer containing text first arrived (monotonic), or None."""
        return next((t for t, body in list(self.answers) if text in body), None)

    def wait_for(self, text, timeout=60):
        """Block until an answer contains text; its arrival time (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.first(text)
            if t is not None:
                return t
            time.sleep(self.every)
        raise BenchError("port %d did not answer with %r within %d s" % (self.port, text, timeout))

    def stop(self):
        self.halt.set()
        self.join(5)

    def longest_gap(self, start, end):
        """The longest time between two answers (or the window's edges) within [start, end]."""
        times = [start] + [t for t, _ in list(self.answers) if start <= t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))
