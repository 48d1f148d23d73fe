"""Apps that keep data, on localhost: the data directory, cron entries at deploy, add-on refusals, and a whole
server backed up and restored onto other servers (other root, other ports). PostgreSQL and Redis add-ons
themselves run in the e2e suite, whose server image has them."""

import json
import os
import stat

from localserver import local_server
from support import http_get, wait_for_http, wait_until

SERVER_JS = """const http = require("http"), fs = require("fs"), path = require("path");
const dir = process.env.TINYSERV_DATA_DIR, file = path.join(dir, "visits");
const read = () => (fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) : 0);
http.createServer((req, res) => {
  if (req.url === "/visit") fs.writeFileSync(file, String(read() + 1));
  res.end(JSON.stringify({dir, visits: read(), version: %s, greeting: process.env.GREETING || null}));
}).listen(process.env.PORT);
"""


def data_app(version="one", procfile="web: node server.js\n", app_json=None, build_script=None):
    """A node app (no dependencies) that counts visits in its data directory and says which version it is."""
    package = {"name": "data-app", "version": "1.0.0", "private": True}
    if build_script:
        package["scripts"] = {"build": build_script}
    files = {"package.json": json.dumps(package), "Procfile": procfile, "server.js": SERVER_JS % json.dumps(version)}
    if app_json is not None:
        files["app.json"] = app_json
    return files


def get(server, app, path="/"):
    """The app's JSON answer."""
    status, body = wait_for_http(server.url(app, path), timeout=15)
    assert status == 200, body
    return json.loads(body)


def storage(server, app):
    return json.loads(server.tinyserv("storage", "--json", cwd=app.path).stdout)


def test_an_apps_data_directory_reaches_its_processes_release_phase_and_run_but_not_its_build(server, tmp_path):
    procfile = "web: node server.js\nrelease: echo \"release sees $TINYSERV_DATA_DIR\" > \"$TINYSERV_DATA_DIR/r\"\n"
    app = server.new_app(tmp_path, data_app(procfile=procfile, build_script="echo \"build sees [$TINYSERV_DATA_DIR]\""),
                         prefix="data")
    pushed = server.push(app)
    path = storage(server, app)["path"]
    assert path == os.path.join(server.root, "apps", app.name, "data")
    assert "build sees []" in pushed.stderr
    assert get(server, app)["dir"] == path
    with open(os.path.join(path, "r")) as f:
        assert f.read() == "release sees %s\n" % path
    assert server.tinyserv("run", "echo $TINYSERV_DATA_DIR", cwd=app.path).stdout.strip() == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_the_data_directory_survives_a_redeploy_a_rollback_and_a_restart_of_everything(server, tmp_path):
    app = server.new_app(tmp_path, data_app("one"), prefix="data")
    server.push(app)
    for _ in range(3):
        get(server, app, "/visit")
    server.commit(app, data_app("two"))
    server.push(app)
    assert get(server, app) == dict(get(server, app), version="two", visits=3)
    server.tinyserv("rollback", cwd=app.path)
    assert get(server, app) == dict(get(server, app), version="one", visits=3)
    server.remote("shutdown")
    assert http_get(server.url(app)) is None
    server.remote("startup")
    assert get(server, app, "/visit")["visits"] == 4
    shown = storage(server, app)
    assert (shown["bytes"], shown["files"]) == (1, 1)
    text = server.tinyserv("storage", cwd=app.path).stdout
    assert "Size:        1 B (1 file)" in text and shown["path"] in text


def test_apps_destroy_deletes_the_data_directory_and_says_so(server, tmp_path):
    app = server.new_app(tmp_path, data_app(), prefix="data")
    server.push(app)
    get(server, app, "/visit")
    data = storage(server, app)["path"]
    out = server.tinyserv("apps:destroy", "--confirm", app.name, cwd=app.path).stdout
    assert "Destroying ⬢ %s... done: its data directory (1 B) deleted" % app.name in out
    assert not os.path.exists(data)


BAD_CRON = """{
  "name": "data-app",
  "cron": [
    {"command": "echo ok", "schedule": "@hourly"},
    {"command": "echo bad", "schedule": "61 * * * *"}
  ]
}
"""


def test_a_push_with_a_bad_cron_line_is_rejected_with_its_line_in_app_json_and_nothing_changes(server, tmp_path):
    app = server.new_app(tmp_path, data_app(), prefix="cron")
    server.push(app)
    before = server.releases(app)
    server.commit(app, data_app(app_json=BAD_CRON))
    result = server.push(app, check=False)
    assert result.returncode != 0
    assert "app.json line 5: cron job 2: bad minute '61': 61 is not from 0 to 59" in result.stderr
    assert server.releases(app) == before
    assert get(server, app)["version"] == "one"


def test_cron_lists_the_jobs_of_the_current_release_and_a_rollback_brings_back_its_own(server, tmp_path):
    jobs = [{"command": "echo nightly", "schedule": "30 2 * * *"}, {"command": "node report.js", "schedule": "@weekly"}]
    app = server.new_app(tmp_path, data_app(), prefix="cron")
    server.push(app)
    assert json.loads(server.tinyserv("cron", "--json", cwd=app.path).stdout)["jobs"] == []
    server.commit(app, data_app("two", app_json=json.dumps({"cron": jobs})))
    pushed = server.push(app)
    assert "app.json declares cron jobs -> scheduler.1 (30 2 * * *), scheduler.2 (@weekly)" in pushed.stderr

    def listed():
        return json.loads(server.tinyserv("cron", "--json", cwd=app.path).stdout)["jobs"]
    assert [(j["name"], j["schedule"], j["command"]) for j in listed()] == [
        ("scheduler.1", "30 2 * * *", "echo nightly"), ("scheduler.2", "@weekly", "node report.js")]
    wait_until(lambda: all(j["next_at"] for j in listed()), 10, message="the supervisor to schedule the jobs")
    assert all(j["next_at"] % 60 == 0 for j in listed())
    table = server.tinyserv("cron", cwd=app.path).stdout
    assert "scheduler.2  @weekly" in table and "NEXT RUN" in table
    server.tinyserv("rollback", cwd=app.path)
    assert listed() == []


def test_addons_create_refuses_in_one_line_what_is_missing_and_changes_nothing(server, tmp_path):
    app = server.new_app(tmp_path, data_app(), prefix="addon")
    server.push(app)
    before = server.releases(app), server.config(app)
    for kind, env, message in [
        ("postgresql", {}, "PostgreSQL is not configured on the server: set TINYSERV_POSTGRES_URL"),
        ("postgresql", {"TINYSERV_POSTGRES_URL": "mysql://x@h/d"}, "TINYSERV_POSTGRES_URL is not a URL like"),
        ("redis", {"TINYSERV_REDIS_SERVER": "/nonexistent/redis-server"}, "TINYSERV_REDIS_SERVER is "
         "/nonexistent/redis-server, which is not a redis-server tinyserv can run"),
        ("mysql", {}, "unknown add-on kind 'mysql': tinyserv has postgresql and redis"),
    ]:
        saved = dict(server.env)
        server.env.pop("TINYSERV_POSTGRES_URL", None)
        server.env.update(env)
        try:
            result = server.tinyserv("addons:create", kind, cwd=app.path, check=False)
        finally:
            server.env.clear()
            server.env.update(saved)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("tinyserv: "), result.stderr
        assert message in lines[0]
    assert (server.releases(app), server.config(app)) == before
    assert json.loads(server.tinyserv("addons", "--json", cwd=app.path).stdout) == []
    assert redis_services(server) == [], "no redis-server declared"


def test_a_whole_server_restored_elsewhere_serves_the_same_release_config_and_data(server, tmp_path):
    jobs = json.dumps({"cron": [{"command": "echo tick", "schedule": "@hourly"}]})
    app = server.new_app(tmp_path, data_app("one", app_json=jobs), prefix="keep")
    server.push(app)
    server.tinyserv("config:set", "GREETING=hello there", cwd=app.path)
    for _ in range(2):
        get(server, app, "/visit")
    other = server.new_app(tmp_path, data_app("other"), prefix="keep")
    server.push(other)
    archive = str(tmp_path / "server.tar.gz")
    out = server.tinyserv("backups:capture", archive, cwd=app.path)
    assert "it holds every app's config vars and add-on passwords" in out.stdout
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    release = server.releases(app)[0]

    with local_server(tmp_path / "second" / "root") as second:
        restored = second.remote("restore", archive)
        assert "restored 2 apps" in restored.stderr
        moved = type(app)(app.name, app.path)
        port = json.loads(second.tinyserv("apps:info", "-a", app.name, "--json").stdout)["port"]
        assert port != server.port(app)  # the first server still holds it: the app got a free one
        answer = json.loads(wait_for_http("http://127.0.0.1:%d/" % port, timeout=30)[1])
        assert answer == {"dir": os.path.join(second.root, "apps", app.name, "data"), "visits": 2,
                          "version": "one", "greeting": "hello there"}
        assert second.releases(moved)[0] == release
        assert second.config(moved) == server.config(app)
        assert json.loads(second.tinyserv("cron", "-a", app.name, "--json").stdout)["jobs"][0]["command"] == "echo tick"
        build = release["build"]
        link = os.readlink(os.path.join(second.root, "apps", app.name, "builds", build, "node_modules"))
        assert link.startswith(second.root + os.sep)

        # A push to the restored app deploys there: its repository and hook moved with it.
        server.commit(app, data_app("three", app_json=jobs))
        second.git("push", os.path.join(second.root, "repos", app.name + ".git"), "main", cwd=app.path)
        second.wait_settled(moved)
        assert json.loads(wait_for_http("http://127.0.0.1:%d/" % port, contains="three", timeout=30)[1])["visits"] == 2

        # Restoring over existing apps, or from a damaged archive, changes nothing.
        before = second.snapshot()
        refused = second.remote("restore", archive, check=False)
        assert refused.returncode == 1 and "already exists on this server" in refused.stderr
        cut = str(tmp_path / "cut.tar.gz")
        with open(archive, "rb") as f, open(cut, "wb") as g:
            g.write(f.read()[: os.path.getsize(archive) // 2])
        broken = second.remote("restore", cut, check=False)
        assert broken.returncode == 1 and "is not a whole tinyserv backup" in broken.stderr
        assert len(broken.stderr.strip().splitlines()) == 1, broken.stderr
        assert second.snapshot() == before

    # Where the port is free, the app keeps it, whatever the new server's TINYSERV_START_PORT.
    port = server.port(app)
    server.remote("shutdown")
    with local_server(tmp_path / "third" / "root") as third:
        third.remote("restore", archive)
        assert json.loads(third.tinyserv("apps:info", "-a", app.name, "--json").stdout)["port"] == port
        assert json.loads(wait_for_http("http://127.0.0.1:%d/" % port, timeout=30)[1])["visits"] == 2


FAILING_REDIS = """#!/bin/sh
# Says it is Redis 7, and dies at once when started: a redis-server that cannot start (a bad disk, say).
if [ "$1" = "--version" ]; then echo "Redis server v=7.0.15 sha=00000000:0"; exit 0; fi
echo "FATAL: cannot open the data directory" >&2
exit 1
"""


def test_a_redis_add_on_whose_server_does_not_start_leaves_nothing_behind(server, tmp_path):
    app = server.new_app(tmp_path, data_app(), prefix="addon")
    server.push(app)
    program = tmp_path / "redis-server"
    program.write_text(FAILING_REDIS)
    program.chmod(0o755)
    before = server.releases(app), server.config(app)
    server.env["TINYSERV_REDIS_SERVER"] = str(program)
    try:
        result = server.tinyserv("addons:create", "redis", cwd=app.path, check=False)
    finally:
        del server.env["TINYSERV_REDIS_SERVER"]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "did not answer on port" in lines[0] and "FATAL: cannot open the data directory" in lines[0]
    assert (server.releases(app), server.config(app)) == before
    assert json.loads(server.tinyserv("addons", "--json", cwd=app.path).stdout) == []
    assert redis_services(server) == [], "no redis-server declared"
    assert [n for n in os.listdir(os.path.join(server.root, "apps", app.name)) if n.startswith("addons")] == [
        "addons.lock"]  # the lock file stays, like the app's other locks
    assert wait_until(lambda: not [p for p in server.survivors() if str(program) in open(
        "/proc/%d/cmdline" % p, "rb").read().decode(errors="replace")], 10, message="no redis-server left")


def redis_services(server):
    """The platform services declared for Redis add-ons (the front door's nginx is one too, when installed)."""
    try:
        names = os.listdir(os.path.join(server.root, "services"))
    except FileNotFoundError:
        return []
    return [n for n in names if n.endswith(".json") and n != "nginx.json"]
