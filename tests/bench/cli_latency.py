"""CLI latency over real ssh: `tinyserv ps`, the first one (which opens the shared ssh connection) and a repeated
one (through it), side by side with a fresh `ssh host true`, all in one run against the e2e container's sshd.

A container of the e2e image's `bare` stage (Debian, sshd, no tinyserv) is started with this run's key on a
random loopback port; `tinyserv server:install` installs the working tree there and a no-dependency node app is
deployed. Then, --rounds times, interleaved so that load on the machine hits every measure alike:
  - a fresh `ssh host true` (no shared connection: ControlMaster=no, ControlPath=none);
  - the first `tinyserv ps`: the shared connection is closed before (ssh -O exit), so this one opens it;
  - a repeated `tinyserv ps`, through that connection;
  - `tinyserv ps` with TINYSERV_SSH_REUSE=0 (every command a fresh connection, as before);
  - through the shared connection: `ssh host true`, and `tinyserv-remote ps APP` alone (the server's part).
And the server's side alone: the import time of `tinyserv-remote ps` (python3 -X importtime) next to a bare
`python3 -c pass`. The client runs under Debian's /usr/bin/python3 (first on PATH), as on the server.
Needs Docker and the docker SDK: run it with the e2e tox environment's Python.

    .tox/e2e/bin/python tests/bench/cli_latency.py [--rounds 20]
"""

import argparse
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import common  # noqa: E402
from common import REPO, BenchError  # noqa: E402

TINYSERV = os.path.join(REPO, "bin", "tinyserv")
APP = "latency"
SSH = "/usr/bin/ssh"


def ssh_options(key):
    return ["-i", key, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"]


class Bench:
    """The container, the client's environment, and the commands timed."""

    def __init__(self, key, port, runtime):
        self.key, self.port, self.runtime = key, port, runtime
        self.control_path = None  # the shared connection's socket: find_shared() once tinyserv has opened it
        self.env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin:/usr/local/bin",
                    "LANG": "C.UTF-8", "XDG_RUNTIME_DIR": runtime, "GIT_AUTHOR_NAME": "bench",
                    "GIT_AUTHOR_EMAIL": "bench@tinyserv.invalid", "GIT_COMMITTER_NAME": "bench",
                    "GIT_COMMITTER_EMAIL": "bench@tinyserv.invalid",
                    "TINYSERV_REMOTE": "ssh://deploy@127.0.0.1:%d" % port,
                    "GIT_SSH_COMMAND": shlex.join([SSH] + ssh_options(key))}

    def ssh(self, *words, shared=False):
        """ssh to the container: through the shared connection, or a fresh one."""
        sharing = ["-o", "ControlPath=" + self.control_path] if shared else [
            "-o", "ControlMaster=no", "-o", "ControlPath=none"]
        return [SSH] + ssh_options(self.key) + sharing + ["-p", str(self.port), "deploy@127.0.0.1", *words]

    def timed(self, argv, env=None, cwd=None):
        """Seconds argv took; it must succeed."""
        started = time.perf_counter()
        common.run(argv, env=env or self.env, cwd=cwd, timeout=60)
        return time.perf_counter() - started

    def find_shared(self):
        """The socket of the connection tinyserv shares (it names it itself, one per ssh command, host and port)."""
        directory = os.path.join(self.runtime, "tinyserv-ssh")
        sockets = [os.path.join(directory, n) for n in os.listdir(directory)
                   if stat.S_ISSOCK(os.lstat(os.path.join(directory, n)).st_mode)]
        if len(sockets) != 1:
            raise BenchError("expected one shared ssh connection in %s, found %s" % (directory, sockets))
        self.control_path = sockets[0]

    def close_shared(self):
        """Close the shared connection and wait until its socket is gone."""
        common.run(self.ssh("-O", "exit", shared=True), env=self.env, check=False, timeout=30)
        deadline = time.monotonic() + 10
        while os.path.exists(self.control_path):
            if time.monotonic() > deadline:
                raise BenchError("the shared ssh connection did not close")
            time.sleep(0.01)


def start_container(tag):
    """docker run the bare image on a random loopback ssh port; (container id, host port)."""
    out = common.run(["docker", "run", "-d", "--rm", "-p", "127.0.0.1::22", "--tmpfs", "/run:rw,nosuid,nodev,mode=755",
                      "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777", tag]).stdout.strip()
    port = common.run(["docker", "port", out, "22/tcp"]).stdout.split(":")[-1].strip()
    return out, int(port)


def deploy(bench, directory):
    """Install the working tree on the server, create and push a no-dependency node app; its repository."""
    common.run([TINYSERV, "server:install"], env=bench.env, timeout=300)
    repo = os.path.join(directory, APP)
    files = {"package.json": json.dumps({"name": APP, "version": "1.0.0", "private": True}),
             "Procfile": "web: node server.js\n",
             "server.js": "require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);\n"}
    common.make_repo(repo, files, bench.env)
    common.run([TINYSERV, "apps:create", APP], cwd=repo, env=bench.env)
    common.run(["git", "push", "tinyserv", "main"], cwd=repo, env=bench.env, timeout=300)
    return repo


def import_ms(stderr):
    """Milliseconds of imports after start-up (the top-level imports past `site`) in -X importtime's output."""
    total, past_site = 0, False
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if name.strip() == "package":
            continue  # the header
        if not name.startswith("  ") and name.strip():
            if past_site:
                total += int(cumulative)
            past_site = past_site or name.strip() == "site"
    return total / 1000


def measure(bench, repo, rounds):
    samples = {k: [] for k in ("ssh_true", "first", "repeated", "no_reuse", "shared_ssh_true", "shared_remote_ps")}
    ps = [TINYSERV, "ps"]
    bench.timed(ps, cwd=repo)  # opens the shared connection, whose socket the shared measures use
    bench.find_shared()
    remote_ps = bench.ssh("tinyserv-remote ps %s </dev/null" % APP, shared=True)
    for i in range(rounds):
        samples["ssh_true"].append(bench.timed(bench.ssh("true")))
        bench.close_shared()
        samples["first"].append(bench.timed(ps, cwd=repo))
        samples["repeated"].append(bench.timed(ps, cwd=repo))
        samples["shared_ssh_true"].append(bench.timed(bench.ssh("true", shared=True)))
        samples["shared_remote_ps"].append(bench.timed(remote_ps))
        samples["no_reuse"].append(bench.timed(ps, env=dict(bench.env, TINYSERV_SSH_REUSE="0"), cwd=repo))
        print("  round %d/%d: ssh true %.0f ms, first ps %.0f ms, repeated ps %.0f ms" % (
            i + 1, rounds, 1000 * samples["ssh_true"][-1], 1000 * samples["first"][-1],
            1000 * samples["repeated"][-1]), flush=True)
    return samples


def server_imports(bench, repeat=5):
    """Median import milliseconds of `tinyserv-remote ps APP`, and of `python3 -c pass` in all, on the server."""
    imports, bare = [], []
    for _ in range(repeat):
        result = common.run(bench.ssh("python3 -X importtime ~/.tinyserv-code/current/bin/tinyserv-remote ps %s "
                                      "</dev/null >/dev/null" % APP, shared=True), env=bench.env)
        imports.append(import_ms(result.stderr))
        out = common.run(bench.ssh("python3 -c 'import time; t = time.perf_counter(); import subprocess; "
                                   "subprocess.run([\"python3\", \"-c\", \"pass\"]); "
                                   "print(time.perf_counter() - t)'", shared=True), env=bench.env).stdout
        bare.append(float(out) * 1000)
    return {"imports_ms": common.median(imports), "python_c_pass_ms": common.median(bare)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    import docker
    import images
    began = time.monotonic()
    result = {"machine": common.machine(), "rounds": args.rounds}
    work = tempfile.mkdtemp(prefix="ts-lat-", dir="/tmp")  # short: ssh's socket path must fit
    client = docker.from_env()
    tag = "tinyserv-bench-bare:%d" % os.getpid()
    container = None
    try:
        key = os.path.join(work, "key")
        common.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
        images.ensure_base_image(client)
        with open(key + ".pub") as f:
            images.build_server_image(client, f.read(), tag=tag, target="bare")
        container, port = start_container(tag)
        runtime = os.path.join(work, "rt")
        os.mkdir(runtime, 0o700)
        bench = Bench(key, port, runtime)
        common.wait_for_ssh(bench)
        repo = deploy(bench, work)
        bench.timed([TINYSERV, "ps"], cwd=repo)  # warm: the server's caches, the client's page cache
        samples = measure(bench, repo, args.rounds)
        result["samples_s"] = samples
        result["stats_ms"] = {k: {"median": round(1000 * common.median(vs), 1), "min": round(1000 * min(vs), 1),
                                  "max": round(1000 * max(vs), 1)} for k, vs in samples.items()}
        # Each round's own ratio: a round's commands ran within a second of each other, under the same load.
        result["ratio_per_round"] = {k: round(common.median([v / t for v, t in zip(vs, samples["ssh_true"])]), 3)
                                     for k, vs in samples.items()}
        result["server"] = server_imports(bench)
        result["client_python"] = common.version_of(["/usr/bin/python3", "--version"])
        result["ssh"] = common.version_of([SSH, "-V"])
        bench.close_shared()
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", tag], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return common.finish("cli_latency", result, began)


if __name__ == "__main__":
    common.run_main(main)
