"""addons.py with fake providers, and the pure parts of postgres.py and redis.py (no database, no redis-server)."""

import io
import os
import subprocess
import threading
import time

import pytest

from tinyserv.addons import registry as addons, postgres, redis
from tinyserv.state import addonstate, releases
from tinyserv.common import names, processes
from tinyserv.platform import control, services
from tinyserv.state import store
from tinyserv.common.errors import TinyservError

APP = "shop"


class FakeProvider:
    """A provider that records what it is asked; fail names the step that raises ('check', 'provision')."""

    def __init__(self, kind="postgresql", var="DATABASE_URL", fail=None, url=None):
        self.kind, self.var, self.fail, self.url = kind, var, fail, url
        self.live = {}  # name -> addon: what exists "on the database server"
        self.deprovisioned = []

    def check_available(self):
        if self.fail == "check":
            raise TinyservError("PostgreSQL is not configured on the server: set TINYSERV_POSTGRES_URL")

    def names(self, app, suffix):
        return "%s_%s" % (app, suffix)

    def provision(self, layout, app, addon, password=None):
        if self.fail == "provision":
            raise TinyservError("creating database: could not connect to server")
        self.live[addon["name"]] = addon
        return self.url or "postgres://%s:pw@localhost:5432/%s" % (addon["database"], addon["database"])

    def deprovision(self, layout, app, addon):
        self.live.pop(addon["name"], None)
        self.deprovisioned.append(addon["name"])


@pytest.fixture
def app(layout):
    for sub in ("builds", "log", "run"):
        os.makedirs(layout.app_file(APP, sub))
    releases.add(layout, APP, "Initial release", {"GREETING": "hi"}, by="test", app_port=5000)
    return APP


def state(layout):
    """What a failed command must leave as it was: the releases and the add-on list."""
    return releases.history(layout, APP), addonstate.load(layout, APP)


@pytest.mark.parametrize("text, kind", [
    ("postgresql", "postgresql"), ("postgres", "postgresql"), ("heroku-postgresql", "postgresql"),
    ("heroku-postgresql:essential-0", "postgresql"), ("Redis", "redis"), ("heroku-redis:mini", "redis"),
])
def test_add_on_kinds_are_known_by_heroku_names_too(text, kind):
    assert names.addon_kind(text) == kind


@pytest.mark.parametrize("text", ["mysql", "", "redis-server", None, ":redis"])
def test_an_unknown_add_on_kind_is_refused_in_one_line(text):
    with pytest.raises(TinyservError, match="unknown add-on kind .*tinyserv has postgresql and redis"):
        names.addon_kind(text)


def test_creating_an_add_on_sets_its_url_in_a_new_release_and_records_it(layout, app):
    fake = FakeProvider()
    shown = addons.create(layout, APP, "postgresql", by="me", registry={"postgresql": fake})
    assert shown["var"] == "DATABASE_URL" and shown["state"] == "created" and "url" not in shown
    release = releases.current(layout, APP)
    assert release["version"] == 2 and release["description"] == "Attach %s as DATABASE_URL" % shown["name"]
    assert release["config"] == {"GREETING": "hi", "DATABASE_URL": fake.live[shown["name"]]["url"]}
    assert [a["name"] for a in addonstate.load(layout, APP)] == [shown["name"]] and shown["name"] in fake.live
    assert os.stat(addonstate.addons_file(layout, APP)).st_mode & 0o777 == 0o600
    assert addons.info(layout, APP, shown["name"]) == shown and addons.listing(layout, APP) == [shown]


def test_a_second_database_gets_a_config_var_named_after_it(layout, app):
    fake = FakeProvider()
    addons.create(layout, APP, "postgresql", registry={"postgresql": fake})
    second = addons.create(layout, APP, "postgresql", registry={"postgresql": fake})
    assert second["var"] == second["name"].upper().replace("-", "_") + "_URL"
    assert set(releases.current_config(layout, APP)) == {"GREETING", "DATABASE_URL", second["var"]}


@pytest.mark.parametrize("fail, url, message", [
    ("check", None, "PostgreSQL is not configured on the server"),
    ("provision", None, "creating database: could not connect to server"),
    (None, "postgres://x:" + "p" * 40000 + "@h/d", "config vars would take"),  # the release cannot be made
], ids=["unavailable", "provisioning fails", "the release fails"])
def test_a_failed_creation_leaves_nothing_behind(layout, app, fail, url, message):
    fake = FakeProvider(fail=fail, url=url)
    before = state(layout)
    with pytest.raises(TinyservError, match=message):
        addons.create(layout, APP, "postgresql", registry={"postgresql": fake})
    assert state(layout) == before and fake.live == {}
    assert len(fake.deprovisioned) == (1 if url else 0)  # undone by the provider itself when provisioning failed


def test_destroying_an_add_on_makes_a_release_without_its_var_and_deletes_it(layout, app):
    fake = FakeProvider()
    name = addons.create(layout, APP, "postgresql", registry={"postgresql": fake})["name"]
    assert addons.destroy(layout, APP, name, registry={"postgresql": fake}) == {"destroyed": name,
                                                                              "var": "DATABASE_URL"}
    release = releases.current(layout, APP)
    assert release["description"] == "Detach %s (DATABASE_URL)" % name and "DATABASE_URL" not in release["config"]
    assert addonstate.load(layout, APP) == [] and fake.live == {}


def test_an_add_on_whose_var_was_changed_by_hand_is_deleted_without_another_release(layout, app):
    fake = FakeProvider()
    name = addons.create(layout, APP, "postgresql", registry={"postgresql": fake})["name"]
    config = dict(releases.current_config(layout, APP), DATABASE_URL="postgres://elsewhere/db")
    releases.add(layout, APP, "Set DATABASE_URL config vars", config, by="test")
    addons.destroy(layout, APP, name, registry={"postgresql": fake})
    assert releases.current(layout, APP)["version"] == 3 and fake.live == {}


def test_an_add_on_that_cannot_be_deleted_now_is_kept_with_the_app(layout, app):
    fake = FakeProvider()
    name = addons.create(layout, APP, "postgresql", registry={"postgresql": fake})["name"]
    fake.fail = "check"
    before = state(layout)
    with pytest.raises(TinyservError, match="not configured"):
        addons.destroy(layout, APP, name, registry={"postgresql": fake})
    with pytest.raises(TinyservError, match="cannot delete shop's add-on %s, so nothing was destroyed" % name):
        addons.check_all(layout, APP, registry={"postgresql": fake})
    assert state(layout) == before and name in fake.live


@pytest.mark.parametrize("name, message", [
    ("redis-00000000", "shop has no add-on named redis-00000000 (it has: none)"),
    ("../etc", "is not an add-on name"),
    ("", "is not an add-on name"),
])
def test_an_unknown_add_on_name_is_refused(layout, app, name, message):
    with pytest.raises(TinyservError, match=message.replace("(", r"\(").replace(")", r"\)")):
        addons.info(layout, APP, name)


# --- postgres.py ----------------------------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("postgres://tinyserv:s3cret@localhost:5433/postgres",
     {"PGUSER": "tinyserv", "PGPASSWORD": "s3cret", "PGHOST": "localhost", "PGPORT": "5433", "PGDATABASE": "postgres"}),
    ("postgresql://admin@db.example.org/",
     {"PGUSER": "admin", "PGHOST": "db.example.org", "PGPORT": "5432", "PGDATABASE": "postgres"}),
    ("postgres://a:p%40ss@[::1]:5432/x", {"PGPASSWORD": "p@ss", "PGHOST": "::1", "PGDATABASE": "x"}),
    ("postgres://a@/postgres?host=/var/run/postgresql", {"PGHOST": "/var/run/postgresql"}),
])
def test_a_postgres_url_becomes_libpqs_environment(url, expected):
    env = postgres.connection(url)
    assert {k: env.get(k) for k in expected} == expected


@pytest.mark.parametrize("url", ["mysql://a:b@h/d", "postgres://localhost/db", "not a url", "postgres://a@h:99999/"])
def test_a_postgres_url_that_is_not_one_is_refused(url):
    with pytest.raises(TinyservError, match="is not a URL like postgres://USER:PASSWORD@HOST:5432/DATABASE"):
        postgres.connection(url)


def test_without_tinyserv_postgres_url_postgresql_add_ons_are_refused_saying_what_to_set():
    with pytest.raises(TinyservError, match="PostgreSQL is not configured on the server: set TINYSERV_POSTGRES_URL"):
        postgres.Provider(environ={}).check_available()


class FakeSQL:
    """psql as a function: records statements; raises on the first statement containing `fail_on`."""

    def __init__(self, fail_on=None, existing="", rights="t|t"):
        self.fail_on, self.existing, self.rights, self.statements = fail_on, existing, rights, []

    def __call__(self, conn, statements, what):
        for statement in statements:
            self.statements.append(statement)
            if self.fail_on and self.fail_on in statement:
                raise TinyservError("%s: ERROR:  something went wrong" % what)
        if "rolcreatedb" in statements[0]:
            return self.rights + "\n"
        return self.existing if "SELECT 1" in statements[0] else ""


ADMIN = {"TINYSERV_POSTGRES_URL": "postgres://tinyserv:pw@127.0.0.1:5432/postgres"}
ADDON = {"name": "postgresql-1a2b3c4d", "database": "shop_1a2b3c4d"}


def test_a_database_add_on_is_a_role_and_a_database_of_its_own(layout):
    fake = FakeSQL()
    url = postgres.Provider(ADMIN, fake).provision(layout, APP, ADDON, password="abcdef0123456789")
    assert url == "postgres://shop_1a2b3c4d:abcdef0123456789@127.0.0.1:5432/shop_1a2b3c4d"
    assert [s for s in fake.statements if s.startswith(("CREATE", "GRANT", "REVOKE"))] == [
        "CREATE ROLE shop_1a2b3c4d LOGIN PASSWORD 'abcdef0123456789'", "GRANT shop_1a2b3c4d TO CURRENT_USER",
        "CREATE DATABASE shop_1a2b3c4d OWNER shop_1a2b3c4d", "REVOKE ALL ON DATABASE shop_1a2b3c4d FROM PUBLIC"]


@pytest.mark.parametrize("fail_on, drops", [
    ("CREATE ROLE", True),
    ("CREATE DATABASE", True),
    ("REVOKE", True),
    ("rolcreatedb", False),  # PostgreSQL does not answer: nothing was made
])
def test_a_database_add_on_that_fails_half_way_drops_what_was_made(layout, fail_on, drops):
    fake = FakeSQL(fail_on=fail_on)
    with pytest.raises(TinyservError, match="something went wrong"):
        postgres.Provider(ADMIN, fake).provision(layout, APP, ADDON)
    dropped = [s for s in fake.statements if s.startswith("DROP")]
    assert dropped == (["DROP DATABASE IF EXISTS shop_1a2b3c4d WITH (FORCE)", "DROP ROLE IF EXISTS shop_1a2b3c4d"]
                       if drops else [])


def test_a_database_whose_name_is_taken_is_refused_and_left_alone(layout):
    fake = FakeSQL(existing="1\n")
    with pytest.raises(TinyservError, match="already has a role or database named shop_1a2b3c4d"):
        postgres.Provider(ADMIN, fake).provision(layout, APP, ADDON)
    assert not [s for s in fake.statements if s.startswith(("CREATE", "DROP"))]


def test_a_role_that_may_not_create_databases_is_named_with_the_fix(layout):
    with pytest.raises(TinyservError, match="may not create databases and roles: run ALTER ROLE tinyserv CREATEDB"):
        postgres.Provider(ADMIN, FakeSQL(rights="t|f")).check_available()


@pytest.mark.parametrize("name", ["shop; DROP TABLE x", "Shop", "a-b", "", None, "x" * 64])
def test_only_names_tinyserv_makes_go_into_sql(name):
    with pytest.raises(TinyservError):
        postgres.ident(name)


# --- redis.py -----------------------------------------------------------------------------------------


def test_without_redis_server_redis_add_ons_are_refused_saying_what_to_install():
    def missing():
        raise TinyservError("redis-server is not installed on the server (on Debian: apt install redis-server)")
    with pytest.raises(TinyservError, match="apt install redis-server"):
        redis.Provider(find=missing).check_available()


def test_a_redis_add_on_listens_on_loopback_with_a_password_and_an_append_only_file():
    conf = redis.conf_text("shop", "redis-1a2b", 6381, "pw123", "/srv/data").splitlines()
    for line in ("bind 127.0.0.1", "port 6381", "requirepass pw123", "dir /srv/data", "appendonly yes",
                 "appendfsync everysec", "daemonize no", "protected-mode yes"):
        assert line in conf
    assert redis.url(6381, "pw123") == "redis://default:pw123@127.0.0.1:6381"
    assert redis.password_of({"url": redis.url(6381, "pw123")}) == "pw123"


def test_a_swarm_apps_redis_also_listens_on_the_engines_bridge_gateway_if_it_is_there():
    conf = redis.conf_text("shop", "redis-1a2b", 6381, "pw", "/d", also=["172.17.0.1"]).splitlines()
    assert "bind 127.0.0.1 -172.17.0.1" in conf and "requirepass pw" in conf


def test_redis_commands_are_resp_arrays():
    assert redis.encode("AUTH", "pw") == b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
    assert redis.encode("SET", "k", "é") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize("data, expected", [
    (b"+PONG\r\n", "PONG"),
    (b":42\r\n", 42),
    (b"$5\r\nhello\r\n", "hello"),
    (b"$-1\r\n", None),
    (b"*2\r\n$1\r\na\r\n:1\r\n", ["a", 1]),
])
def test_redis_replies_are_read(data, expected):
    assert redis.read_reply(io.BytesIO(data)) == expected


@pytest.mark.parametrize("data, error", [
    (b"-ERR wrong password\r\n", redis.ReplyError),
    (b"+PON", OSError),
    (b"?x\r\n", OSError),
])
def test_bad_redis_replies_raise(data, error):
    with pytest.raises(error):
        redis.read_reply(io.BytesIO(data))


def test_a_snapshot_seeds_a_new_servers_append_only_file(layout):
    rdb = os.path.join(layout.root, "snap.rdb")
    with open(rdb, "wb") as f:
        f.write(b"REDIS0010...")
    redis.Provider().seed(layout, APP, "redis-1a2b", rdb)
    aof = os.path.join(redis.data_dir(layout, APP, "redis-1a2b"), "appendonlydir")
    assert sorted(os.listdir(aof)) == ["appendonly.aof.1.base.rdb", "appendonly.aof.manifest"]
    with open(os.path.join(aof, "appendonly.aof.manifest")) as f:
        assert f.read() == "file appendonly.aof.1.base.rdb seq 1 type b\n"


@pytest.mark.parametrize("app, name", [
    ("shop", "shop_1a2b3c4d"),
    ("my-shop", "my_shop_1a2b3c4d"),
    ("pg-shop", "app_pg_shop_1a2b3c4d"),  # PostgreSQL reserves roles named pg_...
])
def test_an_add_ons_database_and_role_are_named_after_the_app_never_with_postgresqls_reserved_prefix(app, name):
    assert postgres.Provider(environ={}).names(app, "1a2b3c4d") == name


def test_destroying_a_redis_add_on_waits_for_its_server_even_when_the_supervisor_is_slow_to_answer(
        layout, app, monkeypatch):
    # The supervisor's ping times out (it is busy): it must still be told, and its redis-server gone
    # before the data is deleted. A sleep in a session of its own stands for redis-server.
    server = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        addon = {"name": "redis-shop-1", "kind": "redis", "port": 6390}
        os.makedirs(redis.data_dir(layout, APP, addon["name"]))
        store.write_json(services.state_file(layout), {"services": {addon["name"]: {
            "pid": server.pid, "starttime": processes.starttime(server.pid), "spec": {}}}})
        asked, reaped = [], []

        def reap_later():  # the supervisor's next tick: it reaps the zombie, then no longer lists the service
            time.sleep(0.3)
            server.wait()
            reaped.append(True)
            store.write_json(services.state_file(layout), {"services": {}})

        def sync(layout, app=None):  # the supervisor's side: it stops the withdrawn service
            asked.append(os.path.exists(services.spec_file(layout, addon["name"])))
            server.terminate()
            threading.Thread(target=reap_later).start()

        monkeypatch.setattr(control, "running", lambda layout: None)
        monkeypatch.setattr(control, "sync", sync)
        redis.Provider().deprovision(layout, APP, addon)
        assert asked == [False], "the supervisor was not told of the withdrawal"
        assert reaped, "returned while the stopped server was a zombie the supervisor had not reaped (pgrep sees it)"
        assert not os.path.exists(redis.addon_dir(layout, APP, addon["name"]))
    finally:
        server.kill()
        server.wait()
