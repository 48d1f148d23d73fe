"""The server's settings file ($TINYSERV_ROOT/settings.env, 0600) and doctor's check that secrets stay in it."""

import os

import pytest

from tinyserv.addons import postgres
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.server import doctor
from tinyserv.server.doctor import OK, WARN
from tinyserv.state.layout import Layout

URL = "postgres://tinyserv:secret@localhost:5432/postgres"


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return str(path)


def test_the_settings_file_fills_in_what_the_environment_does_not_set(tmp_path):
    write(tmp_path / "settings.env", "# admin settings\nexport TINYSERV_POSTGRES_URL=%s\nTINYSERV_HOST=file\n" % URL)
    environ = {"TINYSERV_HOST": "environment"}
    settings.load_settings_file(str(tmp_path), environ, euid=os.geteuid)
    assert environ == {"TINYSERV_POSTGRES_URL": URL, "TINYSERV_HOST": "environment"}


def test_no_settings_file_changes_nothing(tmp_path):
    environ = {"TINYSERV_HOST": "h"}
    assert settings.load_settings_file(str(tmp_path), environ, euid=os.geteuid) == {"TINYSERV_HOST": "h"}


def test_a_settings_file_of_another_user_or_a_symlink_is_not_read(tmp_path):
    path = write(tmp_path / "settings.env", "TINYSERV_POSTGRES_URL=%s\n" % URL)
    assert settings.read_settings_file(path, (os.geteuid(),)) == {"TINYSERV_POSTGRES_URL": URL}
    assert settings.read_settings_file(path, (os.geteuid() + 1,)) == {}  # root's supervisor, say, and deploy's file
    os.symlink(path, str(tmp_path / "link.env"))
    assert settings.read_settings_file(str(tmp_path / "link.env"), (os.geteuid(),)) == {}


@pytest.mark.parametrize("text, message", [
    ("TINYSERV_ROOT=/elsewhere\n", "sets TINYSERV_ROOT, which says where that file is"),
    ("not a setting\n", "settings.env line 1 is not NAME=value"),
])
def test_a_settings_file_that_cannot_be_used_is_refused_in_one_line_naming_it(tmp_path, text, message):
    write(tmp_path / "settings.env", text)
    with pytest.raises(TinyservError, match=message):
        settings.load_settings_file(str(tmp_path), {}, euid=os.geteuid)


def test_the_settings_file_is_in_the_root():
    assert settings.settings_file("/srv/tinyserv") == "/srv/tinyserv/settings.env"


def test_doctor_warns_about_a_secret_in_a_shell_file_others_can_read(tmp_path):
    write(tmp_path / ".bashrc", "export PATH=/x:$PATH\nexport TINYSERV_POSTGRES_URL=%s\n" % URL, mode=0o644)
    write(tmp_path / ".profile", "  TINYSERV_POSTGRES_URL=%s\n" % URL, mode=0o600)  # only its owner reads it
    write(tmp_path / ".bash_profile", "# TINYSERV_POSTGRES_URL=... goes in settings.env\n", mode=0o644)
    exposed = doctor.exposed_secrets(str(tmp_path))
    assert exposed == [(str(tmp_path / ".bashrc"), ["TINYSERV_POSTGRES_URL"])]
    check = doctor.check_secrets("/r/settings.env", 0o600, exposed)
    assert check == (WARN, "secrets", "%s sets TINYSERV_POSTGRES_URL, and other users can read it"
                     % (tmp_path / ".bashrc"), "move those lines to /r/settings.env (chmod 600) and delete them "
                     "from %s" % (tmp_path / ".bashrc"))


@pytest.mark.parametrize("mode, level, detail, fix", [
    (0o644, WARN, "/r/settings.env is mode 0644: other users can read it", "chmod 600 /r/settings.env"),
    (0o640, WARN, "/r/settings.env is mode 0640: other users can read it", "chmod 600 /r/settings.env"),
    (0o600, OK, "in /r/settings.env (mode 0600)", None),
    (None, OK, "none in a file others can read (no /r/settings.env)", None),
])
def test_doctor_checks_the_settings_files_mode(mode, level, detail, fix):
    assert doctor.check_secrets("/r/settings.env", mode, []) == (level, "secrets", detail, fix)


def test_doctor_reads_the_settings_files_mode(tmp_path):
    assert doctor.file_mode(write(tmp_path / "settings.env", "", mode=0o640)) == 0o640
    assert doctor.file_mode(str(tmp_path / "none")) is None


def test_psql_as_the_apps_user_gets_the_add_ons_connection_and_nothing_of_the_deploy_users(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYSERV_POSTGRES_URL", URL)
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent")
    layout = Layout(str(tmp_path))
    conn = postgres.connection("postgres://a_1:pw@127.0.0.1:5432/a_1")
    env = postgres.app_client_env(layout, "a", conn)
    assert env == dict(conn, PATH="/usr/local/bin:/usr/bin:/bin", LANG=env["LANG"], TERM=env["TERM"],
                       TINYSERV_INSTANCE=layout.mark("a", "psql.%d" % os.getpid()))
    assert env["PGPASSWORD"] == "pw"

