"""client.Client with a fake remote: what is sent, and exactly what is printed."""

import argparse
import io

import pytest

from tinyserv.cli import client, gitlocal
from tinyserv.common import commands
from tinyserv.common.errors import TinyservError


class FakeRemote:
    """Answers call() from a table and remembers what was asked."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def call(self, words, data=None):
        self.calls.append((words, data))
        return self.answers[words[0]]

    def git_url(self, path):
        return "deploy@host:" + path

    def web_host(self):
        return "host"


@pytest.fixture(autouse=True)
def no_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")


VERBS = {client.method_name(c.name): c.name for c in commands.client_commands()}


def namespace(method, **args):
    """Parsed arguments of the command whose Client method is `method`."""
    args.setdefault("app", "myapp")
    args.setdefault("verb", VERBS[method])
    return argparse.Namespace(**args)


def run(method, answers=None, **args):
    remote = FakeRemote(answers)
    out = io.StringIO()
    getattr(client.Client(namespace(method, **args), remote, out), method)()
    return out.getvalue(), remote.calls


def test_config_set_sends_values_as_data_not_as_words():
    out, calls = run("config_set", {"config:set": {"release": {"version": 5}, "web": "up"}},
                     pairs=["MSG=it's \"x\" $HOME", "B=1"])
    words, data = calls[0]
    assert words == ["config:set", "--", "myapp"]
    assert data["pairs"] == ["MSG=it's \"x\" $HOME", "B=1"] and "@" in data["by"]
    assert out == ("Setting MSG, B and restarting ⬢ myapp... done, v5\n"
                   "B:   1\n"
                   "MSG: it's \"x\" $HOME\n")


@pytest.mark.parametrize("method, args, message", [
    ("config_set", {"pairs": []}, "config:set needs KEY=VALUE"),
    ("config_set", {"pairs": ["novalue"]}, "'novalue' is not KEY=VALUE"),
    ("config_unset", {"keys": []}, "config:unset needs a KEY"),
    ("config_unset", {"keys": ["1BAD"]}, "invalid config key '1BAD'"),
    ("config_get", {"key": "a-b"}, "invalid config key 'a-b'"),
    ("ps_scale", {"changes": []}, "ps:scale needs TYPE=N"),
    ("ps_scale", {"changes": ["web=two"]}, "'web=two' is not TYPE=N"),
    ("run", {"command": []}, "run needs a command"),
])
def test_bad_input_is_refused_before_anything_is_sent(method, args, message):
    remote = FakeRemote()
    with pytest.raises(TinyservError, match=message):
        getattr(client.Client(namespace(method, **args), remote, io.StringIO()), method)()
    assert remote.calls == []


def test_config_shell_prints_lines_a_shell_can_source():
    out, _ = run("config", {"config": {"B": "it's", "A": "x y"}}, shell=True, json=False)
    assert out == "A='x y'\nB='it'\"'\"'s'\n"


def test_config_prints_aligned_pairs_under_a_heading():
    out, _ = run("config", {"config": {"GREETING": "hello", "A": "1"}}, shell=False, json=False)
    assert out == "=== myapp Config Vars\nA:        1\nGREETING: hello\n"


def test_config_get_prints_only_the_value():
    out, _ = run("config_get", {"config": {"GREETING": "hello world"}}, key="GREETING")
    assert out == "hello world\n"


def test_apps_info_prints_urls_and_state():
    out, _ = run("apps_info", {"apps:info": {
        "name": "myapp", "port": 5001, "repo": "/srv/repos/myapp.git", "release": "v3", "commit": None,
        "deployed_at": None, "state": "not deployed", "scheduler": "local"}}, json=False)
    assert out == ("=== myapp\n"
                   "Git URL:   deploy@host:/srv/repos/myapp.git\n"
                   "Port:      5001\n"
                   "Web URL:   http://host:5001/\n"
                   "Release:   v3\n"
                   "Commit:    (not deployed)\n"
                   "Deployed:  -\n"
                   "Runtime:   -\n"
                   "State:     not deployed\n"
                   "Scheduler: local\n")


def test_apps_info_names_the_runtime_the_app_runs_with():
    out, _ = run("apps_info", {"apps:info": {
        "name": "myapp", "port": 5001, "repo": "/srv/repos/myapp.git", "release": "v3", "commit": "abc1234",
        "deployed_at": "2026-11-28T05:00:00Z", "state": "up", "runtime": "node 20.19.1, npm 9.2.0 (the server's)"}},
        json=False)
    assert "Runtime:   node 20.19.1, npm 9.2.0 (the server's)\n" in out


def test_releases_prints_a_table_newest_first():
    history = [
        {"version": 2, "description": "Deploy abc1234", "by": "ann@laptop", "created_at": "2026-11-28T05:00:00Z"},
        {"version": 1, "description": "Initial release", "by": "ann", "created_at": "2026-11-27T05:00:00Z"},
    ]
    out, calls = run("releases", {"releases": history}, num=None, json=False)
    assert calls == [(["releases", "--", "myapp"], {})]
    assert out == ("=== myapp Releases - Current: v2\n"
                   "VERSION  DESCRIPTION      BY          CREATED\n"
                   "-------  ---------------  ----------  --------------------\n"
                   "v2       Deploy abc1234   ann@laptop  2026-11-28T05:00:00Z\n"
                   "v1       Initial release  ann         2026-11-27T05:00:00Z\n")


def test_releases_show_a_committers_escape_sequences_escaped_but_json_keeps_them():
    answer = {"releases": [{"version": 2, "description": "Deploy 1234567 \x1b]0;pwned\x07", "by": "ev\x1b[2Jil@x",
                            "created_at": "2024-01-01T00:00:00Z"}]}
    out, _ = run("releases", answer, num=None, json=False)
    assert "\x1b" not in out and "ev\\x1b[2Jil@x" in out and "\\x1b]0;pwned\\x07" in out
    out, _ = run("releases", answer, num=None, json=True)
    assert '"ev\\u001b[2Jil@x"' in out


def test_ps_shows_a_procfiles_escape_sequences_escaped():
    answer = {"ps": {"formation": {"web": {"command": "node x \x1b[2J", "quantity": 1, "stopped": False}},
                     "instances": []}}
    out, _ = run("ps", answer, json=False)
    assert out.startswith("=== web (node x \\x1b[2J): 1\n")


def test_maintenance_prints_on_or_off_and_json_with_json():
    assert run("maintenance", {"maintenance": {"maintenance": True}}, json=False)[0] == "on\n"
    assert run("maintenance", {"maintenance": {"maintenance": False}}, json=True)[0] == '{\n  "maintenance": false\n}\n'


def test_releases_json_prints_what_the_remote_answered():
    out, calls = run("releases", {"releases": [{"version": 1}]}, num=1, json=True)
    assert calls == [(["releases", "--num", "1", "--", "myapp"], {})]
    assert out == '[\n  {\n    "version": 1\n  }\n]\n'


def test_ps_scale_reports_the_new_formation():
    out, calls = run("ps_scale", {"ps:scale": {"worker": {"quantity": 2}, "web": {"quantity": 1}}},
                     changes=["worker=2"], json=False)
    assert calls == [(["ps:scale", "--", "myapp", "worker=2"], {})]
    assert out == "Scaling processes... done, now running web at 1, worker at 2\n"


def test_ps_of_an_app_never_deployed_says_how_to_deploy():
    out, _ = run("ps", {"ps": {"formation": {}, "instances": [], "release": 1}}, json=False)
    assert out == "myapp has not been deployed yet: git push tinyserv main\n"


def test_ps_says_when_a_running_web_stopped_answering(monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1000.0)
    web = {"name": "web.1", "type": "web", "state": "up", "pid": 42, "since": 900.0, "restarts": 0,
           "exit_code": None, "reason": None, "next_try": None, "silent_since": 988.0}
    out, _ = run("ps", {"ps": {"formation": {"web": {"quantity": 1, "stopped": False, "command": "node server.js"}},
                               "instances": [web], "release": 2}}, json=False)
    assert "web.1    up, not answering for 12s  42" in out, out


# --- apps that keep data ---------------------------------------------------------------------------


def test_storage_shows_the_data_directory_its_size_and_its_variable():
    out, _ = run("storage", {"storage": {"app": "myapp", "path": "/srv/apps/myapp/data", "bytes": 1536, "files": 2}},
                 json=False)
    assert out == ("=== myapp Storage\n"
                   "Path:        /srv/apps/myapp/data\n"
                   "Size:        1.5 KB (2 files)\n"
                   "Environment: TINYSERV_DATA_DIR (processes, the release phase and run; kept across deploys, "
                   "rollbacks, restarts and reboots)\n")


def test_addons_are_a_table_and_none_says_how_to_make_one():
    listed = [{"name": "redis-1a2b3c4d", "kind": "redis", "var": "REDIS_URL", "state": "created",
               "created_at": "2026-11-28T05:00:00Z", "plan": "redis-server on 127.0.0.1:6380", "port": 6380}]
    out, _ = run("addons", {"addons": listed}, json=False)
    assert out == ("=== myapp Add-ons\n"
                   "NAME            KIND   CONFIG VAR  STATE    CREATED\n"
                   "--------------  -----  ----------  -------  --------------------\n"
                   "redis-1a2b3c4d  redis  REDIS_URL   created  2026-11-28T05:00:00Z\n")
    out, _ = run("addons", {"addons": []}, json=False)
    assert out == "myapp has no add-ons. Create one with 'tinyserv addons:create postgresql' (or redis).\n"


def test_addons_create_with_json_prints_only_json():
    created = {"name": "postgresql-1a2b3c4d", "kind": "postgresql", "var": "DATABASE_URL", "state": "created"}
    out, calls = run("addons_create", {"addons:create": created}, kind="heroku-postgresql", json=True)
    assert out.startswith("{") and calls[0][0] == ["addons:create", "--", "myapp", "heroku-postgresql"]


def test_cron_shows_each_job_with_its_next_and_last_run():
    jobs = {"deployed": True, "jobs": [
        {"name": "scheduler.1", "schedule": "*/5 * * * *", "command": "node job.js", "next_at": 1795924800,
         "last_started": 1795924500, "last_exit": 0, "runs": 3, "skipped": 0, "running": False},
        {"name": "scheduler.2", "schedule": "@daily", "command": "node nightly.js", "next_at": None,
         "last_started": None, "last_exit": None, "runs": 0, "skipped": 0, "running": True}]}
    out, _ = run("cron", {"cron": jobs}, json=False)
    assert out.splitlines() == [
        "=== myapp Scheduled jobs (UTC)",
        "JOB          SCHEDULE     COMMAND          NEXT RUN              LAST RUN                       RUNS",
        "-----------  -----------  ---------------  --------------------  -----------------------------  ----",
        "scheduler.1  */5 * * * *  node job.js      2026-11-29T04:00:00Z  2026-11-29T03:55:00Z (exit 0)  3",
        "scheduler.2  @daily       node nightly.js                        running                        0"]


def test_apps_destroy_says_it_deleted_the_data_directory_and_add_ons(monkeypatch):
    monkeypatch.setattr(gitlocal, "in_repository", lambda: False)
    answer = {"destroyed": "myapp", "addons": ["postgresql-1a2b3c4d"], "data_bytes": 3 * 1024 * 1024}
    out, _ = run("apps_destroy", {"apps:destroy": answer}, name="myapp", confirm="myapp")
    assert out == ("Destroying ⬢ myapp... done: its data directory (3.0 MB) and add-ons postgresql-1a2b3c4d, "
                   "with their data deleted\n")


@pytest.mark.parametrize("method, args, message", [
    ("addons_create", {"kind": "mysql", "json": False}, "unknown add-on kind 'mysql'"),
    ("addons_destroy", {"addon": "redis-1a2b3c4d", "confirm": "other"}, "confirmation 'other' does not match"),
    ("pg_backups_restore", {"backup": "b001", "confirm": "nope"}, "confirmation 'nope' does not match 'myapp'"),
])
def test_bad_data_commands_are_refused_before_anything_travels(method, args, message):
    with pytest.raises(TinyservError, match=message):
        run(method, {}, **args)
