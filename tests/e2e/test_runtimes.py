"""The runtime version each app asks for (issue 19), over real ssh: the server image has Debian's Node 18 and
Python 3.11, and uv in TINYSERV_ROOT/runtimes/uv (put there as server:install does).

Every app here is named rt-... and destroyed at the end of its test.
"""

import json
import os
import re

import pytest

from support import describe, http_get, make_app, run, wait_until

PREFIX = "rt-"
ROOT = "/home/deploy/tinyserv"
UV = ROOT + "/runtimes/uv/bin/uv"
PUSH_TIMEOUT = 600  # a first push downloads a node (about 50 MB) from the npm registry


class App:
    """One app under test: its local repository and the client commands run in it."""

    def __init__(self, server, repo, name):
        self.server, self.repo, self.name = server, str(repo), name
        self.port = None

    def tinyserv(self, *args, check=True):
        __tracebackhide__ = True
        return run(["tinyserv", *args], cwd=self.repo, env=self.server.env, check=check, timeout=PUSH_TIMEOUT)

    def push(self, check=True):
        __tracebackhide__ = True
        return run(["git", "push", "tinyserv", "main"], cwd=self.repo, env=self.server.env, check=check,
                   timeout=PUSH_TIMEOUT)

    def follow_server(self):
        """Point the git remote (which names the server's ssh port) at the port the restarted container got."""
        url = f"ssh://deploy@127.0.0.1:{self.server.port(22)}{ROOT}/repos/{self.name}.git"
        run(["git", "remote", "set-url", "tinyserv", url], cwd=self.repo)

    def info(self):
        return json.loads(self.tinyserv("apps:info", "--json").stdout)

    def url(self, path="/"):
        """The app's URL on this machine (its port asked once: every ssh login counts on a loaded machine)."""
        if self.port is None:
            self.port = self.info()["port"]
        return self.server.url(self.port, path)

    def serving(self, path="/", timeout=60):
        """Poll until the app answers path with 200; return the body."""
        url = self.url(path)
        answer = wait_until(lambda: (lambda a: a if a and a[0] == 200 else None)(http_get(url, timeout=5)),
                            timeout, interval=0.2, message=f"{self.name} to answer {path} with 200")
        return answer[1]


@pytest.fixture
def new_app(server, tmp_path):
    """A factory: new_app(short_name, files) makes a repository and an app rt-SHORT_NAME; all destroyed after."""
    created = []

    def create(short_name, files):
        name = PREFIX + short_name
        app = App(server, make_app(tmp_path / name, files), name)
        app.tinyserv("apps:create", name)
        created.append(app)
        return app

    yield create
    for result in [a.tinyserv("apps:destroy", "--confirm", a.name, check=False) for a in created]:
        assert result.returncode == 0, describe(result)


def output(result):
    return result.stdout + result.stderr


def node_version_app(engines=None, extra=None):
    """A dependency-free node app that answers its own process.version."""
    package = {"name": "rt-app", "version": "1.0.0", "private": True}
    if engines:
        package["engines"] = engines
    files = {"package.json": json.dumps(package, indent=2) + "\n", "Procfile": "web: node index.js\n",
             "index.js": "require('http').createServer((q, s) => s.end(process.version))"
                         ".listen(process.env.PORT);\n"}
    files.update(extra or {})
    return files


def python_app(extra):
    """A stdlib-only Python web app that answers the interpreter's version and where it runs from."""
    files = {"Procfile": "web: python app.py\n",
             "app.py": "import http.server, os, sys\n"
                       "class H(http.server.BaseHTTPRequestHandler):\n"
                       "    def do_GET(self):\n"
                       "        body = ('%d.%d.%d ' % sys.version_info[:3] + sys.prefix).encode()\n"
                       "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
                       "http.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"}
    files.update(extra)
    return files


def test_an_app_asking_for_node_20_runs_node_20_while_its_neighbour_keeps_debians(server, new_app):
    modern = new_app("node20", node_version_app({"node": "20.x"}))
    plain = new_app("node18", node_version_app())
    pushed = modern.push()
    assert re.search(r"Installing node 20\.\d+\.\d+ \(from the npm registry", output(pushed)), describe(pushed)
    plain.push()
    assert modern.serving().startswith("v20."), modern.serving()
    assert plain.serving().startswith("v18."), plain.serving()
    runtimes = {a["name"]: a.get("runtime") for a in json.loads(modern.tinyserv("apps", "--json").stdout)}
    assert runtimes[modern.name].startswith("node 20."), runtimes
    assert runtimes[plain.name].startswith("node 18."), runtimes
    # The cache is the deploy user's, readable by everyone, writable by nobody else.
    listed = server.ssh(f"stat -c '%U %a %n' {ROOT}/runtimes/node/20.*").stdout.split()
    assert listed[:2] == ["deploy", "755"], listed
    # A reboot (the boot hook's `startup`) keeps each app on its own node.
    server.restart()
    for app in (modern, plain):
        app.follow_server()
    assert modern.serving().startswith("v20."), "after a reboot: " + modern.serving()
    assert plain.serving().startswith("v18."), "after a reboot: " + plain.serving()


def test_a_python_app_asking_for_the_servers_python_deploys_through_uv(server, new_app):
    app = new_app("py311", python_app({".python-version": "3.11\n", "requirements.txt": "six==1.16.0\n"}))
    pushed = app.push()
    assert "Installing dependencies (uv pip install -r requirements.txt)" in output(pushed), describe(pushed)
    version, prefix = app.serving().split()
    assert version.startswith("3.11."), version
    assert prefix.startswith(f"{ROOT}/apps/{app.name}/deps/"), prefix
    runtime = app.info()["runtime"]
    assert runtime.startswith("python 3.11.") and "with uv" in runtime, runtime


def test_an_app_with_uv_lock_deploys_with_uv_sync(server, new_app, tmp_path):
    pyproject = ('[project]\nname = "rt-locked"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
                 'dependencies = ["six==1.16.0"]\n')
    # The lockfile is made by the server's own uv, so it is the format that uv reads.
    lock = server.ssh(f"d=$(mktemp -d) && cd $d && cat > pyproject.toml && UV_SYSTEM_CERTS=1 {UV} lock -q "
                      f"--python /usr/bin/python3 && cat uv.lock && rm -rf $d", input=pyproject).stdout
    app = new_app("uvlock", python_app({"pyproject.toml": pyproject, "uv.lock": lock}))
    pushed = app.push()
    assert "Installing dependencies (uv sync --frozen)" in output(pushed), describe(pushed)
    assert app.serving().startswith("3.11."), app.serving()
    installed = server.ssh(f"ls {ROOT}/apps/{app.name}/deps/*/venv/lib/python3.11/site-packages").stdout
    assert "six.py" in installed, installed


def test_an_app_asking_for_a_python_the_server_cannot_get_is_rejected_in_one_line_naming_it(server, new_app):
    app = new_app("py314", python_app({".python-version": "3.14\n", "requirements.txt": ""}))
    pushed = app.push(check=False)
    assert pushed.returncode != 0, describe(pushed)
    lines = [l for l in output(pushed).splitlines() if "this app asks for Python 3.14 (.python-version)" in l]
    assert len(lines) == 1 and "uv python install '3.14'" in lines[0], describe(pushed)
    assert app.info()["commit"] is None, app.info()


SAMPLE_DJANGO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample-django")


def read_tree(top):
    """Every file under top as {relative name: text}: a sample app to commit."""
    files = {}
    for directory, _, names in os.walk(top):
        for name in names:
            path = os.path.join(directory, name)
            with open(path) as f:
                files[os.path.relpath(path, top)] = f.read()
    return files


def test_a_django_app_has_its_static_files_collected_and_served(server, new_app):
    app = new_app("django", read_tree(SAMPLE_DJANGO))  # tests/sample-django, also benchmarked
    pushed = app.push()
    assert "Running collectstatic" in output(pushed), describe(pushed)
    assert app.serving() == "django up"
    assert app.serving("/static/hello.txt") == "a static file, collected\n"


def lockfile(tool, files, tmp_path):
    """The lockfile tool (yarn 1 or pnpm 9, run here through npm exec) writes for files' package.json."""
    directory = tmp_path / ("lock-" + tool)
    directory.mkdir()
    (directory / "package.json").write_text(files["package.json"])
    argv = {"yarn": ["npm", "exec", "--yes", "yarn@1", "--", "install", "--ignore-scripts"],
            "pnpm": ["npm", "exec", "--yes", "pnpm@9", "--", "install", "--lockfile-only"]}[tool]
    run(argv, cwd=str(directory), timeout=300)
    return (directory / {"yarn": "yarn.lock", "pnpm": "pnpm-lock.yaml"}[tool]).read_text()


@pytest.mark.parametrize("tool, engines", [("pnpm", {"pnpm": "9"}), ("yarn", {})])
def test_a_pnpm_app_and_a_yarn_app_deploy_with_their_own_package_manager(server, new_app, tmp_path, tool, engines):
    package = {"name": "rt-" + tool, "version": "1.0.0", "private": True, "dependencies": {"ms": "2.1.3"},
               "engines": engines}
    files = {"package.json": json.dumps(package, indent=2) + "\n", "Procfile": "web: node index.js\n",
             "index.js": "const ms = require('ms');\nrequire('http').createServer((q, s) => s.end(ms(2 * 86400000)))"
                         ".listen(process.env.PORT);\n"}
    name = {"yarn": "yarn.lock", "pnpm": "pnpm-lock.yaml"}[tool]
    files[name] = lockfile(tool, files, tmp_path)
    app = new_app(tool, files)
    pushed = app.push()
    expected = {"yarn": "yarn install --frozen-lockfile", "pnpm": "pnpm install --frozen-lockfile"}[tool]
    assert f"Installing dependencies ({expected}" in output(pushed), describe(pushed)
    assert app.serving() == "2d"
    assert tool in app.info()["runtime"], app.info()
