"""A push that cannot work is rejected with its reason, and the release that runs keeps serving throughout."""

import json
import os
import re
import threading
import types

import pytest

from localserver import Link
from support import describe, http_get, node_app

GOOD = node_app("good v1")
NO_SUCH_PACKAGE = "tinyserv-integration-no-such-package-7f3c9a"

BAD_PUSHES = [
    # (id, the tree pushed, words of the reason)
    ("no Procfile", {k: v for k, v in GOOD.items() if k != "Procfile"}, "no Procfile"),
    ("a Procfile without web", dict(GOOD, Procfile="worker: node server.js\n"), "no web process"),
    ("npm in the Procfile but no package.json",
     {"Procfile": "web: npm start\n", "server.js": GOOD["server.js"]}, "no package.json"),
    ("a dependency that does not exist",
     dict(GOOD, **{"package.json": json.dumps({"name": "t", "version": "1.0.0",
                                               "dependencies": {NO_SUCH_PACKAGE: "^1.0.0"}})}),
     "npm install failed"),
    ("a malformed Procfile", dict(GOOD, Procfile="web: node server.js\nthis line names no process\n"),
     "Procfile line 2"),
    ("a failing build script",
     dict(GOOD, **{"package.json": json.dumps({"name": "t", "version": "1.0.0",
                                               "scripts": {"build": "node -e 'process.exit(2)'"}})}),
     "npm run build failed (exit 2)"),
    ("an app that throws at boot", dict(GOOD, **{"server.js": 'throw new Error("boom at boot");\n'}),
     "web exited with 1 at boot"),
    ("an app that never binds", dict(GOOD, **{"server.js": "setInterval(() => {}, 1000);\n"}),
     "did not listen on $PORT within 3 s"),
    # Files tinyserv reads from a push must be regular files inside the pushed tree, of a reasonable size.
    ("a Procfile linked to /dev/zero", dict(GOOD, Procfile=Link("/dev/zero")), "Procfile points outside the pushed"),
    ("a Procfile linked to /etc/passwd", dict(GOOD, Procfile=Link("/etc/passwd")), "Procfile points outside"),
    ("a Procfile linked out of the tree by ..", dict(GOOD, Procfile=Link("../../../../../etc/hostname")),
     "Procfile points outside"),
    ("a Procfile that is a directory", dict({k: v for k, v in GOOD.items() if k != "Procfile"},
                                            **{"Procfile/web": "node server.js"}), "Procfile is not a regular file"),
    ("a Procfile of 100 KB", dict(GOOD, Procfile="web: node server.js\n" + "# padding\n" * 10000),
     "Procfile is larger than 64 KiB"),
    ("a NUL byte in the release command", dict(GOOD, Procfile="web: node server.js\nrelease: echo a\0b\n"),
     "Procfile line 2 contains a NUL byte"),
    ("a Procfile that is not UTF-8", dict(GOOD, Procfile=b"web: node server.js # \xff\n"), "not UTF-8"),
    ("a package.json linked to /etc/passwd", dict(GOOD, **{"package.json": Link("/etc/passwd")}),
     "package.json points outside"),
    ("a package.json that is a list", dict(GOOD, **{"package.json": "[]"}), "package.json is not a JSON object"),
    ("a requirements.txt linked to /dev/zero",
     {"Procfile": "web: python3 -m http.server $PORT\n", "requirements.txt": Link("/dev/zero")},
     "requirements.txt points outside"),
]


@pytest.fixture(scope="module")
def deployed(module_server, tmp_path_factory):
    """An app serving 'good v1', with a 3 s boot timeout so that a web that never binds fails fast."""
    server = module_server
    app = server.new_app(tmp_path_factory.mktemp("pushes"), GOOD, prefix="pushes")
    server.tinyserv("config:set", "TINYSERV_BOOT_TIMEOUT=3", cwd=app.path)
    server.push(app)
    return types.SimpleNamespace(server=server, app=app, url=server.url(app))


class Poller:
    """GETs a URL over and over in a background thread, keeping every answer (None: nothing answered)."""

    def __init__(self, url):
        self.url = url
        self.answers = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.answers.append(http_get(self.url, timeout=2))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def builds(server, app):
    return sorted(os.listdir(os.path.join(server.root, "apps", app.name, "builds")))


@pytest.mark.parametrize("files, reason", [c[1:] for c in BAD_PUSHES], ids=[c[0] for c in BAD_PUSHES])
def test_a_bad_push_is_rejected_and_the_running_release_keeps_serving(deployed, files, reason):
    server, app = deployed.server, deployed.app
    releases_before, builds_before = server.releases(app), builds(server, app)
    processes_before = sorted(server.app_processes(app))
    server.commit(app, files, message=reason)

    with Poller(deployed.url) as poller:
        pushed = server.push(app, check=False)

    output = pushed.stdout + pushed.stderr
    assert pushed.returncode != 0, describe(pushed)
    assert "pre-receive hook declined" in output, describe(pushed)
    rejected = re.findall(r"^remote:  !     Push rejected: (.*)$", output, re.M)
    assert len(rejected) == 1 and reason in rejected[0], describe(pushed)
    assert poller.answers and set(poller.answers) == {(200, "good v1")}, poller.answers
    assert http_get(deployed.url) == (200, "good v1")
    assert server.releases(app) == releases_before
    assert builds(server, app) == builds_before
    assert sorted(server.app_processes(app)) == processes_before, "the trial web must be gone, the running one kept"


def tip(server, app):
    repo = os.path.join(server.root, "repos", app.name + ".git")
    return server.git("--git-dir", repo, "rev-parse", "-q", "--verify", "refs/heads/main", cwd=server.root,
                      check=False).stdout.strip()


REF_PUSHES = [
    # (id, git push arguments, words of the reason) — only a branch deploys, one at a time, and not its deletion
    ("a tag", ["tinyserv", "v1"], "refs/tags/v1 is not one"),
    ("a branch and a tag", ["tinyserv", "main", "v1"], "refs/tags/v1 is not one"),
    ("two branches at once", ["tinyserv", "main:main", "main:other"], "push one branch at a time"),
    ("deleting the deployed branch", ["tinyserv", ":main"], "main is what this app runs: deleting it is refused"),
    ("a ref outside refs/heads", ["tinyserv", "main:refs/notes/x"], "refs/notes/x is not one"),
]


@pytest.mark.parametrize("args, reason", [c[1:] for c in REF_PUSHES], ids=[c[0] for c in REF_PUSHES])
def test_a_push_of_anything_but_one_branch_is_rejected_and_changes_nothing(deployed, args, reason):
    server, app = deployed.server, deployed.app
    server.git("tag", "-f", "v1", cwd=app.path)
    before, tip_before = server.snapshot(), tip(server, app)
    pushed = server.git("push", *args, cwd=app.path, check=False)
    output = pushed.stdout + pushed.stderr
    assert pushed.returncode != 0 and "Traceback" not in output, describe(pushed)
    rejected = re.findall(r"^remote:  !     Push rejected: (.*)$", output, re.M)
    assert len(rejected) == 1 and reason in rejected[0], describe(pushed)
    assert server.snapshot() == before
    assert tip(server, app) == tip_before
    assert http_get(deployed.url) == (200, "good v1")


def test_a_good_push_after_rejected_ones_deploys(deployed):
    server, app = deployed.server, deployed.app
    server.commit(app, node_app("good v2"), message="good again")
    pushed = server.push(app)
    assert "Released v" in pushed.stdout + pushed.stderr
    assert http_get(deployed.url) == (200, "good v2")
