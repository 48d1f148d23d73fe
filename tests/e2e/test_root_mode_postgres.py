"""PostgreSQL add-ons in root mode, tried as an attacker would (issue 16, items 1 and 3).

A key limited to one app must not get a shell as the deploy user through psql's `\\!`, and an app's user must
neither read the admin role's password (TINYSERV_POSTGRES_URL) anywhere on the server nor open another app's
database with its own role. The server plays the admin the README's way (tests/e2e/test_data.py).
"""

import json
import shlex

import pytest

from helpers import REAL_SSH, ssh_options
from support import describe, make_app, run
from test_data import ADMIN_PASSWORD, set_up_postgresql
from test_root_mode import ROOT, RootApp, node_files

# The admin password, put together only by the shell that looks for it: the probe's own command line, which
# an app's user may read in /proc, must not contain it.
HALF = len(ADMIN_PASSWORD) // 2
NEEDLE = f'p={ADMIN_PASSWORD[:HALF]}; p="$p"{ADMIN_PASSWORD[HALF:]}'


@pytest.fixture(scope="module")
def pg_apps(root_server, tmp_path_factory):
    """Apps db-a and db-b, each with a PostgreSQL add-on, deployed; a key `ci` limited to db-a."""
    set_up_postgresql(root_server)
    base = tmp_path_factory.mktemp("rootpg")
    apps = {}
    try:
        for short in ("a", "b"):
            name = f"db-{short}"
            app = RootApp(root_server, make_app(base / name, node_files("hello from " + short)), name)
            app.tinyserv("apps:create", name)
            apps[short] = app
            app.tinyserv("addons:create", "postgresql")
            app.push()
        key = base / "ci"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f", str(key)])
        root_server.ssh("tinyserv-remote keys:add ci --apps db-a", input=(base / "ci.pub").read_text())
        env = dict(root_server.env, TINYSERV_SSH_REUSE="0")
        env["GIT_SSH_COMMAND"] = shlex.join([REAL_SSH] + ssh_options(key))
        yield apps, env
    finally:
        root_server.ssh("tinyserv-remote keys:remove ci", check=False)
        for app in apps.values():
            app.tinyserv("apps:destroy", "--confirm", app.name, check=False)


def test_pg_psql_with_an_app_limited_key_runs_as_the_apps_user_not_the_deploy_user(pg_apps):
    apps, ci = pg_apps
    a = apps["a"]
    shell = run(["tinyserv", "pg:psql", "-a", a.name, "-c", "\\! id -un; cat /home/deploy/.ssh/authorized_keys"],
                cwd=a.repo, env=ci, check=False, timeout=60)
    assert shell.stdout.split() == ["ts-db-a"], describe(shell)
    assert "ssh-ed25519" not in shell.stdout + shell.stderr, describe(shell)
    # The prompt (commands on standard input) too.
    prompt = run(["tinyserv", "pg:psql", "-a", a.name], input="\\! id -un\nSELECT 'still ' || 'psql';\n",
                 cwd=a.repo, env=ci, check=False, timeout=60)
    assert "ts-db-a" in prompt.stdout and "still psql" in prompt.stdout and "deploy" not in prompt.stdout, \
        describe(prompt)
    # psql itself still works, on the app's own database as its own role.
    database = next(x for x in json.loads(a.tinyserv("addons", "--json").stdout) if x["kind"] == "postgresql")
    own = run(["tinyserv", "pg:psql", "-a", a.name, "-c", "SELECT current_user"], cwd=a.repo, env=ci, timeout=60)
    assert database["database"] in own.stdout, describe(own)


def test_an_apps_user_cannot_read_the_admin_password_anywhere(pg_apps):
    a = pg_apps[0]["a"]
    places = f"/home /root /etc /opt /tmp /var/log {ROOT}"
    probe = (f'{NEEDLE}; grep -rlsF "$p" {places}; '
             f'for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do grep -lsF "$p" $f; done; echo probed')
    found = a.tinyserv("run", probe)
    assert found.stdout.split() == ["probed"], describe(found)


def test_an_apps_user_cannot_open_another_apps_database_with_its_own_role(pg_apps):
    a, b = pg_apps[0]["a"], pg_apps[0]["b"]
    other = next(x for x in json.loads(b.tinyserv("addons", "--json").stdout) if x["kind"] == "postgresql")
    own = a.tinyserv("run", "psql -XAtc 'SELECT 42' \"$DATABASE_URL\"")
    assert own.stdout.strip() == "42", describe(own)
    script = f"psql -XAtc 'SELECT 42' \"${{DATABASE_URL%/*}}/{other['database']}\" 2>&1 || echo refused"
    tried = a.tinyserv("run", script)
    assert tried.stdout.splitlines()[-1:] == ["refused"], describe(tried)
    assert "permission denied for database" in tried.stdout, describe(tried)
