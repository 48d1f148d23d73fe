"""A config change or a rollback is judged like a push: if web does not boot with it, nothing changes."""

import os

import pytest

from support import describe, http_get, node_app

PICKY = (
    'const http = require("http");\n'
    'if (process.env.CRASH) { console.error("refusing to start: CRASH is " + process.env.CRASH); process.exit(3); }\n'
    'http.createServer((req, res) => res.end("hello " + (process.env.NAME || "nobody")))\n'
    '  .listen(process.env.PORT);\n')


@pytest.fixture
def picky(server, tmp_path):
    app = server.new_app(tmp_path, node_app("unused", extra={"server.js": PICKY}), prefix="picky")
    server.push(app)
    server.tinyserv("config:set", "NAME=world", "TINYSERV_BOOT_TIMEOUT=5", cwd=app.path)
    return app


@pytest.mark.parametrize("change, says", [
    (["config:set", "CRASH=yes"], "refusing to start: CRASH is yes"),
    (["config:set", "PATH=/nonexistent"], "not found"),
    (["config:unset", "PATH", "NAME", "CRASH_NOT_SET"], None),  # fine: NAME goes, web still boots
])
def test_a_config_change_that_web_cannot_boot_with_is_refused_and_nothing_changes(server, picky, change, says):
    url = server.url(picky)
    releases_before = server.releases(picky)
    result = server.tinyserv(*change, cwd=picky.path, check=False)
    if says is None:
        assert result.returncode == 0, describe(result)
        assert http_get(url) == (200, "hello nobody")
        return
    shown = describe(result)
    assert result.returncode == 1 and "Traceback" not in result.stderr, shown
    assert result.stderr.splitlines()[-1].startswith("tinyserv: web exited with"), shown
    assert "the running release was not touched" in result.stderr.splitlines()[-1], shown
    assert says in result.stderr, "web's last lines are shown above the error\n" + shown
    assert server.releases(picky) == releases_before
    assert http_get(url) == (200, "hello world")


def test_a_rollback_to_a_release_web_cannot_boot_with_is_refused(server, picky, tmp_path):
    # The first deploy's build is damaged on disk (as a disk fault or a hand edit would), then rolled back to.
    url = server.url(picky)
    first = server.releases(picky)[-2]  # the first deploy
    server.commit(picky, node_app("second version"))
    server.push(picky)
    build = os.path.join(server.root, "apps", picky.name, "builds", first["build"], "server.js")
    with open(build, "w") as f:
        f.write('console.error("this build is damaged"); process.exit(4);\n')
    releases_before = server.releases(picky)
    result = server.tinyserv("rollback", f"v{first['version']}", cwd=picky.path, check=False)
    shown = describe(result)
    assert result.returncode == 1 and "this build is damaged" in result.stderr, shown
    assert "web exited with 4 at boot" in result.stderr.splitlines()[-1], shown
    assert server.releases(picky) == releases_before
    assert http_get(url) == (200, "second version")
