"""Per-app limits on a real node app: over TINYSERV_MEMORY_LIMIT it is restarted; TINYSERV_NOFILE and TINYSERV_NPROC are its ulimits."""

import json

from support import http_get, node_app, wait_for_http, wait_until

GROWER = (
    'const http = require("http");\n'
    "const kept = [];\n"
    "http.createServer((req, res) => {\n"
    '  if (req.url === "/grow") { for (let i = 0; i < 30; i++) kept.push(Buffer.alloc(2 ** 20, 1)); }\n'
    '  res.end("holding " + kept.length + " MB");\n'
    "}).listen(process.env.PORT);\n")


def test_an_app_over_its_memory_limit_is_restarted_and_ps_and_logs_say_so(server, tmp_path):
    app = server.new_app(tmp_path, node_app("unused", extra={"server.js": GROWER}), prefix="grower")
    server.push(app)
    server.tinyserv("config:set", "TINYSERV_MEMORY_LIMIT=100", cwd=app.path)
    url = server.url(app)
    assert http_get(url) == (200, "holding 0 MB")
    for _ in range(4):
        http_get(url + "grow")  # 30 MB more each time: 120 MB and counting, plus node itself
    restarted = wait_until(lambda: next((i for i in json.loads(server.tinyserv(
        "ps", "--json", cwd=app.path).stdout)["instances"] if i["restarts"] >= 1), None), 20,
        message="web.1 to be restarted for its memory")
    assert restarted["reason"] == "memory"
    assert wait_for_http(url, contains="holding 0 MB", timeout=20)
    log = server.tinyserv("logs", "--ps", "tinyserv", cwd=app.path).stdout
    assert "Error R15 (Memory quota exceeded): web.1 used" in log and "over TINYSERV_MEMORY_LIMIT=100 MB" in log
    shown = server.tinyserv("ps", cwd=app.path).stdout
    row = next(line.split() for line in shown.splitlines() if line.startswith("web.1 "))
    assert "LAST EXIT" in shown and row[-1] == "memory", shown


def test_tinyserv_nofile_and_nproc_are_the_limits_of_the_app_and_of_run(server, tmp_path):
    app = server.new_app(tmp_path, node_app("files"), prefix="files")
    server.push(app)
    server.tinyserv("config:set", "TINYSERV_NOFILE=64", "TINYSERV_NPROC=500", cwd=app.path)
    in_run = limits(server.tinyserv("run", "cat /proc/self/limits", cwd=app.path).stdout)
    # Behind nginx the web of the release before drains for a moment: wait until the new one is alone.
    [pid] = wait_until(lambda: server.node_processes(app, "web.1") if len(
        server.node_processes(app, "web.1")) == 1 else None, 30, message="one web.1")
    with open(f"/proc/{pid}/limits") as f:
        in_web = limits(f.read())
    for seen in (in_run, in_web):
        assert seen["Max open files"] == ["64", "64"], seen
        assert seen["Max processes"] == ["500", "500"], seen


def limits(text):
    """/proc/PID/limits as {name: [soft, hard]}."""
    return {line[:26].strip(): line[26:].split()[:2] for line in text.splitlines()[1:]}
