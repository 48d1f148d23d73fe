"""Config values travel byte for byte: from the command line, to the app's environment, and back out."""

import json

from support import http_get, node_app, run

VALUES = {
    "SPACES": "a b  c",
    "PADDED": "  leading and trailing  ",
    "SINGLE_QUOTES": "it's 'quoted'",
    "DOUBLE_QUOTES": 'say "hi"',
    "DOLLARS": "$HOME ${PATH} $(id) $$",
    "BACKTICKS": "`id` and `uname -a`",
    "BACKSLASHES": "a\\b\\\\c\\n\\",
    "EQUALS": "a=b==c=",
    "NEWLINE": "line one\nline two",
    "UNICODE": "héllo wörld ✓ 日本語 🚀",
    "EVERYTHING": "'\"$`\\=;|&<>*?~#!{}[]() \n\t\u00e9\U0001f680",
}

ENV_SERVER = (
    'const http = require("http");\n'
    "http.createServer((req, res) => {\n"
    '  const key = new URL(req.url, "http://localhost").searchParams.get("key");\n'
    '  res.setHeader("Content-Type", "application/json; charset=utf-8");\n'
    "  res.end(JSON.stringify(key in process.env ? process.env[key] : null));\n"
    '}).listen(process.env.PORT, () => console.log("listening on port " + process.env.PORT));\n')


def deployed_env_app(server, tmp_path):
    app = server.new_app(tmp_path, node_app("unused", extra={"server.js": ENV_SERVER}), prefix="config")
    server.push(app)
    return app


def app_sees(server, app, key):
    status, body = http_get(server.url(app, "/?key=" + key))
    assert status == 200, body
    return json.loads(body)


def test_config_values_reach_the_app_byte_for_byte(server, tmp_path):
    app = deployed_env_app(server, tmp_path)
    server.tinyserv("config:set", *[f"{k}={v}" for k, v in VALUES.items()], cwd=app.path)
    assert {key: app_sees(server, app, key) for key in VALUES} == VALUES


def test_config_get_prints_the_value_exactly(server, tmp_path):
    app = server.new_app(tmp_path, node_app("unused"), prefix="config")
    server.tinyserv("config:set", *[f"{k}={v}" for k, v in VALUES.items()], cwd=app.path)
    printed = {key: server.tinyserv("config:get", key, cwd=app.path).stdout for key in VALUES}
    assert printed == {key: value + "\n" for key, value in VALUES.items()}


def test_config_json_round_trips(server, tmp_path):
    app = server.new_app(tmp_path, node_app("unused"), prefix="config")
    server.tinyserv("config:set", *[f"{k}={v}" for k, v in VALUES.items()], cwd=app.path)
    shown = server.config(app)
    assert shown == VALUES
    copy = server.new_app(tmp_path, node_app("unused"), prefix="copy")
    server.tinyserv("config:set", *[f"{k}={v}" for k, v in shown.items()], cwd=copy.path)
    assert server.config(copy) == VALUES


def test_config_shell_output_gives_a_shell_the_same_values(server, tmp_path):
    app = server.new_app(tmp_path, node_app("unused"), prefix="config")
    server.tinyserv("config:set", *[f"{k}={v}" for k, v in VALUES.items()], cwd=app.path)
    exports = server.tinyserv("config", "--shell", cwd=app.path).stdout
    # sh evaluates the exports, then prints each variable NUL-terminated.
    script = r"""eval "$1"; shift; for key; do eval "printf '%s\0' \"\${$key}\""; done"""
    result = run(["sh", "-c", script, "sh", exports, *VALUES], cwd=app.path)
    assert result.stdout.split("\0")[:-1] == list(VALUES.values())
