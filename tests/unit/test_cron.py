"""cron.py: app.json's cron entries checked at deploy, and the supervisor running them by a fake clock."""

import os
import random
import signal

import pytest

from tinyserv.supervise import cron
from tinyserv.state import releases, store
from tinyserv.common.errors import TinyservError
from tinyserv.common.schedule import utc
from tinyserv.supervise.supervisor import Supervisor

from .fakes import FakeSystem
from .test_supervisor import APP, PORT, log_text

MINUTE = 60


# --- app.json ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, jobs", [
    (None, []),
    ("{}", []),
    ('{"name": "x", "cron": []}', []),
    ('{"cron": [{"command": "node job.js", "schedule": "*/5 * * * *"}]}',
     [{"command": "node job.js", "schedule": "*/5 * * * *"}]),
    ('{"cron": [{"command": "a", "schedule": " @daily "}, {"command": "b", "schedule": "0 3 * * mon"}]}',
     [{"command": "a", "schedule": "@daily"}, {"command": "b", "schedule": "0 3 * * mon"}]),
])
def test_app_json_cron_entries_become_jobs(text, jobs):
    assert cron.read_jobs(text) == jobs


BAD_SCHEDULE = """{
  "name": "myapp",
  "cron": [
    {"command": "node ok.js", "schedule": "@hourly"},
    {
      "command": "node \\" ] } tricky.js",
      "schedule": "*/0 * * * *"
    }
  ]
}
"""


@pytest.mark.parametrize("text, message", [
    ("{not json", "app.json is not valid JSON: Expecting property name enclosed in double quotes: line 1"),
    ("[]", "app.json must be a JSON object"),
    ('{\n  "cron": {"command": "x"}\n}', "app.json line 2: cron must be a list"),
    ('{"cron": [\n  "node job.js"\n]}', "app.json line 2: cron job 1 must be an object"),
    ('{"cron": [\n  {"schedule": "@daily"}\n]}', "app.json line 2: cron job 1 needs a \"command\""),
    ('{"cron": [{"command": "  ", "schedule": "@daily"}]}', "cron job 1 needs a \"command\""),
    ('{"cron": [{"command": "a\\u0000b", "schedule": "@daily"}]}', "without NUL bytes"),
    ('{"cron": [{"command": "x", "schedule": 5}]}', "cron job 1 needs a \"schedule\""),
    (BAD_SCHEDULE, "app.json line 7: cron job 2: bad minute '*/0': a step is a whole number of 1 or more"),
    ('{"cron": [{"command": "x",\n "schedule": "* * *"}]}', "app.json line 2: cron job 1: '* * *' has 3 fields"),
    ('{"cron": [%s]}' % ",".join(['{"command": "x", "schedule": "@daily"}'] * 51), "at most 50 are allowed"),
])
def test_a_bad_cron_entry_is_refused_with_its_line_in_app_json(text, message):
    with pytest.raises(TinyservError) as caught:
        cron.read_jobs(text)
    assert message in str(caught.value)


def test_a_procfile_type_named_scheduler_cannot_live_beside_cron_jobs():
    with pytest.raises(TinyservError, match="share names with app.json's cron jobs"):
        cron.check_names([{"command": "x", "schedule": "@daily"}], {"web": "w", "scheduler": "s"})
    cron.check_names([], {"web": "w", "scheduler": "s"})


# --- the Scheduler alone -------------------------------------------------------------------------------


def test_the_scheduler_says_a_job_is_due_at_its_minute_and_then_not_until_its_next(layout):
    scheduler = cron.Scheduler(layout)
    now = utc("2026-11-28T05:00:30Z")
    scheduler.update(APP, [{"command": "x", "schedule": "*/5 * * * *"}], now)
    assert scheduler.next_due(now) == utc("2026-11-28T05:05:00Z") - now
    assert scheduler.due(utc("2026-11-28T05:04:59Z")) == []
    due = scheduler.due(utc("2026-11-28T05:05:00Z") + 0.2)
    assert [(app, job.name) for app, job in due] == [(APP, "scheduler.1")]
    assert scheduler.due(utc("2026-11-28T05:05:30Z")) == []
    assert due[0][1].next_at == utc("2026-11-28T05:10:00Z")


def test_a_late_supervisor_runs_a_missed_job_once_and_then_keeps_to_the_schedule(layout):
    scheduler = cron.Scheduler(layout)
    scheduler.update(APP, [{"command": "x", "schedule": "* * * * *"}], utc("2026-11-28T05:00:00Z"))
    assert len(scheduler.due(utc("2026-11-28T05:07:10Z"))) == 1  # asleep for 6 minutes: one run, no burst
    assert scheduler.due(utc("2026-11-28T05:07:59Z")) == []
    assert len(scheduler.due(utc("2026-11-28T05:08:00Z"))) == 1


def test_a_redeploy_keeps_the_times_of_unchanged_jobs_and_reschedules_changed_ones(layout):
    scheduler = cron.Scheduler(layout)
    start = utc("2026-11-28T05:00:30Z")
    scheduler.update(APP, [{"command": "a", "schedule": "@hourly"}, {"command": "b", "schedule": "@daily"}], start)
    first = scheduler.jobs[APP]["scheduler.1"]
    scheduler.update(APP, [{"command": "a", "schedule": "@hourly"}, {"command": "b2", "schedule": "@daily"}],
                     start + 10)
    assert scheduler.jobs[APP]["scheduler.1"] is first
    assert scheduler.jobs[APP]["scheduler.2"].command == "b2"
    scheduler.update(APP, [], start + 20)
    assert APP not in scheduler.jobs and scheduler.next_due(start) is None


# --- in the supervisor, by the fake clock ----------------------------------------------------------


def cron_app(layout, jobs, config=None, build="b1", procfile=None):
    """An app whose current build declares jobs in its app.json (as a push records them)."""
    for sub in ("builds", "log", "run"):
        os.makedirs(layout.app_file(APP, sub), exist_ok=True)
    if not releases.history(layout, APP):
        store.write_json(layout.app_file(APP, "formation.json"), {"quantity": {}, "stopped": []})
        releases.add(layout, APP, "Initial release", {}, by="test", app_port=PORT)
    os.makedirs(layout.build_dir(APP, build), exist_ok=True)
    store.write_json(layout.build_meta(APP, build), {
        "id": build, "commit": build * 20, "procfile": procfile or {"worker": "node worker.js"}, "path": [],
        "env": {}, "cron": jobs})
    return releases.add(layout, APP, "Deploy " + build, config or {}, build=build, commit=build * 20, by="test")


@pytest.fixture
def fake():
    return FakeSystem(now=utc("2026-11-28T04:59:30Z"))


@pytest.fixture
def sup(layout, fake):
    supervisor = Supervisor(layout, fake)
    yield supervisor
    supervisor.close()


def job_runs(fake):
    return [(argv[-1], env["DYNO"]) for argv, _, env in fake.spawned if env["DYNO"].startswith("scheduler.")]


def pid_of(fake, dyno):
    return [pid for pid, (argv, _, env) in zip(range(100, 100 + len(fake.spawned)), fake.spawned)
            if env["DYNO"] == dyno][-1]


def test_a_due_job_runs_as_a_one_off_scheduler_process_in_the_apps_environment(sup, fake, layout):
    cron_app(layout, [{"command": "node job.js", "schedule": "* * * * *"}], config={"GREETING": "hi"})
    sup.sync()
    sup.tick()
    assert job_runs(fake) == []
    fake.now = utc("2026-11-28T05:00:00Z")
    sup.tick()
    assert job_runs(fake) == [("node job.js", "scheduler.1")]
    env = fake.spawned[-1][2]
    assert env["GREETING"] == "hi" and env["TINYSERV_DATA_DIR"] == layout.data_dir(APP)
    assert env["PS"] == "scheduler.1" and env["PORT"] == str(PORT) and env["TINYSERV_RELEASE"] == "v2"
    assert sup.apps[APP]["scheduler.1"]["oneoff"] is True
    assert "tinyserv: Starting scheduler.1: node job.js" in log_text(layout)


def test_a_finished_job_is_not_restarted_and_its_exit_is_recorded(sup, fake, layout):
    cron_app(layout, [{"command": "node job.js", "schedule": "* * * * *"}])
    sup.sync()
    fake.now = utc("2026-11-28T05:00:00Z")
    sup.tick()
    pid = pid_of(fake, "scheduler.1")
    fake.now += 2.5
    fake.exit(pid, 3)
    sup.tick()
    sup.tick()
    assert "scheduler.1" not in sup.apps[APP] and len(job_runs(fake)) == 1
    assert "scheduler.1 exited with 3 after 2.5 s" in log_text(layout)
    saved = store.read_json(cron.cron_file(layout, APP))["jobs"][0]
    assert (saved["last_exit"], saved["runs"], saved["next_at"]) == (3, 1, utc("2026-11-28T05:01:00Z"))
    listed = cron.listing(layout, APP)["jobs"][0]
    assert (listed["last_exit"], listed["running"], listed["schedule"]) == (3, False, "* * * * *")


def test_a_job_still_running_at_its_next_minute_skips_that_run(sup, fake, layout):
    cron_app(layout, [{"command": "sleep 90", "schedule": "* * * * *"}])
    sup.sync()
    fake.now = utc("2026-11-28T05:00:00Z")
    sup.tick()
    fake.now = utc("2026-11-28T05:01:00Z")
    sup.tick()
    assert len(job_runs(fake)) == 1
    assert "scheduler.1 is still running: its run due at 05:01 is skipped" in log_text(layout)
    fake.exit(pid_of(fake, "scheduler.1"), 0)
    sup.tick()
    fake.now = utc("2026-11-28T05:02:00Z")
    sup.tick()
    assert len(job_runs(fake)) == 2


def test_a_deploy_lets_a_running_job_finish_and_shutdown_stops_it(sup, fake, layout):
    cron_app(layout, [{"command": "node long.js", "schedule": "* * * * *"}])
    sup.sync()
    fake.now = utc("2026-11-28T05:00:00Z")
    sup.tick()
    pid = pid_of(fake, "scheduler.1")
    cron_app(layout, [{"command": "node long.js", "schedule": "* * * * *"}], build="b2")
    sup.sync(APP)
    sup.tick()
    assert (pid, signal.SIGTERM) not in fake.signals and sup.apps[APP]["scheduler.1"]["state"] == "up"
    sup.restart(APP)
    assert (pid, signal.SIGTERM) not in fake.signals
    sup.shutdown()
    assert (pid, signal.SIGTERM) in fake.signals


def test_after_a_deploy_that_changes_a_job_cron_does_not_show_the_new_job_running_while_the_old_one_runs(
        sup, fake, layout):
    cron_app(layout, [{"command": "node long.js", "schedule": "* * * * *"}])
    sup.sync()
    fake.now = utc("2026-11-28T05:00:00Z")
    sup.tick()
    assert cron.listing(layout, APP)["jobs"][0]["running"] is True
    cron_app(layout, [{"command": "node other.js", "schedule": "@daily"}], build="b2")
    sup.sync(APP)
    sup.tick()
    assert sup.apps[APP]["scheduler.1"]["state"] == "up"  # the old run goes on
    listed = cron.listing(layout, APP)["jobs"][0]
    assert (listed["command"], listed["running"]) == ("node other.js", False)


def test_after_a_deploy_that_keeps_a_job_cron_shows_its_run_going_on(sup, fake, layout):
    cron_app(layout, [{"command": "node long.js", "schedule": "* * * * *"}])
    sup.sync()
    fake.now = utc("2026-11-28T05:00:00Z")
    sup.tick()
    cron_app(layout, [{"command": "node long.js", "schedule": "* * * * *"}], build="b2")
    sup.sync(APP)
    sup.tick()
    assert cron.listing(layout, APP)["jobs"][0]["running"] is True


def test_the_supervisor_wakes_up_for_a_job_when_nothing_else_happens(sup, fake, layout):
    cron_app(layout, [{"command": "x", "schedule": "* * * * *"}])
    sup.sync()
    sup.tick()
    fake.now = utc("2026-11-28T04:59:59Z") + 0.8
    assert sup.poll_interval() == pytest.approx(0.2)


def test_a_job_every_minute_runs_sixty_times_in_an_hour_whatever_the_loop_does(sup, fake, layout):
    """The loop wakes when poll_interval() says, plus up to 0.3 s of other work; jobs take 0-20 s."""
    rng = random.Random(10)
    cron_app(layout, [{"command": "node job.js", "schedule": "* * * * *"}])
    sup.sync()
    end = utc("2026-11-28T06:00:00Z")
    fake.now = utc("2026-11-28T05:00:00Z") - 0.5
    started, ends = [], {}
    while fake.now < end:
        for pid, when in list(ends.items()):
            if fake.now >= when:
                fake.exit(pid, 0)
                del ends[pid]
        before = len(fake.spawned)
        sup.tick()
        if len(fake.spawned) > before:
            started.append(fake.now)
            ends[100 + before] = fake.now + rng.uniform(0, 20)
        fake.now += sup.poll_interval() + rng.uniform(0, 0.3)
    assert len(started) == 60
    assert all(0 <= t % MINUTE < 1 for t in started)  # each within a second of its minute: no drift


def test_a_new_supervisor_adopts_a_running_job_and_keeps_its_record(layout, fake):
    cron_app(layout, [{"command": "node job.js", "schedule": "* * * * *"}])
    first = Supervisor(layout, fake)
    first.sync()
    fake.now = utc("2026-11-28T05:00:00Z")
    first.tick()
    pid = pid_of(fake, "scheduler.1")
    first.close()
    second = Supervisor(layout, fake)
    try:
        second.adopt()
        second.sync()
        assert second.apps[APP]["scheduler.1"]["state"] == "up" and (pid, signal.SIGKILL) not in fake.signals
        fake.now = utc("2026-11-28T05:00:30Z")
        fake.exit(pid, 0)
        second.tick()
        assert "scheduler.1" not in second.apps[APP]
        saved = store.read_json(cron.cron_file(layout, APP))["jobs"][0]
        assert saved["runs"] == 1 and saved["last_started"] == utc("2026-11-28T05:00:00Z")
    finally:
        second.close()
