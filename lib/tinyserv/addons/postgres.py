"""PostgreSQL add-ons: a database and a role of its own per add-on, on the server's own PostgreSQL.

The admin gives tinyserv a role that may create databases and roles, and names it in
TINYSERV_POSTGRES_URL (postgres://tinyserv:PASSWORD@localhost:5432/postgres). tinyserv
talks to PostgreSQL only through its own programs (psql, pg_dump, pg_restore) with
argument lists; passwords travel in their environment (PGPASSWORD), never on a command line.
Backups (pg:backups) are pg_dump's custom format, kept in apps/<app>/pg-backups/<add-on>/.
"""

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.parse

from tinyserv.platform import privileged
from tinyserv.state import addonstate, store
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import APP_NAME

ADMIN_VAR = "TINYSERV_POSTGRES_URL"
IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")  # the names tinyserv makes: no quoting needed, none accepted
BACKUP_ID = re.compile(r"b[0-9]{3,}\Z")
PASSWORD = re.compile(r"[A-Za-z0-9]{8,128}\Z")
TIMEOUT = 60  # seconds an administrative psql command may take
INSTALL = "on Debian: apt install postgresql-client"


def tool(name):
    """The path of a PostgreSQL client program, or one line saying it is missing."""
    path = shutil.which(name) or next((p for p in ("/usr/bin/" + name, "/usr/local/bin/" + name)
                                       if os.access(p, os.X_OK)), None)
    if not path:
        raise TinyservError("%s is not installed on the server (%s)" % (name, INSTALL))
    return path


def admin_url(environ=os.environ):
    """TINYSERV_POSTGRES_URL, or one line saying what the admin has to set up."""
    url = environ.get(ADMIN_VAR)
    if not url:
        raise TinyservError("PostgreSQL is not configured on the server: set %s there to a role that may create "
                            "databases and roles, in $TINYSERV_ROOT/settings.env "
                            "(postgres://tinyserv:PASSWORD@localhost:5432/postgres; see docs/installation.md, "
                            "'Databases and Redis')" % ADMIN_VAR)
    return url


def connection(url, what=ADMIN_VAR):
    """libpq's environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) for a postgres:// URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("postgres", "postgresql") or not parts.username:
        raise TinyservError("%s is not a URL like postgres://USER:PASSWORD@HOST:5432/DATABASE" % what)
    query = urllib.parse.parse_qs(parts.query)
    env = {"PGUSER": urllib.parse.unquote(parts.username),
           "PGDATABASE": urllib.parse.unquote(parts.path.lstrip("/")) or "postgres",
           "PGHOST": query.get("host", [parts.hostname or "localhost"])[0],
           "PGPORT": str(port or 5432), "PGCONNECT_TIMEOUT": "10"}
    if parts.password is not None:
        env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
    return env


def app_url(admin, role, password, database):
    """The DATABASE_URL an add-on's app gets: its own role and database on the admin's server."""
    host = admin["PGHOST"] if not admin["PGHOST"].startswith("/") else "localhost"
    host = "[%s]" % host if ":" in host else host
    return "postgres://%s:%s@%s:%s/%s" % (role, password, host, admin["PGPORT"], database)


def client_env(conn):
    """The environment for a PostgreSQL client program: ours, minus any PG* we did not set, plus conn."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != ADMIN_VAR}
    env.update(conn)
    return env


def run(argv, conn, what, stdin=None, timeout=TIMEOUT):
    """Run a PostgreSQL client program; its stdout, or one line with PostgreSQL's last words."""
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=client_env(conn),
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TinyservError("%s: PostgreSQL did not answer within %d s" % (what, timeout)) from None
    except OSError as e:
        raise TinyservError("%s: cannot run %s: %s" % (what, argv[0], e.strerror)) from None
    if result.returncode != 0:
        raise TinyservError("%s: %s" % (what, last_words(result.stderr, result.returncode)))
    return result.stdout


def last_words(stderr, code):
    """The line of a client program's error output that says what went wrong."""
    lines = [l.strip() for l in (stderr or "").splitlines() if l.strip()]
    errors = [l for l in lines if "ERROR:" in l or "FATAL:" in l or "error:" in l]
    return (errors or lines or ["exit code %d" % code])[-1]


def sql(conn, statements, what):
    """Run SQL statements (one per list item, each committed on its own) through psql; stdout."""
    return run([tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"], conn, what,
               stdin="".join(s.rstrip(";") + ";\n" for s in statements))


def ident(name):
    """A name tinyserv made (database, role), checked again before it goes into SQL."""
    if not isinstance(name, str) or not IDENT.match(name):
        raise TinyservError("%r is not a PostgreSQL name tinyserv makes" % (name,))
    return name


class Provider:
    """What addons.py asks of a PostgreSQL add-on: check, provision, deprovision, dump and restore."""

    kind = "postgresql"
    var = "DATABASE_URL"

    def __init__(self, environ=os.environ, run_sql=None):
        self.environ = environ
        self.sql = run_sql or sql  # sql(connection, statements, what) -> output; tests pass a fake

    def admin(self):
        """libpq's environment for tinyserv's own role (TINYSERV_POSTGRES_URL)."""
        return connection(admin_url(self.environ))

    def check_available(self):
        """PostgreSQL is configured, its client installed, it answers, and our role may do the work."""
        admin = self.admin()
        if self.sql is sql:
            tool("psql")  # missing: say so, not "is PostgreSQL running?"
        where = "%s:%s" % (admin["PGHOST"], admin["PGPORT"])
        try:
            rights = self.sql(admin, ["SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"],
                              "PostgreSQL at %s" % where).split()
        except TinyservError as e:
            raise TinyservError("%s (is PostgreSQL running, and %s right?)" % (e, ADMIN_VAR)) from None
        if rights != ["t|t"]:
            raise TinyservError("the role %s in %s may not create databases and roles: run "
                                "ALTER ROLE %s CREATEDB CREATEROLE as a PostgreSQL superuser" % (
                                    admin["PGUSER"], ADMIN_VAR, admin["PGUSER"]))
        return admin

    def names(self, app, suffix):
        """The database and role of a new add-on: the app's name and the add-on's random suffix.

        PostgreSQL reserves role names starting with pg_: an app named pg-... gets app_pg_... instead.
        """
        name = "%s_%s" % (app.replace("-", "_"), suffix)
        return ident("app_" + name if name.startswith("pg_") else name)

    def provision(self, layout, app, addon, password=None):
        """Create the add-on's role and database; on any failure, drop what was made and raise."""
        admin = self.check_available()
        name = ident(addon["database"])
        password = password or secrets.token_hex(16)
        if not PASSWORD.match(password):
            raise TinyservError("the password of %s is not one tinyserv makes (letters and digits)" % addon["name"])
        ours = False  # from the moment neither name exists, whatever has them is ours to drop
        try:
            exists = self.sql(admin, ["SELECT 1 FROM pg_roles WHERE rolname = '%s'" % name,
                                      "SELECT 1 FROM pg_database WHERE datname = '%s'" % name], "checking the names")
            if exists.strip():
                raise TinyservError("PostgreSQL already has a role or database named %s: nothing was changed" % name)
            ours = True
            self.sql(admin, ["CREATE ROLE %s LOGIN PASSWORD '%s'" % (name, password)], "creating role %s" % name)
            # Creating a database owned by another role needs membership of that role (PostgreSQL 15).
            self.sql(admin, ["GRANT %s TO CURRENT_USER" % name, "CREATE DATABASE %s OWNER %s" % (name, name)],
                     "creating database %s" % name)
            self.sql(admin, ["REVOKE ALL ON DATABASE %s FROM PUBLIC" % name], "closing database %s to others" % name)
        except BaseException:
            if ours:
                with contextlib.suppress(TinyservError):  # the error that got us here is the one to report
                    self.drop(admin, name)
            raise
        return app_url(admin, name, password, name)

    def drop(self, admin, name):
        """Drop the add-on's database (even while the app is connected) and role, as far as they exist."""
        self.sql(admin, ["DROP DATABASE IF EXISTS %s WITH (FORCE)" % ident(name),
                         "DROP ROLE IF EXISTS %s" % ident(name)], "dropping %s" % name)

    def deprovision(self, layout, app, addon):
        """Drop the add-on's database and role, and its backups."""
        self.drop(self.check_available(), addon["database"])
        shutil.rmtree(backups_dir(layout, app, addon["name"]), ignore_errors=True)

    def dump(self, layout, app, addon, path, timeout=3600):
        """pg_dump -Fc of the add-on's database to path: one snapshot, consistent while the app writes."""
        conn = connection(addon["url"], addon["name"])
        try:
            result = subprocess.run([tool("pg_dump"), "-Fc", "--no-owner", "--no-acl", "-f", path],
                                    stderr=subprocess.PIPE, text=True, env=client_env(conn), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TinyservError("pg_dump of %s took longer than %d s" % (addon["name"], timeout)) from None
        except OSError as e:
            raise TinyservError("cannot run pg_dump: %s" % e.strerror) from None
        if result.returncode != 0:
            raise TinyservError("pg_dump of %s failed: %s" % (addon["name"], last_words(result.stderr,
                                                                                       result.returncode)))

    def restore(self, layout, app, addon, path, timeout=3600):
        """pg_restore a custom-format dump into the add-on's database, as its own role, in one transaction."""
        conn = connection(addon["url"], addon["name"])
        run([tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-acl", "--single-transaction",
             "--exit-on-error", "-d", conn["PGDATABASE"], path], conn, "pg_restore into %s" % addon["name"],
            timeout=timeout)


# --- pg:backups ------------------------------------------------------------------------------------


def backups_dir(layout, app, addon_name):
    """Where the backups of one PostgreSQL add-on are kept."""
    return layout.app_file(app, "pg-backups", addon_name)


def backup_path(layout, app, addon_name, backup_id):
    """The file of backup bNNN of an add-on (the ID checked first)."""
    if not isinstance(backup_id, str) or not BACKUP_ID.match(backup_id):
        raise TinyservError("%r is not a backup ID like b001 (see 'tinyserv pg:backups')" % (backup_id,))
    return os.path.join(backups_dir(layout, app, addon_name), backup_id + ".dump")


def list_backups(layout, app, addon_name):
    """[{id, bytes, created_at}] of the add-on's kept backups, oldest first."""
    directory = backups_dir(layout, app, addon_name)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    shown = []
    for name in sorted(n for n in names if n.endswith(".dump") and BACKUP_ID.match(n[:-5])):
        st = os.stat(os.path.join(directory, name))
        shown.append({"id": name[:-5], "bytes": st.st_size,
                      "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))})
    return sorted(shown, key=lambda b: int(b["id"][1:]))


def capture(layout, app, addon, provider=None):
    """pg:backups:capture: a new bNNN.dump of the add-on's database (written whole or not at all)."""
    directory = backups_dir(layout, app, addon["name"])
    os.makedirs(directory, mode=0o700, exist_ok=True)
    kept = list_backups(layout, app, addon["name"])
    backup_id = "b%03d" % (int(kept[-1]["id"][1:]) + 1 if kept else 1)
    path = backup_path(layout, app, addon["name"], backup_id)
    partial = path + ".partial"
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))  # 0600 before any data
        (provider or Provider()).dump(layout, app, addon, partial)
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.rename(partial, path)
    except BaseException:
        store.remove(partial)
        raise
    return [b for b in list_backups(layout, app, addon["name"]) if b["id"] == backup_id][0]


# --- the pg: commands ------------------------------------------------------------------------------


def attached(layout, app, database=None):
    """The PostgreSQL add-on named database, else the app's one in DATABASE_URL, else its first."""
    layout.require(app)
    if database:
        addon = addonstate.find(layout, app, database)
        if addon["kind"] != "postgresql":
            raise TinyservError("%s is a %s add-on, not a PostgreSQL database" % (database, addon["kind"]))
        return addon
    mine = [a for a in addonstate.load(layout, app) if a["kind"] == "postgresql" and a["state"] == addonstate.READY]
    if not mine:
        raise TinyservError("%s has no PostgreSQL database: create one with 'tinyserv addons:create postgresql'"
                            % app)
    return ([a for a in mine if a["var"] == "DATABASE_URL"] or mine)[0]


def psql(layout, app, command=None, database=None):
    """pg:psql: psql on the add-on's database as its own role; in root mode as the app's own user (stream).

    psql's `\\!` runs a shell and `\\o`, `\\i`, `\\copy` open files: in root mode they must reach no more
    than the app's own code could, never the deploy user's keys and state, so psql runs as `run` does.
    """
    addon = attached(layout, app, database)
    argv = [tool("psql")] + (["-c", command] if command is not None else [])
    conn = connection(addon["url"], addon["name"])
    try:
        if privileged.deploy_user(layout) is None:  # single-user mode: every app is the deploy user anyway
            os.execve(argv[0], argv, client_env(conn))
        return privileged.attach(layout, app, argv, layout.app_file(app, "home"), app_client_env(layout, app, conn))
    except OSError as e:
        raise TinyservError("cannot run psql: %s" % e.strerror) from None


def app_client_env(layout, app, conn):
    """The environment of a client program run as the app's user: nothing of ours but the terminal, plus conn."""
    from tinyserv.platform.appenv import BASE_PATH
    from tinyserv.platform.procs import MARK
    env = {"PATH": BASE_PATH, "LANG": os.environ.get("LANG", "C.UTF-8"), "TERM": os.environ.get("TERM", "dumb"),
           MARK: layout.mark(app, "psql.%d" % os.getpid())}
    env.update(conn)
    return env


def backups(layout, app, database=None):
    """pg:backups: the database's kept backups, oldest first."""
    addon = attached(layout, app, database)
    return {"database": addon["name"], "backups": list_backups(layout, app, addon["name"])}


def backups_capture(layout, app, database=None):
    """pg:backups:capture: pg_dump the database now into a new backup."""
    addon = attached(layout, app, database)
    return dict(capture(layout, app, addon), database=addon["name"])


def chosen_backup(layout, app, backup, database):
    """(add-on, backup path): the backup named (default: the newest); an add-on name alone is the database."""
    if backup and not BACKUP_ID.match(backup) and database is None and APP_NAME.match(backup):
        backup, database = None, backup
    addon = attached(layout, app, database)
    if backup is None:
        kept = list_backups(layout, app, addon["name"])
        if not kept:
            raise TinyservError("%s has no backups yet: make one with 'tinyserv pg:backups:capture'" % addon["name"])
        backup = kept[-1]["id"]
    path = backup_path(layout, app, addon["name"], backup)
    if not os.path.isfile(path):
        raise TinyservError("%s has no backup %s (see 'tinyserv pg:backups')" % (addon["name"], backup))
    return addon, backup, path


def backups_restore(layout, app, backup=None, database=None):
    """pg:backups:restore [ID]: load a backup into the database, replacing its tables (one transaction)."""
    addon, backup_id, path = chosen_backup(layout, app, backup, database)
    Provider().restore(layout, app, addon, path)
    from tinyserv.state import logs
    logs.append(layout.log_file(app), "tinyserv", "Restored %s from backup %s" % (addon["name"], backup_id))
    return {"database": addon["name"], "backup": backup_id}


def backups_download(layout, app, backup=None, database=None):
    """pg:backups:download [ID]: write a backup to standard output (the client saves it) (stream)."""
    import sys
    _, _, path = chosen_backup(layout, app, backup, database)
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1024 * 1024)
    sys.stdout.buffer.flush()
    return 0
