"""A bad push never takes an app down; releases, rollback, runtimes and the build cache (issue 4), over real ssh.

Every app here is named rel-... and destroyed at the end of its test (or of the module, for the shared one), so its
port goes back to the pool the other e2e modules draw from.
"""

import json
import os
import re
import subprocess
import threading
import time

import pytest

from support import describe, http_get, make_app, run, wait_until

PREFIX = "rel-"
ROOT = "/home/deploy/tinyserv"
SAMPLE_APP = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "tests", "sample-app")
PUSH_TIMEOUT = 180


def package_json(dependencies=None):
    """A package.json for a Node.js app; without dependencies `npm install` needs no registry."""
    return json.dumps({"name": "tinyserv-e2e-app", "version": "1.0.0", "private": True,
                       "dependencies": dependencies or {}}, indent=2) + "\n"


def node_index(body):
    """index.js of a dependency-free Node.js app that answers every request with `body`."""
    return ("require('http').createServer((req, res) => res.end(%s))"
            ".listen(process.env.PORT, () => console.log('listening on ' + process.env.PORT));\n" % body)


def node_app(text, procfile="web: node index.js\n"):
    """The files of a plain node `http` app that answers `text`."""
    return {"package.json": package_json(), "Procfile": procfile, "index.js": node_index(json.dumps(text))}


class App:
    """One app under test: its local repository, and the client commands run in it."""

    def __init__(self, server, repo, name):
        self.server = server
        self.repo = str(repo)
        self.name = name
        self.port = None

    def tinyserv(self, *args, check=True):
        """Run the real client in the app's repository."""
        __tracebackhide__ = True
        return run(["tinyserv", *args], cwd=self.repo, env=self.server.env, check=check, timeout=PUSH_TIMEOUT)

    def push(self, *refspecs, check=True):
        """`git push tinyserv REFSPEC...` (main by default)."""
        __tracebackhide__ = True
        return run(["git", "push", "tinyserv", *(refspecs or ["main"])], cwd=self.repo, env=self.server.env,
                   check=check, timeout=PUSH_TIMEOUT)

    def git(self, *args):
        """Run git in the app's repository; return its stripped stdout."""
        return run(["git", *args], cwd=self.repo).stdout.strip()

    def commit(self, files, message):
        """Write `files` ({name: text}) and commit them; return the new commit's sha."""
        for name, text in files.items():
            with open(os.path.join(self.repo, name), "w") as f:
                f.write(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def info(self):
        return json.loads(self.tinyserv("apps:info", "--json").stdout)

    def releases(self, *args):
        """`tinyserv releases --json`: newest first."""
        return json.loads(self.tinyserv("releases", "--json", *args).stdout)

    def config(self):
        return json.loads(self.tinyserv("config", "--json").stdout)

    def url(self):
        """The app's URL on this machine (its container port is asked once; the host side is re-read each time)."""
        if self.port is None:
            self.port = self.info()["port"]
        return self.server.url(self.port)

    def get(self):
        return http_get(self.url())

    def wait_serving(self, text, timeout=30):
        """Poll until the app answers exactly `text`."""
        url = self.url()
        return wait_until(lambda: http_get(url) == (200, text), timeout, interval=0.1,
                          message=f"{self.name} to answer {text!r} (it answered {http_get(url)!r} before)")

    def on_disk(self):
        """The app on the server's disk, in one ssh call: its public release file, build directories and main."""
        out = self.server.ssh(
            f"cat {ROOT}/releases/{self.name}.json; echo '#'; "
            f"find {ROOT}/apps/{self.name}/builds -mindepth 1 -maxdepth 1 -type d -printf '%f\\n'; echo '#'; "
            f"git --git-dir={ROOT}/repos/{self.name}.git rev-parse -q --verify refs/heads/main || true").stdout
        release, builds, main = out.split("#\n")
        return {"release": json.loads(release), "builds": sorted(builds.split()), "main": main.strip()}


@pytest.fixture
def new_app(server, tmp_path):
    """A factory: new_app(short_name, files) makes a repository and an app rel-SHORT_NAME; all destroyed after."""
    created = []

    def create(short_name, files):
        name = PREFIX + short_name
        repo = make_app(tmp_path / name, files)
        app = App(server, repo, name)
        app.tinyserv("apps:create", name)
        created.append(app)
        return app

    yield create
    destroyed = [app.tinyserv("apps:destroy", "--confirm", app.name, check=False) for app in created]
    for result in destroyed:
        assert result.returncode == 0, describe(result)


def deployed(app, text, *refspecs):
    """Push the app's main branch (or `refspecs`) and wait until it answers `text`; return the push's result."""
    result = app.push(*refspecs)
    app.wait_serving(text)
    return result


def output(result):
    """Everything a command printed (git push writes the server's lines to stderr)."""
    return result.stdout + result.stderr


def remote_lines(result):
    """The lines the server printed during a push, without git's `remote: ` prefix."""
    return [line[len("remote: "):].rstrip() for line in output(result).splitlines() if line.startswith("remote: ")]


class Poller:
    """While in a `with` block, GET `url` every ~50 ms in a background thread (until `deadline` seconds at most),
    recording each answer: (status, body), or None when nothing answered."""

    def __init__(self, url, deadline=PUSH_TIMEOUT, interval=0.05):
        self.url = url
        self.deadline = deadline
        self.interval = interval
        self.answers = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _poll(self):
        end = time.monotonic() + self.deadline
        while not self._stop.is_set() and time.monotonic() < end:
            self.answers.append(http_get(self.url, timeout=2))
            self._stop.wait(self.interval)

    def report(self):
        """How many polls there were and each answer that differed from the first, for failure messages."""
        return f"{len(self.answers)} polls; answers: " + ", ".join(
            f"#{i} {answer!r}" for i, answer in enumerate(self.answers) if answer != self.answers[0])


def push_while_polling(app, expected):
    """Push main while polling the app; assert it answered `expected` on every poll; return the push's result."""
    __tracebackhide__ = True
    with Poller(app.url()) as poller:
        result = app.push(check=False)
    assert len(poller.answers) >= 5, f"too few polls to tell anything: {poller.report()}\n{describe(result)}"
    wrong = [(i, answer) for i, answer in enumerate(poller.answers) if answer != expected]
    assert not wrong, (f"the running release did not answer {expected!r} on every poll during the push: "
                       f"{len(wrong)} of {len(poller.answers)} polls got {wrong[:10]}\n{describe(result)}")
    return result


def assert_rejected(result, reason):
    """The push failed the way git reports a declined pre-receive hook, with tinyserv's one-line reason."""
    __tracebackhide__ = True
    text = output(result)
    assert result.returncode != 0, f"the push was accepted\n{describe(result)}"
    assert "pre-receive hook declined" in text, describe(result)
    assert " !     Push rejected: " + reason in text, describe(result)


# --- 1. bad pushes leave the running release serving ---------------------------------------------------------

@pytest.fixture(scope="module")
def guarded_app(server, tmp_path_factory):
    """One app, deployed as v2 answering "one", that the bad pushes below are thrown at."""
    name = PREFIX + "guard"
    app = App(server, make_app(tmp_path_factory.mktemp("guard") / name, node_app("one")), name)
    app.tinyserv("apps:create", name)
    try:
        deployed(app, "one")
        assert app.info()["release"] == "v2"
        app.good_sha, app.good_text = app.git("rev-parse", "HEAD"), "one"
        yield app
    finally:
        run(["tinyserv", "apps:destroy", "--confirm", name], cwd=app.repo, env=server.env)


BAD_PUSHES = [
    # (what is wrong, config set first, files of the bad commit, what the push shows, why it was rejected)
    ("a dependency that does not exist", {},
     {"package.json": package_json({"tinyserv-e2e-no-such-package-4f1d": "1.0.0"})},
     ["Installing dependencies (npm install)", "404"], "npm install failed"),
    ("an app that throws at boot", {},
     {"index.js": 'console.error("booting the broken version");\nthrow new Error("this version does not boot");\n'},
     ["Checking that web boots", "booting the broken version", "Error: this version does not boot"],
     "web exited with 1 at boot"),
    ("an app that never listens on its port", {"TINYSERV_BOOT_TIMEOUT": "3"},
     {"index.js": "console.log('not listening');\nsetInterval(() => {}, 1000);\n"},
     ["up to 3 s", "not listening"], "web did not listen on $PORT within 3 s"),
    ("a release command that fails", {},
     {"Procfile": 'web: node index.js\nrelease: node -e "process.exit(4)"\n'},
     ['Running release command: node -e "process.exit(4)"'], "the release command failed (exit 4)"),
]


@pytest.mark.parametrize("config, files, shown, reason",
                         [case[1:] for case in BAD_PUSHES], ids=[case[0] for case in BAD_PUSHES])
def test_a_bad_push_is_rejected_while_the_running_release_answers_every_request(
        guarded_app, config, files, shown, reason):
    app = guarded_app
    if config:
        app.tinyserv("config:set", *(f"{key}={value}" for key, value in config.items()))
        app.wait_serving(app.good_text)
    before = app.on_disk()
    assert before["main"] == app.good_sha
    app.commit(files, "a bad version")
    try:
        result = push_while_polling(app, (200, app.good_text))
    finally:
        app.git("reset", "-q", "--hard", app.good_sha)
    assert_rejected(result, reason)
    for text in shown:
        assert text in output(result), describe(result)
    assert app.on_disk() == before, f"a rejected push changed the release, builds or main\n{describe(result)}"


def test_a_good_push_after_a_rejected_one_deploys_and_reports_its_release(guarded_app):
    app = guarded_app
    app.commit({"index.js": "throw new Error('broken');\n"}, "a broken version")
    try:
        assert_rejected(push_while_polling(app, (200, app.good_text)), "web exited with 1 at boot")
    finally:
        app.git("reset", "-q", "--hard", app.good_sha)
    sha = app.commit({"index.js": node_index('"two"')}, "two")

    result = app.push()

    app.wait_serving("two")
    app.good_sha, app.good_text = sha, "two"
    info = app.info()
    last = remote_lines(result)[-1] if remote_lines(result) else ""
    match = re.fullmatch(r"-----> Released v(\d+) \((\w{7})\) in \d+(\.\d+)? s — http://\S+:(\d+)/?", last)
    assert match, f"the last line the server printed was {last!r}\n{describe(result)}"
    assert (f"v{match[1]}", match[2], int(match[4])) == (info["release"], sha[:7], info["port"]), describe(result)
    assert info["commit"] == sha


# --- 2. the release phase -------------------------------------------------------------------------------------

def test_the_release_command_runs_once_per_deploy_with_the_config_vars(new_app, server, host):
    marker = f"/home/deploy/release-ran-{PREFIX}phase"
    procfile = f"web: node index.js\nrelease: sh -c 'echo \"$GREETING\" >> $HOME/release-ran-{PREFIX}phase'\n"
    server.ssh(f"rm -f {marker}")
    try:
        app = new_app("phase", node_app("one", procfile=procfile))
        app.tinyserv("config:set", "GREETING=hello")
        result = deployed(app, "one")
        assert "Running release command: sh -c" in output(result), describe(result)
        assert host.file(marker).content_string == "hello\n"

        app.tinyserv("config:set", "GREETING=bonjour")
        app.commit({"index.js": node_index('"two"')}, "two")
        deployed(app, "two")

        assert host.file(marker).content_string == "hello\nbonjour\n"
    finally:
        server.ssh(f"rm -f {marker}")


# --- 3. and 4. releases and rollback --------------------------------------------------------------------------

def greeting_app(version):
    """A node app answering '<GREETING> from <version>', so both code and config show in what it serves."""
    files = node_app("")
    files["index.js"] = node_index(f"`${{process.env.GREETING}} from {version}`")
    return files


def test_releases_lists_deploys_config_changes_and_rollbacks(new_app):
    app = new_app("history", greeting_app("one"))
    one = app.git("rev-parse", "HEAD")
    deployed(app, "undefined from one")                                          # v2
    app.tinyserv("config:set", "GREETING=hello")                                 # v3
    two = app.commit(greeting_app("two"), "two")
    deployed(app, "hello from two")                                              # v4
    app.tinyserv("config:unset", "GREETING")                                     # v5
    app.tinyserv("rollback")                                                     # v6

    expected = [
        (6, "Rollback to v4", two),
        (5, "Remove GREETING config vars", two),
        (4, f"Deploy {two[:7]}", two),
        (3, "Set GREETING config vars", one),
        (2, f"Deploy {one[:7]}", one),
        (1, "Initial release", None),
    ]
    assert [(r["version"], r["description"], r["commit"]) for r in app.releases()] == expected
    assert [r["version"] for r in app.releases("-n", "2")] == [6, 5]
    listing = app.tinyserv("releases")
    assert f"=== {app.name} Releases - Current: v6" in listing.stdout, describe(listing)
    for version, description, _ in expected:
        assert re.search(rf"^v{version}\s+{re.escape(description)}\s", listing.stdout, re.M), describe(listing)
    shown = app.tinyserv("releases", "-n", "2").stdout
    assert "Rollback to v4" in shown and "Remove GREETING" in shown and "Deploy" not in shown, shown
    info = app.tinyserv("releases:info", "v2")
    for pattern in [r"=== Release v2\n", rf"Description:\s+Deploy {one[:7]}\n", rf"Commit:\s+{one}\n"]:
        assert re.search(pattern, info.stdout), describe(info)
    as_json = json.loads(app.tinyserv("releases:info", "v3", "--json").stdout)
    assert (as_json["description"], as_json["config_keys"]) == ("Set GREETING config vars", ["GREETING"])


def test_rollback_restores_code_and_config_without_rebuilding_and_refuses_unknown_versions(new_app):
    app = new_app("rollback", greeting_app("one"))
    app.tinyserv("config:set", "GREETING=hello")                                 # v2
    deployed(app, "hello from one")                                              # v3
    app.commit(greeting_app("two"), "two")
    deployed(app, "hello from two")                                              # v4
    app.tinyserv("config:set", "GREETING=bonjour")                               # v5
    app.wait_serving("bonjour from two")
    builds = app.on_disk()["builds"]

    started = time.monotonic()
    previous = app.tinyserv("rollback")
    took = time.monotonic() - started

    assert "Rollback to v4" in previous.stdout, describe(previous)
    assert app.get() == (200, "hello from two"), describe(previous)
    assert app.config() == {"GREETING": "hello"}
    assert took < 10, f"rollback took {took:.1f} s\n{describe(previous)}"

    chosen = app.tinyserv("rollback", "v3")

    assert "Rollback to v3" in chosen.stdout, describe(chosen)
    assert app.get() == (200, "hello from one"), describe(chosen)
    assert app.config() == {"GREETING": "hello"}
    assert [r["description"] for r in app.releases("-n", "2")] == ["Rollback to v3", "Rollback to v4"]
    assert app.releases()[0]["build"] == app.releases()[4]["build"], "v7 should run v3's build"
    assert app.on_disk()["builds"] == builds, "a rollback must not build anything"
    for result in (previous, chosen):
        assert "Installing dependencies" not in output(result) and "Building" not in output(result), describe(result)
    log = app.tinyserv("logs", "-n", "300").stdout
    assert "Installing dependencies" not in log, log

    refused = app.tinyserv("rollback", "v999", check=False)

    assert refused.returncode == 1, describe(refused)
    assert refused.stderr.startswith("tinyserv: ") and "v999" in refused.stderr, describe(refused)
    assert len(refused.stderr.splitlines()) == 1 and "Traceback" not in refused.stderr, describe(refused)
    assert app.on_disk()["release"]["version"] == 7
    assert app.get() == (200, "hello from one")


# --- 5. and 6. runtimes ---------------------------------------------------------------------------------------

PYTHON_APP = '''\
import http.server
import os

import six


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from python with six " + six.__version__).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.HTTPServer(("", int(os.environ["PORT"])), Hello).serve_forever()
'''


def test_a_python_app_deploys_into_a_virtualenv_and_serves(new_app):
    app = new_app("python", {"requirements.txt": "six==1.16.0\n", "Procfile": "web: python app.py\n",
                             "app.py": PYTHON_APP})

    result = deployed(app, "hello from python with six 1.16.0")

    for line in ["-----> Python app detected", "-----> Installing dependencies (pip install -r requirements.txt)"]:
        assert line in remote_lines(result), describe(result)


def test_a_procfile_only_app_deploys_as_it_is_and_serves(new_app):
    page = "<h1>a generic app</h1>\n"
    app = new_app("generic", {"Procfile": "web: python3 -m http.server $PORT\n", "index.html": page})

    result = deployed(app, page)

    assert "-----> Generic app detected (Procfile only)" in remote_lines(result), describe(result)


# --- 7. two pushes at once ------------------------------------------------------------------------------------

def test_two_simultaneous_pushes_end_with_one_whole_release_serving(new_app, server, tmp_path):
    first = new_app("race", node_app("one"))
    deployed(first, "one")
    one = first.git("rev-parse", "HEAD")
    # A slow disk: git updates the branch a second after the pre-receive hook has deployed. A push waiting for the
    # lock must not take that second to deploy a commit whose branch is about to move.
    hook = f"{ROOT}/repos/{first.name}.git/hooks/reference-transaction"
    server.ssh(f"cat > {hook} && chmod +x {hook}", input='#!/bin/sh\n[ "$1" = prepared ] && sleep 1\nexit 0\n')
    second = App(server, tmp_path / "second-clone", first.name)
    run(["git", "clone", "-q", first.repo, second.repo])
    second.git("config", "user.name", "Second Clone")
    second.git("config", "user.email", "second@tinyserv.invalid")
    second.git("remote", "add", "tinyserv", first.git("remote", "get-url", "tinyserv"))
    shas = {first.commit({"index.js": node_index('"two-a"')}, "two-a"): "two-a",
            second.commit({"index.js": node_index('"two-b"')}, "two-b"): "two-b"}

    pushes = [subprocess.Popen(["git", "push", "tinyserv", "main"], cwd=app.repo, env=server.env, text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for app in (first, second)]
    results = []
    for push, app in zip(pushes, (first, second)):
        stdout, stderr = push.communicate(timeout=PUSH_TIMEOUT)
        results.append(subprocess.CompletedProcess(["git", "-C", app.repo, "push", "tinyserv", "main"],
                                                   push.returncode, stdout, stderr))
    both = "\n".join(describe(r) for r in results)

    pushed = [sha for sha, result in zip(shas, results) if result.returncode == 0]
    assert pushed, f"neither push succeeded\n{both}"
    served = first.get()
    assert served in [(200, text) for text in shas.values()], f"served {served!r}\n{both}"
    served_sha = next(sha for sha, text in shas.items() if text == served[1])
    assert pushed == [served_sha], f"served {served!r}, but the pushes that succeeded were {pushed}\n{both}"
    info = first.info()
    assert (info["commit"], info["state"]) == (served_sha, "up"), f"{info}\n{both}"
    assert first.on_disk()["main"] == served_sha, f"the server's main is not the deployed commit\n{both}"
    assert [r["description"] for r in first.releases()] == [
        f"Deploy {served_sha[:7]}", f"Deploy {one[:7]}", "Initial release"], both
    refused = next(r for r in results if r.returncode != 0)
    assert re.search(r"changed while this push waited|failed to update ref|cannot lock ref|fetch first|"
                     r"non-fast-forward|\[rejected\]", output(refused)), both


# --- 8. the build cache ---------------------------------------------------------------------------------------

def sample_app_files():
    files = {}
    for name in ("Procfile", "index.js", "package.json", "package-lock.json"):
        with open(os.path.join(SAMPLE_APP, name)) as f:
            files[name] = f.read()
    return files


def test_a_code_only_push_reuses_dependencies_and_a_manifest_change_installs_them(new_app):
    files = sample_app_files()
    app = new_app("cache", files)
    first = deployed(app, "foo is undefined\n")
    assert "-----> Installing dependencies (npm ci)" in remote_lines(first), describe(first)

    app.commit({"index.js": files["index.js"].replace("foo is", "foo now is")}, "code only")
    code_only = deployed(app, "foo now is undefined\n")

    assert "-----> Reusing dependencies (package.json and package-lock.json unchanged)" in remote_lines(code_only), \
        describe(code_only)
    assert "Installing dependencies" not in output(code_only), describe(code_only)

    manifest = json.loads(files["package.json"])
    manifest["description"] = "the sample app, with a changed package.json"
    app.commit({"package.json": json.dumps(manifest, indent=2) + "\n"}, "manifest")
    changed = deployed(app, "foo now is undefined\n")

    assert "-----> Installing dependencies (npm ci)" in remote_lines(changed), describe(changed)
    assert "Reusing dependencies" not in output(changed), describe(changed)


# --- 9. pruning -----------------------------------------------------------------------------------------------

def test_old_builds_are_pruned_and_rolling_back_to_one_is_refused(new_app, host):
    app = new_app("prune", node_app("deploy 1"))
    deployed(app, "deploy 1")
    for n in range(2, 8):
        app.commit({"index.js": node_index(json.dumps(f"deploy {n}"))}, f"deploy {n}")
        deployed(app, f"deploy {n}")
    releases = app.releases()
    assert releases[0]["version"] == 8

    builds = app.on_disk()["builds"]
    assert 1 <= len(builds) <= 5, builds
    assert releases[0]["build"] in builds
    assert not host.file(f"{ROOT}/apps/{app.name}/builds/{releases[-2]['build']}").exists, builds

    result = app.tinyserv("rollback", "v2", check=False)

    assert result.returncode == 1, describe(result)
    assert "v2" in result.stderr and "pruned" in result.stderr, describe(result)
    assert len(result.stderr.splitlines()) == 1, describe(result)
    assert app.releases()[0]["version"] == 8
    assert app.get() == (200, "deploy 7")


# --- 10. deleting a branch ------------------------------------------------------------------------------------

def web_pid(app):
    """The pid of web.1 when it is the app's only process and up, else None."""
    instances = json.loads(app.tinyserv("ps", "--json").stdout)["instances"]
    states = [(i["name"], i["state"]) for i in instances]
    return instances[0]["pid"] if states == [("web.1", "up")] else None


def test_pushing_a_branch_deletion_does_not_redeploy(new_app):
    app = new_app("branches", node_app("one"))
    app.git("branch", "somebranch")
    deployed(app, "one", "somebranch")
    deployed(app, "one", "main")  # main is now what runs; somebranch is just a branch on the server
    releases = app.releases()
    head = app.git("rev-parse", "HEAD")[:7]
    assert [r["description"] for r in releases] == [f"Deploy {head}", f"Deploy {head}", "Initial release"]
    pid = wait_until(lambda: web_pid(app), 30, message="one web.1 up")

    result = app.push(":somebranch")

    assert "Building" not in output(result) and "Released" not in output(result), describe(result)
    assert app.releases() == releases, describe(result)
    assert app.get() == (200, "one")
    assert web_pid(app) == pid
    refs = app.server.ssh(f"git --git-dir={ROOT}/repos/{app.name}.git for-each-ref --format='%(refname)'").stdout
    assert refs.split() == ["refs/heads/main"], refs
