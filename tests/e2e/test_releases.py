"""A bad push never takes an app down; releases, rollback, runtimes and the build cache (issue 4), over real ssh.

Every app here is named rel-... and destroyed at the end of its test (or of the module, for the shared one), so its
port goes back to the pool the other e2e modules draw from.
"""

import json
import re
import subprocess
import time

import pytest

from helpers import (PREFIX, PUSH_TIMEOUT, ROOT, App, assert_rejected, deployed, node_app, node_index, output,
                     package_json, push_while_polling, remote_lines, sample_app_files)
from support import describe, make_app, run, wait_until
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

    for line in ["-----> Python app detected", "-----> Installing dependencies (uv pip install -r requirements.txt)"]:
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

def test_a_code_only_push_reuses_dependencies_and_a_manifest_change_installs_them(new_app):
    files = sample_app_files()
    app = new_app("cache", files)
    first = deployed(app, "foo is undefined\n")
    assert "-----> Installing dependencies (npm ci)" in remote_lines(first), describe(first)

    app.commit({"index.js": files["index.js"].replace("foo is", "foo now is")}, "code only")
    code_only = deployed(app, "foo now is undefined\n")

    assert "-----> Reusing dependencies (manifests, lockfile and runtime unchanged)" in remote_lines(code_only), \
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
