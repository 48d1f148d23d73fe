"""What an app, a build or a commit writes reaches the operator's terminal escaped (issue 16 item 8, 17 item 10).

Anyone who may push writes the committer's email, the Procfile, the build's and the app's output; printed raw,
an escape sequence in any of them could rewrite the admin's screen. tinyserv shows control characters other than
tab and newline as \\x1b and the like; `logs --raw` prints the lines as written.
"""

import json

import pytest

from support import describe, node_app, wait_until

ESC = "\x1b"
CLEAR = ESC + "[2J"  # clears the screen
SHOWN = "\\x1b[2J"   # what the operator sees instead

SERVER_JS = (
    'const http = require("http");\n'
    'console.log("app says \\u001b[2Jhello");\n'
    'http.createServer((req, res) => res.end("ok")).listen(process.env.PORT);\n')


@pytest.fixture(scope="module")
def hostile(module_server, tmp_path_factory):
    """An app whose release phase, web output, Procfile and committer's email all hold ESC [2J; pushed once."""
    files = node_app("ok", procfile="web: node server.js # \x1b[2J\nrelease: printf 'release says \\033[2Jhi\\n'\n",
                     extra={"server.js": SERVER_JS})
    app = module_server.new_app(tmp_path_factory.mktemp("escapes"), files, prefix="esc")
    module_server.git("config", "user.email", "evil" + CLEAR + "@example.invalid", cwd=app.path)
    module_server.git("commit", "-q", "--amend", "--reset-author", "--no-edit", cwd=app.path)
    pushed = module_server.push(app)
    wait_until(lambda: "hello" in module_server.tinyserv("logs", "-a", app.name).stdout, 30,
               message="the web's first line in the log")
    return module_server, app, pushed


def assert_escaped(result, *expected):
    __tracebackhide__ = True
    shown = describe(result)
    assert ESC not in result.stdout + result.stderr, shown
    for text in expected:
        assert text in result.stdout + result.stderr, shown


def test_a_push_shows_the_release_phases_escape_sequences_escaped(hostile):
    _, _, pushed = hostile
    assert_escaped(pushed, "release says " + SHOWN + "hi")


def test_releases_show_a_committers_escape_sequences_escaped(hostile):
    server, app, _ = hostile
    assert_escaped(server.tinyserv("releases", "-a", app.name), "evil" + SHOWN)
    assert_escaped(server.tinyserv("releases:info", "-a", app.name), "evil" + SHOWN)


def test_releases_json_keeps_the_email_as_it_is(hostile):
    server, app, _ = hostile
    newest = json.loads(server.tinyserv("releases", "-a", app.name, "--json").stdout)[0]
    assert newest["by"] == "evil" + CLEAR + "@example.invalid"


def test_ps_shows_a_procfiles_escape_sequences_escaped(hostile):
    server, app, _ = hostile
    assert_escaped(server.tinyserv("ps", "-a", app.name), "# " + SHOWN)


def test_logs_show_an_apps_escape_sequences_escaped_and_raw_shows_them_as_written(hostile):
    server, app, _ = hostile
    assert_escaped(server.tinyserv("logs", "-a", app.name), "app says " + SHOWN + "hello")
    raw = server.tinyserv("logs", "-a", app.name, "--raw")
    assert "app says " + CLEAR + "hello" in raw.stdout, describe(raw)


def test_an_error_that_quotes_an_apps_output_shows_it_escaped(hostile, tmp_path):
    server, _, _ = hostile
    files = node_app("x", procfile="web: printf 'dying \\033[2Jnow\\n'; exit 3\n")
    app = server.new_app(tmp_path, files, prefix="escdie")
    pushed = server.push(app, check=False)
    assert pushed.returncode != 0, describe(pushed)
    assert_escaped(pushed, "dying " + SHOWN + "now")
