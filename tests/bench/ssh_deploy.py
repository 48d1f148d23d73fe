"""Deploys over real ssh, as a user with a server sees them: the express sample app pushed to a container of the
e2e image's `bare` stage (Debian, sshd, a `deploy` user, no tinyserv), installed with `tinyserv server:install`.

The container publishes its ssh port and the apps' ports (5000-5009) on 127.0.0.1 only. The client runs here under
Debian's /usr/bin/python3, with an ssh config naming this run's key (an `ssh` first on PATH passes -F: ssh reads
the passwd entry's ~/.ssh, not $HOME's), and no GIT_SSH_COMMAND, so
git pushes through the ssh connection tinyserv shares (core.sshCommand), as a user's would. The server's npm reaches
the registry as the e2e suite's does (the host's CA bundle in the image, ~/.npmrc's cafile).

  (a) first deploy of a fresh app (npm ci, warm npm cache): push start -> the new release answers at the app's
      published port (through nginx);
  (b) code-only redeploy (dependencies reused), the same;
  each next to its floor, in interleaved tinyserv/floor pairs: a `git push` over the same shared connection to a
      plain bare repository on the server whose post-receive hook checks the commit out (git archive | tar),
      runs `npm ci` when package.json or package-lock.json differ from the last install's (else links that
      install's node_modules), starts `npm start` on a published port, and waits until it answers; the floor is
      push start -> its first answer with the new content, seen from here as tinyserv's is;
  (c) a client GETting the app's published port every 10 ms (a new connection each): 5 s of steady state, then
      across --redeploys code-only redeploys: failed requests (no answer, or not 200) and p50/p99 latency.

Medians over --repeat runs (default 5) for (b), --first-repeat (default 5) for (a); results to
tests/bench/results/ssh_deploy.json, the table to docs/benchmarks.md (between its ssh markers). Needs Docker and
the docker SDK: run it with the e2e tox environment's Python (or any python3 with the docker package).

    python3 tests/bench/ssh_deploy.py [--repeat 5] [--first-repeat 5] [--redeploys 5]
"""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import common  # noqa: E402
import deploy  # noqa: E402
import frontdoor  # noqa: E402
from common import REPO, BenchError  # noqa: E402

TINYSERV = os.path.join(REPO, "bin", "tinyserv")
APP_PORTS = range(5000, 5010)  # published; tinyserv hands out 5000 up, the floor's webs take the last two
FLOOR_PORTS = (5008, 5009)

# The floor's post-receive hook (sh): the work a deploy cannot avoid, done by hand on the server.
FLOOR_HOOK = r"""#!/bin/sh
set -e
unset GIT_DIR GIT_WORK_TREE GIT_QUARANTINE_PATH
read old new ref
top=$HOME/floor
seq=$(( $(cat "$top/seq" 2>/dev/null || echo 0) + 1 )); echo "$seq" > "$top/seq"
dir=$top/$(basename "$PWD" .git)-c$seq
mkdir -p "$dir"
git --git-dir="$PWD" archive --format=tar "$new" | tar -x -C "$dir"
installed=$(cat "$PWD/installed" 2>/dev/null || true)
if [ -n "$installed" ] && cmp -s "$installed/package.json" "$dir/package.json" \
        && cmp -s "$installed/package-lock.json" "$dir/package-lock.json"; then
    ln -s "$installed/node_modules" "$dir/node_modules"
    echo "floor: reusing $installed/node_modules"
else
    echo "floor: npm ci"
    (cd "$dir" && npm ci >"$dir.npm.log" 2>&1)
    echo "$dir" > "$PWD/installed"
fi
port=$(( %(first)d + seq %% 2 ))
echo "floor: starting on port $port"
cd "$dir"
env -i HOME="$HOME" USER=deploy LOGNAME=deploy LANG=C.UTF-8 PORT=$port \
    PATH="$dir/node_modules/.bin:/usr/local/bin:/usr/bin:/bin" setsid npm start </dev/null >"$dir.out" 2>&1 &
echo $! > "$top/web.$seq"
python3 -c '
import sys, time, urllib.request
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen("http://127.0.0.1:%%s/" %% sys.argv[1], timeout=1).read()
        sys.exit(0)
    except OSError:
        time.sleep(0.01)
sys.exit("floor: no answer within 60 s")' $port
echo "floor: answered"
old=$top/web.$((seq - 1))
if [ -e "$old" ]; then /bin/kill -TERM -- -"$(cat "$old")" 2>/dev/null || true; rm -f "$old"; fi
""" % {"first": FLOOR_PORTS[0]}


class Server:
    """The container, the client's environment, and its published ports."""

    def __init__(self, work, tag):
        self.work, self.tag = work, tag
        self.container = None
        self.key = os.path.join(work, "key")
        common.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key])
        home = os.path.join(work, "home")
        os.makedirs(os.path.join(home, ".ssh"), mode=0o700)
        self.config = os.path.join(home, ".ssh", "config")
        with open(self.config, "w") as f:
            f.write("Host 127.0.0.1\n  IdentityFile %s\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
                    "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n" % self.key)
        # ssh reads the passwd entry's ~/.ssh/config, not $HOME's: an `ssh` first on PATH names this one, as a
        # user's own config would (GIT_SSH_COMMAND would keep git pushes off tinyserv's shared connection).
        bindir = os.path.join(work, "bin")
        os.mkdir(bindir)
        with open(os.path.join(bindir, "ssh"), "w") as f:
            f.write('#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' % shlex.quote(self.config))
        os.chmod(os.path.join(bindir, "ssh"), 0o755)
        runtime = os.path.join(work, "rt")
        os.mkdir(runtime, 0o700)
        self.env = {"HOME": home, "PATH": bindir + ":/usr/bin:/bin:/usr/local/bin", "LANG": "C.UTF-8",
                    "XDG_RUNTIME_DIR": runtime, "GIT_AUTHOR_NAME": "bench",
                    "GIT_AUTHOR_EMAIL": "bench@tinyserv.invalid", "GIT_COMMITTER_NAME": "bench",
                    "GIT_COMMITTER_EMAIL": "bench@tinyserv.invalid"}
        self.ports = {}

    def start(self):
        """docker run the bare image, ssh and the apps' ports on random loopback ports; wait for ssh."""
        argv = ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::22", "-p", "127.0.0.1::%d-%d" % (
            APP_PORTS[0], APP_PORTS[-1]), "--sysctl", "net.unix.max_dgram_qlen=512",
            "--tmpfs", "/run:rw,nosuid,nodev,mode=755", "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777", self.tag]
        self.container = common.run(argv).stdout.strip()
        for port in [22, *APP_PORTS]:
            out = common.run(["docker", "port", self.container, "%d/tcp" % port]).stdout.splitlines()[0]
            self.ports[port] = int(out.rsplit(":", 1)[1])
        self.env["TINYSERV_REMOTE"] = "ssh://deploy@127.0.0.1:%d" % self.ports[22]
        common.wait_for_ssh(self)

    def ssh(self, command):
        """A fresh ssh running command (a shell line) on the server as deploy."""
        return ["/usr/bin/ssh", "-F", self.config, "-o", "ControlPath=none", "-p", str(self.ports[22]),
                "deploy@127.0.0.1", command]

    def sh(self, command, timeout=300):
        return common.run(self.ssh(command), env=self.env, timeout=timeout).stdout

    def client(self, *args, cwd, timeout=300):
        return common.run([TINYSERV, *args], cwd=cwd, env=self.env, timeout=timeout)

    def app_port(self, app):
        """The host port where app's public port (nginx's, on the server) is published."""
        text = self.sh("cat ~/.tinyserv/releases/%s.json" % shlex.quote(app))
        port = json.loads(text)["port"]
        if port not in self.ports or port in FLOOR_PORTS:
            raise BenchError("app %s got port %d, outside the published %d-%d" % (app, port, APP_PORTS[0],
                                                                               FLOOR_PORTS[0] - 1))
        return self.ports[port]

    def remove(self):
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)
            self.container = None


class SshFloor:
    """The floor over ssh: a push to a plain bare repository on the server whose hook checks out, installs (or
    reuses) node_modules, starts `npm start` and waits until it answers."""

    def __init__(self, server, name):
        self.server = server
        self.path = "/home/deploy/floor/%s.git" % name
        hook = shlex.quote(FLOOR_HOOK)
        server.sh("mkdir -p ~/floor && git init --bare -q %s && printf '%%s' %s > %s/hooks/post-receive && "
                  "chmod +x %s/hooks/post-receive" % (self.path, hook, self.path, self.path))

    def deploy(self, repo, token):
        """Push repo's HEAD; push start -> first answer with token at the floor web's published port."""
        env = self.server.env
        common.run(["git", "remote", "remove", "floor"], cwd=repo, env=env, check=False)
        common.run(["git", "remote", "add", "floor", "ssh://deploy@127.0.0.1:%d%s" % (
            self.server.ports[22], self.path)], cwd=repo, env=env)
        pollers = []

        def on_line(t, line):
            if "floor: starting on port" in line and not pollers:
                port = int(line.rsplit(" ", 1)[1])
                pollers.append(common.Poller(self.server.ports[port], every=deploy.POLL_MS / 1000))
                pollers[0].start()

        started = time.monotonic()
        push_s, code, lines = common.timed_push(repo, env, remote="floor", on_line=on_line)
        if code != 0 or not pollers:
            raise BenchError("floor push failed (exit %d):\n%s" % (code, "\n".join(l for _, l in lines)))
        try:
            answer_s = pollers[0].wait_for(token) - started
        except BenchError as e:
            last = pollers[0].answers[-1:] or ["nothing"]
            raise BenchError("floor: %s (last answer: %s); the push said:\n%s" % (
                e, last, "\n".join(l for _, l in lines)))
        finally:
            pollers[0].stop()
        stamp = lambda text: next((t for t, l in lines if text in l), None)  # noqa: E731
        install = "floor: npm ci" in "\n".join(l for _, l in lines)
        out = {"total_s": round(answer_s, 3), "push_s": round(push_s, 3), "npm_ci": install,
               "push_to_hook_s": stamp("floor: ")}
        if install:
            out["npm_ci_s"] = round(stamp("floor: starting") - stamp("floor: npm ci"), 3)
        return out


def summarize(runs, floors):
    """deploy.summarize, with npm ci's time taken from the floor's hook lines."""
    out = deploy.summarize(runs, [{k: v for k, v in f.items() if k not in ("npm_ci", "push_to_hook_s")}
                                  for f in floors])
    out["floor"]["runs"] = floors
    return out


def under_load(server, repo, host_port, redeploys):
    """(c) a GET every 10 ms: steady state, then during code-only redeploys (each window until 1 s after its push)."""
    loader = frontdoor.Loader(host_port)
    loader.start()
    try:
        steady, windows = frontdoor.redeploys_under(loader, repo, server.env, redeploys)
    finally:
        loader.stop()
    during = [r for start, end in windows for r in loader.window(start, end)]
    new_answers = [r for r in loader.requests if r[2]]
    return {"steady": steady, "during_redeploys": frontdoor.latency(during), "redeploys": redeploys,
            "failed_per_redeploy": [frontdoor.latency(loader.window(s, e))["failed"] for s, e in windows],
            "answered_after_last": bool(new_answers)}


def server_seconds(server, command, runs=5):
    """Median seconds of command (argument words) run on the server, timed there."""
    program = ("import subprocess, sys, time\nt = []\nfor _ in range(%d):\n    s = time.perf_counter()\n"
               "    subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)\n"
               "    t.append(time.perf_counter() - s)\nprint(sorted(t)[len(t) // 2])" % runs)
    return round(float(server.sh("python3 -c %s %s" % (shlex.quote(program), command))), 3)


def load_now():
    return round(os.getloadavg()[0], 2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="code-only redeploys and their floors")
    p.add_argument("--first-repeat", type=int, default=5, help="first deploys and their floors")
    p.add_argument("--redeploys", type=int, default=5, help="code-only redeploys under a GET every 10 ms")
    p.add_argument("--keep", action="store_true", help="leave the container running (to look into a failure)")
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    import docker
    import images
    began = time.monotonic()
    result = {"benchmark": "ssh_deploy", "app": "sample-app (express)", "repeat": args.repeat,
              "first_repeat": args.first_repeat, "machine": common.machine(),
              "server": "a container of the e2e image's bare stage (Debian 12), `tinyserv server:install`",
              "client_python": common.version_of(["/usr/bin/python3", "--version"]),
              "ssh": common.version_of(["/usr/bin/ssh", "-V"]), "phase_names": deploy.PHASES, "deploys": {},
              "loadavg": {}}
    work = tempfile.mkdtemp(prefix="ts-sshd-", dir="/tmp")  # short: ssh's socket path must fit
    tag = "tinyserv-bench-sshdeploy:%d" % os.getpid()
    server = None
    try:
        client = docker.from_env()
        images.ensure_base_image(client)
        server = Server(work, tag)
        with open(server.key + ".pub") as f:
            images.build_server_image(client, f.read(), tag=tag, target="bare")
        server.start()
        print("tinyserv over ssh: container %s, ssh on 127.0.0.1:%d" % (server.container[:12], server.ports[22]))
        server.client("server:install", cwd=work, timeout=600)
        result["server_python"] = server.sh("python3 --version").strip()
        result["server_node"] = server.sh("node --version").strip()
        result["server_npm"] = server.sh("npm --version").strip()

        repo = os.path.join(work, "bench")
        common.make_repo(repo, deploy.sample_files("warmup"), server.env)
        server.client("apps:create", "bench", cwd=repo)
        port = server.app_port("bench")
        # Warm-up, not measured: fills the server's npm cache (both sides use ~deploy/.npm), starts the supervisor.
        deploy.tinyserv_deploy(server, repo, "bench", "release warmup", port=port)
        floor_bench = SshFloor(server, "bench")
        floor_bench.deploy(repo, "release warmup")

        result["server_npm_version_s"] = server_seconds(server, "npm --version")
        result["server_node_version_s"] = server_seconds(server, "node --version")

        result["loadavg"]["first_start"] = load_now()
        runs, floors = [], []
        for i in range(1, args.first_repeat + 1):
            name, token = "first%d" % i, "first-%d" % i
            path = os.path.join(work, name)
            common.make_repo(path, deploy.sample_files(token), server.env)
            server.client("apps:create", name, cwd=path)
            runs.append(deploy.tinyserv_deploy(server, path, name, "release " + token, port=server.app_port(name)))
            floors.append(SshFloor(server, name).deploy(path, "release " + token))
            server.client("apps:destroy", name, "--confirm", name, cwd=path)
            print("  first deploy %d: tinyserv %.2f s, floor %.2f s" % (i, runs[-1]["answer_s"],
                                                                        floors[-1]["total_s"]), flush=True)
        result["deploys"]["first"] = summarize(runs, floors)
        deploy.show("first deploy of a fresh app (npm ci)", result["deploys"]["first"])

        result["loadavg"]["code_only_start"] = load_now()
        runs, floors = [], []
        for i in range(1, args.repeat + 1):
            token = "code-%d" % i
            common.commit_files(repo, deploy.sample_files(token), server.env, token)
            runs.append(deploy.tinyserv_deploy(server, repo, "bench", "release " + token, port=port))
            floors.append(floor_bench.deploy(repo, "release " + token))
            print("  code-only %d: tinyserv %.2f s, floor %.2f s" % (i, runs[-1]["answer_s"],
                                                                     floors[-1]["total_s"]), flush=True)
        result["deploys"]["code_only"] = summarize(runs, floors)
        deploy.show("code-only redeploy (dependencies reused)", result["deploys"]["code_only"])

        result["loadavg"]["load_start"] = load_now()
        result["under_load"] = under_load(server, repo, port, args.redeploys)
        u = result["under_load"]
        print("  under load (GET every 10 ms): steady p50 %s ms p99 %s ms; during %d redeploys p50 %s ms p99 %s ms, "
              "failed %d of %d (%s per redeploy)" % (
                  u["steady"]["p50_ms"], u["steady"]["p99_ms"], args.redeploys, u["during_redeploys"]["p50_ms"],
                  u["during_redeploys"]["p99_ms"], u["during_redeploys"]["failed"],
                  u["during_redeploys"]["requests"], u["failed_per_redeploy"]))
        result["loadavg"]["end"] = load_now()
    finally:
        if server and args.keep:
            print("kept: container %s, ssh -F %s -p %d deploy@127.0.0.1; docker rm -f it, docker rmi %s" % (
                server.container, server.config, server.ports[22], tag))
        elif server:
            server.remove()
        if not args.keep:
            subprocess.run(["docker", "rmi", tag], capture_output=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return common.finish("ssh_deploy", result, began)


if __name__ == "__main__":
    common.run_main(main)
