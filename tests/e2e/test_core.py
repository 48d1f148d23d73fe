"""The core workflow over real ssh, as the README tells it: apps:create, git push, ps, config, logs, apps:info,
apps:destroy — what the server then holds — and every bad input refused in one line without touching the server.

Apps of this module are named core-*; each is destroyed at the end of the test (or module) that made it.
"""

import contextlib
import json
import os
import re
import types

import pytest

from helpers import assert_escaped_output
from support import describe, http_get, make_app, run, wait_for_http, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE_APP = os.path.join(REPO, "tests", "sample-app")
ROOT = "/home/deploy/tinyserv"
PUSH_TIMEOUT = 240
REJECTED = " !     Push rejected: "


# --- helpers ---------------------------------------------------------------------------------------------------

def tinyserv(server, *args, cwd, check=True, env=None):
    """Run the real client on this machine against the server."""
    return run(["tinyserv", *args], cwd=cwd, env=env or server.env, check=check, timeout=PUSH_TIMEOUT)


def push(server, repo, refspec="main", check=True):
    """`git push tinyserv REFSPEC` over real ssh; the deploy happens while it waits."""
    return run(["git", "push", "tinyserv", refspec], cwd=repo, env=server.env, check=check, timeout=PUSH_TIMEOUT)


def output(result):
    """stdout and stderr together (git prints the remote's lines on stderr)."""
    return result.stdout + result.stderr


def info(server, repo):
    """`tinyserv apps:info --json`, parsed."""
    return json.loads(tinyserv(server, "apps:info", "--json", cwd=repo).stdout)


def head(repo):
    """The commit checked out in `repo`."""
    return run(["git", "rev-parse", "HEAD"], cwd=repo).stdout.strip()


def commit_all(repo, files, message):
    """Write files ({name: text, or None to delete}) and commit them; return the new commit."""
    for name, text in files.items():
        path = os.path.join(repo, name)
        if text is None:
            os.remove(path)
        else:
            with open(path, "w") as f:
                f.write(text)
    run(["git", "add", "-A"], cwd=repo)
    run(["git", "commit", "-q", "-m", message], cwd=repo)
    return head(repo)


def git_url(server, name):
    """The git URL apps:create prints for app `name` (ssh, with the published ssh port)."""
    return f"ssh://deploy@127.0.0.1:{server.port(22)}{ROOT}/repos/{name}.git"


def node_app(version, procfile="web: node index.js"):
    """A Node.js app without dependencies: / answers {"version": VERSION}, /NAME JSON.stringify(process.env.NAME)."""
    return {
        "package.json": json.dumps({"name": "core-test-app", "version": "1.0.0", "private": True,
                                    "scripts": {"start": "node index.js"}}, indent=2) + "\n",
        "index.js": (
            "const http = require('http');\n"
            "const port = process.env.PORT;\n"
            "http.createServer((req, res) => {\n"
            "  const name = req.url.slice(1);\n"
            "  res.setHeader('Content-Type', 'application/json; charset=utf-8');\n"
            f"  const answer = name ? process.env[name] : {{version: {json.dumps(version)}}};\n"
            "  res.end(String(JSON.stringify(answer)));\n"
            "}).listen(port, () => console.log(`listening on port ${port}`));\n"),
        "Procfile": procfile + "\n",
    }


def sample_app_files():
    """The walkthrough's express app, as committed in this repository."""
    files = {}
    for name in os.listdir(SAMPLE_APP):
        path = os.path.join(SAMPLE_APP, name)
        if os.path.isfile(path):
            with open(path) as f:
                files[name] = f.read()
    return files


def served(server, port, contains):
    """Wait until the app on container port `port` answers with `contains`; return the body."""
    return wait_for_http(server.url(port), contains=contains, timeout=30)[1]


def served_json(server, port, version):
    """The app's JSON answer once the given version serves it."""
    return json.loads(served(server, port, json.dumps(version)))


def app_names(server, cwd):
    """Names of the apps on the server, from `tinyserv apps --json`."""
    return {app["name"] for app in json.loads(tinyserv(server, "apps", "--json", cwd=cwd).stdout)}


def destroy_if_present(server, name, cwd):
    """Teardown: free the app's port and name (whatever the test did)."""
    if name in app_names(server, cwd):
        tinyserv(server, "apps:destroy", name, "--confirm", name, cwd=cwd)


def server_state(server):
    """What a refused command must not change: the root's apps, repos (and their refs), releases and builds."""
    return server.ssh(
        f"cd {ROOT} && ls -1 apps repos releases apps/*/builds apps/*/deps 2>&1; cat releases/*.json; "
        "for r in repos/*.git; do echo \"$r\"; git --git-dir=\"$r\" for-each-ref; done").stdout


@contextlib.contextmanager
def deployed_app(server, directory, name, files):
    """make_app + apps:create NAME + git push tinyserv main, with what each printed; destroyed on the way out."""
    repo = make_app(directory / name, files)
    try:
        created = tinyserv(server, "apps:create", name, cwd=repo)
        pushed = push(server, repo)
        yield types.SimpleNamespace(name=name, repo=repo, created=created, pushed=pushed, head=head(repo),
                                    port=info(server, repo)["port"])
    finally:
        destroy_if_present(server, name, repo)


def environ_of(host, pid):
    """A process's environment as a dict ({} once it is gone); the apps run as deploy, like the testinfra host."""
    result = host.run(f"cat /proc/{pid}/environ")
    if result.rc != 0:
        return {}
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)


def ancestors(host, pid):
    """The pids above `pid`, its parent first (from one `ps` listing)."""
    listing = host.check_output("ps -e -o pid=,ppid=")
    parents = dict(tuple(map(int, line.split())) for line in listing.splitlines())
    chain = []
    while parents.get(pid, 0) > 0:
        pid = parents[pid]
        chain.append(pid)
    return chain


def app_processes(host, name):
    """deploy's node processes whose environment says they belong to app `name`."""
    return [p for p in host.process.filter(user="deploy", comm="node")
            if environ_of(host, p.pid).get("TINYSERV_APP") == name]


def listening(host, port):
    """Does anything listen on `port` in the server, on IPv4's or IPv6's any-address?"""
    return host.socket(f"tcp://0.0.0.0:{port}").is_listening or host.socket(f"tcp://:::{port}").is_listening


# --- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(server, tmp_path_factory):
    """The walkthrough's express app (dependencies from the npm registry, `web: npm start`), created and pushed."""
    with deployed_app(server, tmp_path_factory.mktemp("sample"), "core-sample", sample_app_files()) as app:
        yield app


@pytest.fixture(scope="module")
def env_app(server, tmp_path_factory):
    """A Node.js app without dependencies that answers JSON.stringify(process.env.NAME) at /NAME."""
    with deployed_app(server, tmp_path_factory.mktemp("env"), "core-env", node_app("env")) as app:
        yield app


@pytest.fixture(scope="module")
def good_app(server, tmp_path_factory):
    """A deployed app serving version "good", for refused commands and rejected pushes."""
    with deployed_app(server, tmp_path_factory.mktemp("good"), "core-good", node_app("good")) as app:
        yield app


@pytest.fixture
def fresh_repo(server, host, tmp_path):
    """A git repository with no tinyserv remote, in a directory whose name is a valid app name."""
    repo = make_app(tmp_path / "core-fresh", node_app("fresh"))
    try:
        yield repo
    finally:
        if host.file(f"{ROOT}/releases/core-fresh.json").exists:
            tinyserv(server, "apps:destroy", "--confirm", "core-fresh", cwd=repo)


# --- 1. the README's smoke scenario ----------------------------------------------------------------------------

def test_apps_create_adds_the_tinyserv_git_remote_and_prints_its_url(server, sample):
    url = git_url(server, "core-sample")
    assert "Creating ⬢ core-sample... done" in sample.created.stdout, describe(sample.created)
    assert url in sample.created.stdout, describe(sample.created)
    assert "Git remote tinyserv added" in sample.created.stdout, describe(sample.created)
    remote = run(["git", "remote", "get-url", "tinyserv"], cwd=sample.repo)
    assert remote.stdout.strip() == url, describe(remote)


def test_apps_lists_the_app_as_text_and_json(server, sample):
    listed = tinyserv(server, "apps", cwd=sample.repo)
    assert "core-sample" in listed.stdout.splitlines(), describe(listed)
    as_json = tinyserv(server, "apps", "--json", cwd=sample.repo)
    assert "core-sample" in [app["name"] for app in json.loads(as_json.stdout)], describe(as_json)


def test_git_push_builds_and_releases_the_app_with_herokus_steps(sample):
    for line in ["-----> Node.js app detected", "-----> Installing dependencies (npm ci)", "-----> Released v2"]:
        assert line in output(sample.pushed), describe(sample.pushed)


def test_ps_shows_web_1_up_with_its_pid_and_since(server, sample):
    table = tinyserv(server, "ps", cwd=sample.repo)
    assert re.search(r"^web\.1\s+up\s+\d+\s", table.stdout, re.M), describe(table)
    as_json = tinyserv(server, "ps", "--json", cwd=sample.repo)
    web = [i for i in json.loads(as_json.stdout)["instances"] if i["name"] == "web.1"]
    assert len(web) == 1, describe(as_json)
    assert web[0]["state"] == "up" and isinstance(web[0]["pid"], int) and web[0]["since"], describe(as_json)


def test_the_deployed_app_answers_foo_is_undefined(server, sample):
    assert served(server, sample.port, "foo is") == "foo is undefined\n"


def test_config_set_is_served_and_config_unset_undoes_it(server, sample):
    tinyserv(server, "config:set", "foo=blargey", cwd=sample.repo)
    assert served(server, sample.port, "foo is blargey") == "foo is blargey\n"
    tinyserv(server, "config:unset", "foo", cwd=sample.repo)
    assert served(server, sample.port, "foo is undefined") == "foo is undefined\n"


def web_port(server, sample):
    """The port web.1 listens on: behind nginx one of its own, not the app's (nginx holds that)."""
    ps = json.loads(tinyserv(server, "ps", "--json", cwd=sample.repo).stdout)
    [port] = [i["port"] for i in ps["instances"] if i["name"] == "web.1" and i["state"] == "up"]
    assert port != sample.port
    return port


def test_logs_contain_the_apps_own_listening_line(server, sample):
    logs = tinyserv(server, "logs", cwd=sample.repo)
    assert f" web.1: listening on port {web_port(server, sample)}" in logs.stdout, describe(logs)


def test_apps_info_shows_name_git_url_port_web_url_commit_and_state(server, sample):
    commit = sample.head
    text = tinyserv(server, "apps:info", cwd=sample.repo)
    for expected in ["=== core-sample", git_url(server, "core-sample"), str(sample.port),
                     f"http://127.0.0.1:{sample.port}/", commit]:
        assert expected in text.stdout, describe(text)
    assert re.search(r"^State:\s+up$", text.stdout, re.M), describe(text)
    assert {key: value for key, value in info(server, sample.repo).items()
            if key in ("name", "git_url", "port", "web_url", "commit", "state")} == {
        "name": "core-sample", "git_url": git_url(server, "core-sample"), "port": sample.port,
        "web_url": f"http://127.0.0.1:{sample.port}/", "commit": commit, "state": "up"}


# --- 2. what the server holds ----------------------------------------------------------------------------------

def test_the_apps_node_process_runs_as_deploy_with_its_dyno_and_port(server, host, sample):
    port = web_port(server, sample)
    nodes = wait_until(lambda: (found := app_processes(host, "core-sample")) and len(found) == 1 and found, 20,
                       message="one node process of core-sample (an old one drains after a change)")
    environ = environ_of(host, nodes[0].pid)
    assert (environ.get("DYNO"), environ.get("PORT")) == ("web.1", str(port)), environ


def test_the_apps_port_is_listening(host, sample):
    assert listening(host, sample.port), host.run("ss -ltnp").stdout


def test_releases_json_names_the_apps_port(host, sample):
    release = host.file(f"{ROOT}/releases/core-sample.json")
    assert release.exists
    assert json.loads(release.content_string)["port"] == sample.port, release.content_string


def test_the_apps_git_repository_is_bare_with_a_pre_receive_hook(server, host, sample):
    repo = f"{ROOT}/repos/core-sample.git"
    bare = server.ssh(f"git --git-dir={repo} rev-parse --is-bare-repository")
    assert bare.stdout.strip() == "true", describe(bare)
    hook = host.file(f"{repo}/hooks/pre-receive")
    assert hook.is_file and hook.mode & 0o100, f"{repo}/hooks/pre-receive mode {oct(hook.mode)}"
    assert "hook core-sample" in hook.content_string, hook.content_string


# --- 3. apps:destroy leaves nothing behind ---------------------------------------------------------------------

def processes_of(server, name):
    """/proc/PID/environ files with TINYSERV_APP=name, read over ssh as deploy (root's own are unreadable: -s)."""
    return server.ssh(f"grep -lsxaz TINYSERV_APP={name} /proc/[0-9]*/environ", check=False).stdout.split()


def test_apps_destroy_stops_npm_starts_whole_process_tree_and_deletes_everything(server, host, tmp_path):
    with deployed_app(server, tmp_path, "core-gone", node_app("gone", procfile="web: npm start")) as app:
        served(server, app.port, '"gone"')
        web = [i for i in json.loads(tinyserv(server, "ps", "--json", cwd=app.repo).stdout)["instances"]
               if i["name"] == "web.1"][0]
        nodes = app_processes(host, "core-gone")
        above = ancestors(host, nodes[0].pid) if len(nodes) == 1 else []
        forest = host.run("ps -ef --forest").stdout
        assert web["pid"] in above[1:], f"expected one node, a grandchild of web.1 (pid {web['pid']}):\n{forest}"
        assert len(processes_of(server, "core-gone")) >= 3, forest

        destroyed = tinyserv(server, "apps:destroy", "--confirm", "core-gone", cwd=app.repo)

        assert "Git remote tinyserv removed" in destroyed.stdout, describe(destroyed)
        assert processes_of(server, "core-gone") == [], host.run("ps -ef --forest").stdout
        assert not listening(host, app.port), host.run("ss -ltnp").stdout
        for path in ["releases/core-gone.json", "repos/core-gone.git", "apps/core-gone"]:
            assert not host.file(f"{ROOT}/{path}").exists, f"{ROOT}/{path} is still there"
        remotes = run(["git", "remote"], cwd=app.repo)
        assert "tinyserv" not in remotes.stdout.split(), describe(remotes)


# --- 4. config values travel byte for byte ---------------------------------------------------------------------

CONFIG_VALUES = {
    "X_SPACES": "two  spaces and a trailing one ",
    "X_QUOTES": "it's \"quoted\" 'twice'",
    "X_DOLLARS": "$HOME ${PATH} $(id) `id` $",
    "X_BACKSLASHES": "back\\slash \\n \\\\ \\",
    "X_EQUALS": "a=b==c=",
    "X_NEWLINES": "line one\nline two\n\nline four",
    "X_UNICODE": "unicode: héllo wörld ⬢ 日本語 🎉",
    "X_DASHES": "-n --json",
    "X_EMPTY": "",
}


@pytest.fixture(scope="module")
def configured(server, env_app):
    """core-env with every value of CONFIG_VALUES set in one config:set; returns config --json and --shell."""
    tinyserv(server, "config:set", *[f"{key}={value}" for key, value in CONFIG_VALUES.items()], cwd=env_app.repo)
    return types.SimpleNamespace(json=tinyserv(server, "config", "--json", cwd=env_app.repo),
                                 shell=tinyserv(server, "config", "--shell", cwd=env_app.repo))


@pytest.mark.parametrize("key", CONFIG_VALUES)
def test_a_config_value_reaches_the_app_and_comes_back_byte_for_byte(server, env_app, configured, key):
    value = CONFIG_VALUES[key]

    served_value = wait_for_http(server.url(env_app.port, f"/{key}"), timeout=30)
    assert served_value == (200, json.dumps(value, ensure_ascii=False, separators=(",", ":"))), served_value
    got = tinyserv(server, "config:get", key, cwd=env_app.repo)
    assert got.stdout == value + "\n", describe(got)
    assert json.loads(configured.json.stdout)[key] == value, describe(configured.json)
    evaluated = run(["bash", "-c", f'eval "$1" && printf %s "${key}"', "bash", configured.shell.stdout])
    assert evaluated.stdout == value, f"{describe(configured.shell)}\n{describe(evaluated)}"


# --- 5. apps with and without npm dependencies -----------------------------------------------------------------

def test_an_express_app_installs_its_dependencies_from_the_npm_registry_and_serves(server, sample):
    assert re.search(r"added \d+ packages", output(sample.pushed)), describe(sample.pushed)
    build = json.loads(server.ssh(f"cat {ROOT}/releases/core-sample.json").stdout)["build"]
    server.ssh(f"test -f {ROOT}/apps/core-sample/builds/{build}/node_modules/express/package.json")
    assert served(server, sample.port, "foo is").startswith("foo is ")


def test_an_app_without_dependencies_deploys_and_serves(server, env_app):
    assert "-----> Node.js app detected" in output(env_app.pushed), describe(env_app.pushed)
    assert "-----> Released v2" in output(env_app.pushed), describe(env_app.pushed)
    assert served_json(server, env_app.port, "env")["version"] == "env"


# --- 6. any branch deploys -------------------------------------------------------------------------------------

def test_any_branch_deploys_feature_to_main_and_master(server, tmp_path):
    with deployed_app(server, tmp_path, "core-branch", node_app("main")) as app:
        assert served_json(server, app.port, "main")["version"] == "main"

        run(["git", "checkout", "-q", "-b", "feature"], cwd=app.repo)
        feature = commit_all(app.repo, node_app("feature"), "feature")
        pushed = push(server, app.repo, "feature:main")
        assert "-----> Released v3" in output(pushed), describe(pushed)
        assert served_json(server, app.port, "feature")["version"] == "feature"
        assert info(server, app.repo)["commit"] == feature

        run(["git", "checkout", "-q", "-b", "master"], cwd=app.repo)
        master = commit_all(app.repo, node_app("master"), "master")
        pushed = push(server, app.repo, "master")
        assert "-----> Released v4" in output(pushed), describe(pushed)
        assert served_json(server, app.port, "master")["version"] == "master"
        assert info(server, app.repo)["commit"] == master


# --- 7. bad input: one line, exit 1, nothing changed -----------------------------------------------------------

INVALID_NAMES = ["../x", "a;b", "has space", "Caps", "", "a" * 31]
UNREACHABLE = "ssh://deploy@127.0.0.1:1"

# (args, where it runs: "fresh" = a repository without a tinyserv remote, "app" = core-good's, TINYSERV_REMOTE
# override, what the one line must say)
BAD_INPUTS = (
    [(["apps:create", name], "fresh", None, "invalid app name") for name in INVALID_NAMES]
    + [(["ps", "-a", name], "app", None, "invalid app name") for name in INVALID_NAMES]
    + [(["config:set", "-a", name, "A=b"], "fresh", None, "invalid app name") for name in INVALID_NAMES[:2]]
    + [
        (["apps:create", "core-good"], "fresh", None, "already exists"),
        (["apps:create", "core-other"], "app", None, "already points at app 'core-good'"),
        (["ps", "-a", "nosuchapp"], "app", None, "no app named 'nosuchapp'"),
        (["-a", "nosuchapp", "ps"], "app", None, "nosuchapp"),
        (["config:set", "-a", "nosuchapp", "A=b"], "fresh", None, "no app named 'nosuchapp'"),
        (["frobnicate"], "app", None, "invalid choice: 'frobnicate'"),
        (["config:set", "1X=y"], "app", None, "invalid config key '1X'"),
        (["config:set", "A B=c"], "app", None, "invalid config key 'A B'"),
        (["config:set", "foo"], "app", None, "'foo' is not KEY=VALUE"),
        (["apps:destroy"], "app", None, "needs --confirm core-good"),
        (["apps:destroy", "core-good"], "fresh", None, "needs --confirm core-good"),
        (["apps:destroy", "core-good", "--confirm", "core-goof"], "fresh", None, "does not match"),
        (["apps"], "fresh", UNREACHABLE, "cannot reach deploy@127.0.0.1"),
        # -a NAME goes to TINYSERV_REMOTE; without it, the app's git remote names its (reachable) server.
        (["ps", "-a", "core-good"], "app", UNREACHABLE, "cannot reach deploy@127.0.0.1"),
    ]
)


@pytest.mark.parametrize("args, where, remote, message", BAD_INPUTS,
                         ids=[" ".join(map(repr, case[0])) + (" unreachable" if case[2] else "")
                              for case in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(request, server, good_app, args, where, remote,
                                                              message):
    env = dict(server.env, TINYSERV_REMOTE=remote) if remote else server.env
    cwd = request.getfixturevalue("fresh_repo") if where == "fresh" else good_app.repo
    before = server_state(server)

    result = tinyserv(server, *args, cwd=cwd, env=env, check=False)

    assert result.returncode == 1, describe(result)
    assert "Traceback" not in output(result), describe(result)
    assert result.stdout == "", describe(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyserv: ") and message in lines[0], describe(result)
    assert server_state(server) == before, f"the server changed after\n{describe(result)}"
    assert served_json(server, good_app.port, "good")["version"] == "good"


def test_apps_create_in_a_repository_of_another_app_keeps_its_remote(server, good_app):
    refused = tinyserv(server, "apps:create", "core-other", cwd=good_app.repo, check=False)
    remote = run(["git", "remote", "get-url", "tinyserv"], cwd=good_app.repo)
    assert remote.stdout.strip() == git_url(server, "core-good"), f"{describe(refused)}\n{describe(remote)}"


BAD_PUSHES = [
    ("missing Procfile", {"Procfile": None}, "no Procfile"),
    ("Procfile without web", {"Procfile": "worker: node index.js\n"}, "declares no web process"),
    ("npm without package.json", {"Procfile": "web: npm start\n", "package.json": None}, "no package.json"),
    ("npm install fails", {"package.json": json.dumps({
        "name": "core-test-app", "version": "1.0.0", "scripts": {"start": "node index.js"},
        "dependencies": {"tinyserv-e2e-no-such-package-3f9c1a": "1.0.0"}})}, "npm install failed"),
]


@pytest.mark.parametrize("change, reason", [case[1:] for case in BAD_PUSHES], ids=[case[0] for case in BAD_PUSHES])
def test_a_bad_push_is_rejected_and_the_app_keeps_serving_the_previous_version(server, good_app, change, reason):
    repo = good_app.repo
    run(["git", "reset", "-q", "--hard", good_app.head], cwd=repo)
    commit_all(repo, change, "a bad version")
    before = server_state(server)

    pushed = push(server, repo, check=False)

    assert pushed.returncode != 0, describe(pushed)
    rejected = [line for line in output(pushed).splitlines() if REJECTED in line]
    assert len(rejected) == 1 and reason in rejected[0], describe(pushed)
    assert "Traceback" not in output(pushed), describe(pushed)
    response = http_get(server.url(good_app.port))
    assert response and json.loads(response[1])["version"] == "good", response
    assert info(server, repo)["commit"] == good_app.head
    assert server_state(server) == before, f"the server changed after\n{describe(pushed)}"


# --- 8. help ---------------------------------------------------------------------------------------------------

def readme_commands():
    """Every command named in the README's command table."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    table = text.split("| command | what it does |", 1)[1].split("\n\n", 1)[0]
    names = []
    for name in re.findall(r"`tinyserv ([a-z][a-z:]*)", table):
        if name not in names:
            names.append(name)
    return names


def test_the_readme_command_table_names_the_commands():
    assert {"apps", "apps:create", "ps", "config:set", "rollback"} <= set(readme_commands()), readme_commands()


def test_help_exits_zero_and_lists_every_command_of_the_readme(server, tmp_path):
    result = tinyserv(server, "--help", cwd=tmp_path)
    missing = [name for name in readme_commands()
               if not re.search(rf"^\s+{re.escape(name)}(\s|$)", result.stdout, re.M)]
    assert missing == [], f"missing from --help: {missing}\n{describe(result)}"


@pytest.mark.parametrize("name", readme_commands())
def test_command_help_exits_zero_and_describes_it(server, tmp_path, name):
    result = tinyserv(server, name, "--help", cwd=tmp_path)
    assert result.stdout.startswith(f"usage: tinyserv {name} "), describe(result)
    description = result.stdout.split("\n\n")[1].strip()
    assert description and not description.startswith(("options:", "positional")), describe(result)
    assert result.stderr == "", describe(result)


# --- what an app, a build or a commit writes reaches the terminal escaped (issue 16 item 8) --------------------

def test_escape_sequences_from_a_commit_a_release_command_and_an_app_arrive_escaped_over_ssh(server, tmp_path):
    assert_escaped_output(server, tmp_path, "core-esc")
