"""Apps isolated from each other (issue 9) over real ssh, on a server whose supervisor runs as root.

The container's entrypoint starts the supervisor as root from the unit `tinyserv-remote systemd-unit --root`
prints; the deploy user's commands (ssh, git push) reach it only through its socket. Each app runs as its own
system user ts-APP: its `run` cannot read another app's build, config, log or /proc/PID/environ, nor signal it.
"""

import json

import pytest

from support import describe, http_get, make_app, run, wait_for_http, wait_until

ROOT = "/home/deploy/tinyserv"
TIMEOUT = 180


def node_files(text, scripts=None, extra=None):
    package = {"name": "rootmode-e2e", "version": "1.0.0", "private": True, "scripts": scripts or {}}
    files = {"package.json": json.dumps(package) + "\n", "Procfile": "web: node index.js\n",
             "index.js": GROWER % json.dumps(text)}
    files.update(extra or {})
    return files


# Answers `text`; /grow keeps 30 MB more (for the memory limit).
GROWER = ('const kept = [];\n'
          'require("http").createServer((req, res) => {\n'
          '  if (req.url === "/grow") { for (let i = 0; i < 30; i++) kept.push(Buffer.alloc(2 ** 20, 1)); }\n'
          '  res.end(%s);\n'
          '}).listen(process.env.PORT);\n')


class RootApp:
    def __init__(self, server, repo, name):
        self.server, self.repo, self.name = server, str(repo), name

    def tinyserv(self, *args, check=True):
        return run(["tinyserv", *args], cwd=self.repo, env=self.server.env, check=check, timeout=TIMEOUT)

    def push(self, check=True):
        return run(["git", "push", "tinyserv", "main"], cwd=self.repo, env=self.server.env, check=check,
                   timeout=TIMEOUT)

    def commit(self, files):
        import os
        for name, text in files.items():
            with open(os.path.join(self.repo, name), "w") as f:
                f.write(text)
        run(["git", "add", "-A"], cwd=self.repo)
        run(["git", "commit", "-q", "-m", "change"], cwd=self.repo)

    def url(self):
        port = json.loads(self.tinyserv("apps:info", "--json").stdout)["port"]
        return self.server.url(port)

    def web_pids(self):
        """The pids of the app's node processes, as root sees them, with their owners."""
        out = self.server.root_host.check_output(f"ps -eo pid=,user:32=,args= | grep -F 'node index.js' || true")
        return [(int(pid), user) for pid, user, *args in (line.split() for line in out.splitlines())
                if args[:2] == ["node", "index.js"] and user == "ts-" + self.name]


@pytest.fixture(scope="module")
def two_apps(root_server, tmp_path_factory):
    """Apps rm-a and rm-b, deployed, each with a secret in its config; destroyed after the module."""
    base = tmp_path_factory.mktemp("rootmode")
    apps = {}
    for short in ("a", "b"):
        name = f"rm-{short}"
        app = RootApp(root_server, make_app(base / name, node_files("hello from " + short)), name)
        app.tinyserv("apps:create", name)
        app.tinyserv("config:set", f"SECRET=secret-of-{short}")
        app.push()
        apps[short] = app
    try:
        yield apps
    finally:
        for app in apps.values():
            app.tinyserv("apps:destroy", "--confirm", app.name, check=False)


def test_each_app_runs_as_a_system_user_of_its_own_and_the_supervisor_as_root(root_server, two_apps):
    for short, app in two_apps.items():
        assert wait_for_http(app.url(), contains="hello from " + short)
        owners = {user for _, user in app.web_pids()}
        assert owners == {"ts-" + app.name}, owners
        assert app.tinyserv("run", "id -un").stdout.strip() == "ts-" + app.name
    supervisor = root_server.root_host.check_output("ps -o ruser=,euser= -p $(cat %s/run/supervisor.pid)" % ROOT)
    assert supervisor.split() == ["root", "deploy"]  # root, working as the deploy user


PROBES = {
    "build dir": f"ls {ROOT}/apps/rm-b/builds",
    "config": f"cat {ROOT}/apps/rm-b/history.json",
    "log": f"cat {ROOT}/apps/rm-b/log/app.log",
    "data dir": f"ls {ROOT}/apps/rm-b/data",
    "environ": "cat /proc/{pid}/environ",
    "kill": "kill {pid}",
    "state": f"touch {ROOT}/releases/rm-b.json",
    "supervisor socket": f"ls {ROOT}/run",
    "shared runtime": f"touch {ROOT}/runtimes/uv/bin/uv",  # the runtime cache: every app's to run, none's to change
    "runtime cache": f"mkdir {ROOT}/runtimes/node",
}


def test_an_apps_run_cannot_read_or_signal_another_app(two_apps):
    a, b = two_apps["a"], two_apps["b"]
    [(pid, _)] = b.web_pids()
    script = "; ".join(f"if {command.format(pid=pid)} >/dev/null 2>&1; then echo '{what}: allowed'; "
                       f"else echo '{what}: denied'; fi" for what, command in PROBES.items())
    result = a.tinyserv("run", script)
    assert result.stdout.splitlines() == [f"{what}: denied" for what in PROBES], describe(result)
    assert (pid, "ts-rm-b") in b.web_pids()  # still the same process
    assert http_get(b.url()) == (200, "hello from b")
    # Its own are its own: A reads its data dir and its own process's environment.
    own = a.tinyserv("run", "ls $TINYSERV_DATA_DIR >/dev/null && grep -c SECRET=secret-of-a /proc/$$/environ")
    assert own.stdout.strip() == "1", describe(own)
    shared = a.tinyserv("run", f"{ROOT}/runtimes/uv/bin/uv --version")
    assert shared.stdout.startswith("uv "), describe(shared)


def test_a_build_whose_postinstall_writes_into_tinyservs_state_fails_and_the_app_keeps_serving(two_apps, root_server):
    a = two_apps["a"]
    a.commit(node_files("pwned", scripts={"postinstall": "node post.js"}, extra={
        "post.js": "require('fs').writeFileSync('%s/releases/rm-b.json', 'pwned'); console.log('wrote it')\n"
                   % ROOT}))
    pushed = a.push(check=False)
    assert pushed.returncode != 0, describe(pushed)
    assert "EACCES" in pushed.stderr and "npm install failed" in pushed.stderr, describe(pushed)
    assert "wrote it" not in pushed.stderr
    assert "pwned" not in root_server.root_host.file(f"{ROOT}/releases/rm-b.json").content_string
    assert http_get(a.url()) == (200, "hello from a")
    run(["git", "reset", "-q", "--hard", "HEAD~1"], cwd=a.repo)


def test_an_app_over_its_memory_limit_is_restarted_as_its_own_user(two_apps):
    a = two_apps["a"]
    a.tinyserv("config:set", "TINYSERV_MEMORY_LIMIT=100")
    url = a.url()
    assert wait_for_http(url, contains="hello from a")
    for _ in range(4):
        http_get(url + "/grow")  # 30 MB more each time
    restarted = wait_until(lambda: next((i for i in json.loads(a.tinyserv("ps", "--json").stdout)["instances"]
                                         if i["restarts"] >= 1), None), 30, message="web.1 restarted for its memory")
    assert restarted["reason"] == "memory"
    assert "Error R15 (Memory quota exceeded): web.1 used" in a.tinyserv("logs", "--ps", "tinyserv").stdout
    assert wait_for_http(url, contains="hello from a")
    assert {user for _, user in a.web_pids()} == {"ts-rm-a"}
    a.tinyserv("config:unset", "TINYSERV_MEMORY_LIMIT")


def test_destroying_an_app_removes_its_user_and_its_processes(root_server, tmp_path):
    app = RootApp(root_server, make_app(tmp_path / "rm-gone", node_files("bye")), "rm-gone")
    app.tinyserv("apps:create", app.name)
    assert root_server.root_host.user("ts-rm-gone").exists
    app.push()
    assert app.web_pids()
    app.tinyserv("apps:destroy", "--confirm", app.name)
    assert not root_server.root_host.user("ts-rm-gone").exists
    assert app.web_pids() == []
    assert not root_server.root_host.file(f"{ROOT}/apps/rm-gone").exists
