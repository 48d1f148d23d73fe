"""Apps that keep data (issue 10), over real ssh with the distribution's PostgreSQL and Redis in the server image.

The tests play the admin the way the README says: start PostgreSQL (`pg_ctlcluster 15 main start`, as root) and
give tinyserv a role that may create databases and roles, named in TINYSERV_POSTGRES_URL in deploy's
$TINYSERV_ROOT/settings.env (mode 0600). The app (a Python web process and a writer worker, no dependencies) keeps
a file in TINYSERV_DATA_DIR, rows in its PostgreSQL database and a value in its Redis, and a cron job appends to its
data directory each minute.
One app is shared by the module; the restore runs on a second, fresh container.
"""

import json
import os
import shlex
import time
import urllib.parse

import pytest

from helpers import PUSH_TIMEOUT, Server, ssh_options
from support import describe, http_get, make_app, run, wait_until

APP = "data-keeper"
ADMIN_PASSWORD = "e2eAdminPassword42"
ADMIN_URL = f"postgres://tinyserv:{ADMIN_PASSWORD}@127.0.0.1:5432/postgres"
RESTORED_ROOT = "/home/deploy/restored"

WEB = r'''import http.server, json, os, socket, subprocess, urllib.parse

DATA = os.environ["TINYSERV_DATA_DIR"]
VERSION = %s


def sql(*queries):
    args = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]
    for query in queries:
        args += ["-c", query]
    done = subprocess.run(args + [os.environ["DATABASE_URL"]], capture_output=True, text=True, timeout=20)
    if done.returncode:
        raise RuntimeError(done.stderr.strip())
    return done.stdout.strip()


def redis(*words):
    url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
    wire = b""
    for command in (("AUTH", url.password), words):
        wire += b"*%%d\r\n" %% len(command)
        for w in command:
            wire += b"$%%d\r\n%%s\r\n" %% (len(w.encode()), w.encode())
    with socket.create_connection((url.hostname, url.port), timeout=5) as s:
        s.sendall(wire)
        f = s.makefile("rb")
        for _ in range(2):
            line = f.readline()
            if line.startswith(b"-"):
                raise RuntimeError(line.decode().strip())
            reply = line[1:].strip().decode()
            if line.startswith(b"$"):
                reply = None if int(reply) < 0 else f.read(int(reply) + 2)[:-2].decode()
        return reply


def lines(name):
    path = os.path.join(DATA, name)
    return open(path).read().split() if os.path.exists(path) else []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            sql("CREATE TABLE IF NOT EXISTS notes (id serial, value text)",
                "CREATE TABLE IF NOT EXISTS pairs (batch bigint, side text)")
            if url.path == "/write":
                value = query["value"]
                assert value.isalnum()
                with open(os.path.join(DATA, "notes.txt"), "a") as f:
                    f.write(value + "\n")
                sql("INSERT INTO notes (value) VALUES ('%%s')" %% value)
                redis("APPEND", "notes", value + ",")
            body = {"version": VERSION, "file": lines("notes.txt"), "ticks": len(lines("ticks")),
                    "db": sql("SELECT coalesce(string_agg(value, ',' ORDER BY id), '') FROM notes"),
                    "redis": redis("GET", "notes"),
                    "pairs": int(sql("SELECT count(*) FROM pairs")),
                    "unpaired": int(sql("SELECT count(*) FROM (SELECT batch FROM pairs GROUP BY batch "
                                        "HAVING count(*) <> 2) AS odd"))}
            status = 200
        except Exception as e:
            body, status = {"error": str(e)}, 500
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
'''

# Each batch is two rows in one transaction, written 20 ms apart: a backup that is a consistent snapshot
# restores only whole batches.
WRITER = r'''import os, subprocess, time
batch = int(time.time() * 1000)
while True:
    batch += 1
    subprocess.run(["psql", "-X", "-q", "-1", "-c", "INSERT INTO pairs VALUES (%d, 'a')" % batch,
                    "-c", "SELECT pg_sleep(0.02)", "-c", "INSERT INTO pairs VALUES (%d, 'b')" % batch,
                    os.environ["DATABASE_URL"]], stdout=subprocess.DEVNULL)
    time.sleep(0.05)
'''

APP_JSON = json.dumps({"cron": [{"command": "date -u +%H:%M:%S >> \"$TINYSERV_DATA_DIR/ticks\"; echo tick",
                                 "schedule": "* * * * *"}]}, indent=2) + "\n"


def app_files(version):
    return {"Procfile": "web: python3 web.py\nwriter: python3 writer.py\n", "web.py": WEB % json.dumps(version),
            "writer.py": WRITER, "app.json": APP_JSON}


def as_root(server, command):
    """Run a shell command as root in the server container (the admin's part); its output."""
    result = server.root_host.run(command)
    assert result.rc == 0, f"{command}\nexit {result.rc}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def set_up_postgresql(server, root=None):
    """What the README asks of the admin: PostgreSQL running (at boot too), a role for tinyserv, its URL."""
    as_root(server, "pg_ctlcluster 15 main start || pg_ctlcluster 15 main status")
    as_root(server, "mkdir -p /etc/tinyserv-e2e && touch /etc/tinyserv-e2e/start-postgresql")
    admin_sql(server, "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tinyserv') THEN "
                      f"CREATE ROLE tinyserv LOGIN PASSWORD '{ADMIN_PASSWORD}' CREATEDB CREATEROLE; END IF; END $$")
    bashrc = "/home/deploy/.bashrc"
    if root:  # another TINYSERV_ROOT and START_PORT than the first server's
        as_root(server, f"sed -i 's|^export TINYSERV_ROOT=.*|export TINYSERV_ROOT={root}|; "
                        f"s|^export TINYSERV_START_PORT=.*|export TINYSERV_START_PORT=5010|' {bashrc}")
    # The admin URL goes where only deploy (and root) may read it, not into ~/.bashrc (0644).
    settings = f"{root or server.tinyserv_root}/settings.env"
    as_root(server, "su deploy -c " + shlex.quote(
        f"umask 077 && mkdir -p {os.path.dirname(settings)} && echo TINYSERV_POSTGRES_URL={ADMIN_URL} > {settings}"))


def admin_sql(server, query):
    """Run SQL as PostgreSQL's superuser in the server container; its output."""
    return as_root(server, "runuser -u postgres -- psql -XAtc " + shlex.quote(query)).strip()


class Keeper:
    """The module's app: its repository, the client in it, and what it answers."""

    def __init__(self, server, repo):
        self.server, self.repo, self.name = server, str(repo), APP

    def tinyserv(self, *args, check=True, timeout=PUSH_TIMEOUT):
        __tracebackhide__ = True
        return run(["tinyserv", *args], cwd=self.repo, env=self.server.env, check=check, timeout=timeout)

    def push(self):
        return run(["git", "push", "tinyserv", "main"], cwd=self.repo, env=self.server.env, timeout=PUSH_TIMEOUT)

    def commit(self, files, message):
        for name, text in files.items():
            with open(os.path.join(self.repo, name), "w") as f:
                f.write(text)
        run(["git", "add", "-A"], cwd=self.repo)
        run(["git", "commit", "-q", "-m", message], cwd=self.repo)

    def json(self, *args):
        return json.loads(self.tinyserv(*args, "--json").stdout)

    def url(self, path="/"):
        return self.server.url(self.json("apps:info")["port"], path)

    def read(self, path="/", timeout=60):
        """The app's answer once it gives one with status 200 (the app may be booting, or PostgreSQL)."""
        url = self.url(path)
        answer = wait_until(lambda: (r := http_get(url, timeout=10)) and r[0] == 200 and r, timeout, interval=0.5,
                            message=f"{url} to answer 200 (last: {http_get(url, timeout=10)})")
        return json.loads(answer[1])

    def write(self, value):
        """Write value to all three stores once the app answers (one request: a write is not retried)."""
        self.read()
        answer = http_get(self.url("/write?value=" + value), timeout=30)
        assert answer and answer[0] == 200, answer
        return json.loads(answer[1])

    def follow_server(self, check=True):
        """Point the git remote at the server's ssh port again (it changes when the container restarts)."""
        url = f"ssh://deploy@127.0.0.1:{self.server.port(22)}/home/deploy/tinyserv/repos/{self.name}.git"
        run(["git", "remote", "set-url", "tinyserv", url], cwd=self.repo, check=check)


@pytest.fixture(scope="module")
def keeper(server, tmp_path_factory):
    """The app, with a PostgreSQL and a Redis add-on, deployed, and one note written; destroyed at the end."""
    set_up_postgresql(server)
    repo = make_app(tmp_path_factory.mktemp("data") / APP, app_files("one"))
    app = Keeper(server, repo)
    app.tinyserv("apps:create", APP)
    try:
        app.tinyserv("addons:create", "postgresql")
        app.tinyserv("addons:create", "redis")
        app.push()
        app.tinyserv("ps:scale", "writer=0")
        assert app.write("one")["file"] == ["one"]
        yield app
    finally:
        app.follow_server(check=False)  # the last test destroys the app, and its remote with it
        app.tinyserv("apps:destroy", "--confirm", APP, check=False)


def notes(answer):
    return {k: answer[k] for k in ("file", "db", "redis")}


ONE = {"file": ["one"], "db": "one", "redis": "one,"}


def test_add_ons_are_releases_with_their_urls_and_the_app_reads_all_three_stores(keeper):
    listed = keeper.json("addons")
    assert sorted((a["kind"], a["var"], a["state"]) for a in listed) == [
        ("postgresql", "DATABASE_URL", "created"), ("redis", "REDIS_URL", "created")]
    descriptions = [r["description"] for r in keeper.json("releases")]
    assert any(d.startswith("Attach postgresql-") and d.endswith("as DATABASE_URL") for d in descriptions)
    config = keeper.json("config")
    assert urllib.parse.urlsplit(config["REDIS_URL"]).hostname == "127.0.0.1"
    assert config["DATABASE_URL"].startswith("postgres://data_keeper_")
    assert notes(keeper.read()) == ONE
    text = keeper.tinyserv("pg:psql", "-c", "SELECT value FROM notes").stdout
    assert "one" in text


def test_files_database_and_redis_survive_a_redeploy_a_rollback_and_a_reboot(keeper, server):
    keeper.commit(app_files("two"), "two")
    keeper.push()
    seen = keeper.read()  # once: a counter in it may move between two reads
    assert seen == dict(seen, version="two", **ONE)
    keeper.tinyserv("rollback")
    seen = keeper.read()  # once: a counter in it may move between two reads
    assert seen == dict(seen, version="one", **ONE)

    server.restart()  # SIGKILL for whatever ignores docker's SIGTERM: redis-server loses at most its last second
    keeper.follow_server()
    after = keeper.read(timeout=120)
    assert notes(after) == ONE and after["version"] == "one", after
    assert notes(keeper.write("two")) == {"file": ["one", "two"], "db": "one,two", "redis": "one,two,"}


def test_a_cron_job_every_minute_runs_as_scheduler_1_with_its_output_in_the_log(keeper):
    before = keeper.read()["ticks"]
    wait_until(lambda: keeper.read()["ticks"] > before, 90, interval=1, message="the cron job's next run")
    jobs = keeper.json("cron")["jobs"]
    assert [(j["name"], j["schedule"]) for j in jobs] == [("scheduler.1", "* * * * *")]
    assert jobs[0]["runs"] >= 1 and wait_until(lambda: keeper.json("cron")["jobs"][0]["last_exit"] == 0, 30,
                                                message="the run to end with exit 0")
    log = keeper.tinyserv("logs", "--ps", "scheduler", "-n", "20").stdout
    assert "scheduler.1: tick" in log, log
    ticks = keeper.tinyserv("run", "cat $TINYSERV_DATA_DIR/ticks").stdout.split()
    assert ticks and all(t[-2:] in ("00", "01", "02") for t in ticks), ticks  # on the minute, no drift


def test_a_database_backup_can_be_captured_downloaded_and_restored(keeper, tmp_path):
    captured = keeper.json("pg:backups:capture")
    assert captured["id"] == "b001" and captured["bytes"] > 0
    saved = keeper.read()["db"]
    assert keeper.write("later")["db"] == saved + ",later"
    assert keeper.json("pg:backups")["backups"][0]["id"] == "b001"
    target = tmp_path / "b001.dump"
    keeper.tinyserv("pg:backups:download", "b001", "-o", str(target))
    assert target.read_bytes()[:5] == b"PGDMP" and (target.stat().st_mode & 0o777) == 0o600
    keeper.tinyserv("pg:backups:restore", "b001", "--confirm", APP)
    assert keeper.read()["db"] == saved
    refused = keeper.tinyserv("pg:backups:restore", "b999", "--confirm", APP, check=False)
    assert refused.returncode == 1 and "has no backup b999" in refused.stderr


@pytest.fixture
def second_server(server, docker_client, docker_services, tmp_path):
    """A fresh container from the same image, as a second server (removed afterwards)."""
    image = os.environ["TINYSERV_E2E_IMAGE"]
    ports = {"22/tcp": ("127.0.0.1", None)}
    ports.update({f"{p}/tcp": ("127.0.0.1", None) for p in range(5000, 5030)})
    container = docker_client.containers.run(image, detach=True, ports=ports, tmpfs={
        "/run": "rw,nosuid,nodev,mode=755", "/tmp": "rw,exec,nosuid,nodev,mode=1777"},
        labels={"tinyserv-e2e": "second-server"})
    try:
        second = Server(container, server.key, server._ssh_dir, docker_services)
        second.wait_for_ssh()
        yield second
    finally:
        container.remove(force=True)


def upload(server, local, remote):
    """scp a file to the server as deploy."""
    run(["scp", *ssh_options(server.key), "-P", str(server.port(22)), str(local), f"deploy@127.0.0.1:{remote}"])


def test_a_server_backed_up_while_its_database_is_written_comes_back_whole_on_a_fresh_server(keeper, second_server,
                                                                                          tmp_path):
    keeper.tinyserv("ps:scale", "writer=1")
    try:
        wait_until(lambda: keeper.read()["pairs"] >= 20, 60, message="the writer to write some batches")
    except AssertionError as e:
        raise AssertionError("%s; the app's log:\n%s" % (e, keeper.tinyserv("logs", "-n", "40").stdout)) from None
    archive = tmp_path / "server.tar.gz"
    started = time.monotonic()
    out = keeper.tinyserv("backups:capture", str(archive)).stdout  # streamed over ssh to this machine
    took = time.monotonic() - started
    keeper.tinyserv("ps:scale", "writer=0")
    assert "0600" in out and (archive.stat().st_mode & 0o777) == 0o600
    original = keeper.read()

    set_up_postgresql(second_server, root=RESTORED_ROOT)
    upload(second_server, archive, "/tmp/server.tar.gz")
    restored = second_server.ssh("tinyserv-remote restore /tmp/server.tar.gz", timeout=300)
    assert f"{APP}: v" in restored.stdout and "up" in restored.stdout, describe(restored)
    release = json.loads(second_server.ssh(f"cat {RESTORED_ROOT}/releases/{APP}.json").stdout)
    assert release["version"] == keeper.json("releases")[0]["version"] and release["port"] == keeper.json(
        "apps:info")["port"]
    url = second_server.url(release["port"], "/")
    answer = json.loads(wait_until(lambda: (r := http_get(url, timeout=10)) and r[0] == 200 and r, 90,
                                   interval=0.5, message=f"the restored app at {url}")[1])
    assert notes(answer) == notes(original) and answer["version"] == original["version"]
    assert answer["pairs"] > 0 and answer["unpaired"] == 0, answer  # a consistent snapshot: whole batches only
    config = json.loads(second_server.ssh(f"tinyserv-remote config {APP}").stdout)
    assert config == keeper.json("config")

    live = " ".join(f"-not -path '*/{d}' -not -path '*/{d}/*'" for d in ("run", "log", "data"))
    listing = (f"find {RESTORED_ROOT}/apps {RESTORED_ROOT}/releases {RESTORED_ROOT}/repos {live} | sort | "
               "xargs ls -ld --time-style=+%s | md5sum")
    before = second_server.ssh(listing).stdout
    again = second_server.ssh("tinyserv-remote restore /tmp/server.tar.gz", check=False)
    assert again.returncode == 1 and f"an app named {APP} already exists" in again.stderr, describe(again)
    second_server.ssh("head -c $(( $(stat -c %s /tmp/server.tar.gz) / 2 )) /tmp/server.tar.gz > /tmp/cut.tar.gz")
    cut = second_server.ssh("tinyserv-remote restore /tmp/cut.tar.gz", check=False)
    assert cut.returncode == 1 and "is not a whole tinyserv backup" in cut.stderr, describe(cut)
    assert len(cut.stderr.strip().splitlines()) == 1
    assert second_server.ssh(listing).stdout == before
    print(f"backup of {archive.stat().st_size} bytes captured over ssh in {took:.1f} s")


def test_addons_create_with_postgresql_stopped_leaves_nothing_behind(keeper, server):
    before = keeper.json("addons"), keeper.json("releases"), keeper.json("config")
    roles = admin_sql(server, "SELECT count(*) FROM pg_roles")
    as_root(server, "pg_ctlcluster 15 main stop")
    try:
        failed = keeper.tinyserv("addons:create", "postgresql", check=False)
    finally:
        as_root(server, "pg_ctlcluster 15 main start")
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1 and "PostgreSQL at 127.0.0.1:5432" in lines[0], describe(failed)
    assert (keeper.json("addons"), keeper.json("releases"), keeper.json("config")) == before
    assert admin_sql(server, "SELECT count(*) FROM pg_roles") == roles


@pytest.mark.parametrize("args, message", [
    (["addons:create", "mysql"], "unknown add-on kind 'mysql': tinyserv has postgresql and redis"),
    (["addons:info", "redis-00000000"], f"{APP} has no add-on named redis-00000000"),
    (["addons:destroy", "postgresql-nope", "--confirm", APP], "has no add-on named postgresql-nope"),
    (["pg:backups:restore", "b001", "--confirm", "someone-else"], "confirmation 'someone-else' does not match"),
])
def test_bad_add_on_requests_are_refused_in_one_line(keeper, args, message):
    result = keeper.tinyserv(*args, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and message in lines[0], describe(result)


def test_a_push_with_a_bad_cron_schedule_is_rejected_with_its_line(keeper):
    before = keeper.json("releases")
    bad = APP_JSON.replace("* * * * *", "*/0 * * * *")
    keeper.commit(dict(app_files("bad"), **{"app.json": bad}), "bad cron")
    result = run(["git", "push", "tinyserv", "main"], cwd=keeper.repo, env=keeper.server.env, check=False,
                 timeout=PUSH_TIMEOUT)
    assert result.returncode != 0 and "app.json line 5: cron job 1: bad minute '*/0'" in result.stderr, describe(result)
    assert keeper.json("releases") == before
    run(["git", "reset", "-q", "--hard", "HEAD~1"], cwd=keeper.repo)


def test_destroying_the_redis_add_on_and_then_the_app_deletes_their_data_and_processes(keeper, server):
    redis = next(a for a in keeper.json("addons") if a["kind"] == "redis")
    assert server.ssh(f"pgrep -u deploy -f [r]edis-server >/dev/null && echo running").stdout.strip() == "running"
    destroyed = keeper.tinyserv("addons:destroy", redis["name"], "--confirm", APP)
    assert "REDIS_URL" not in keeper.json("config")
    assert keeper.json("releases")[0]["description"] == f"Detach {redis['name']} (REDIS_URL)"
    left = server.ssh("pgrep -u deploy -f [r]edis-server || true").stdout.strip()
    assert left == "", "%s\n--- on the server:\n%s" % (describe(destroyed), server.ssh(
        "ps -eo pid,ppid,pgid,lstart,args; cat ~/tinyserv/run/services.json; tail -n 30 ~/tinyserv/run/supervisor.log",
        check=False).stdout)
    database = next(a for a in keeper.json("addons") if a["kind"] == "postgresql")["database"]
    out = keeper.tinyserv("apps:destroy", "--confirm", APP).stdout
    assert "add-ons postgresql-" in out and "with their data" in out
    assert admin_sql(server, f"SELECT count(*) FROM pg_database WHERE datname = '{database}'") == "0"
    assert admin_sql(server, f"SELECT count(*) FROM pg_roles WHERE rolname = '{database}'") == "0"
    assert server.ssh(f"test -e ~/tinyserv/apps/{APP} && echo left || true").stdout.strip() == ""
