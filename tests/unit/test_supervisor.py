"""supervisor.py driven by tick() with a fake System and a real temporary root on disk."""

import os
import signal

import pytest


from tinyserv.state import releases, store
from tinyserv.common.settings import stop_timeout
from tinyserv.supervise.loop import Server
from tinyserv.supervise.restarts import MAX_BACKOFF, STABLE_AFTER, backoff
from tinyserv.supervise.supervisor import desired_state

APP = "myapp"
PORT = 5123
PROCFILE = {"release": "./migrate", "web": "node server.js", "worker": "node worker.js"}


def make_app(layout, procfile=PROCFILE, config=None, formation=None, build="b1", app=APP, port=PORT):
    """An app deployed once: v1 'Initial release', v2 running build `build`."""
    for sub in ("builds", "log", "run"):
        os.makedirs(layout.app_file(app, sub), exist_ok=True)
    store.write_json(layout.app_file(app, "formation.json"), formation or {"quantity": {}, "stopped": []})
    releases.add(layout, app, "Initial release", {}, by="test", app_port=port)
    deploy(layout, procfile, config, build, app)


def deploy(layout, procfile=PROCFILE, config=None, build="b2", app=APP):
    """A new build with its meta, and a release that runs it."""
    os.makedirs(layout.build_dir(app, build), exist_ok=True)
    store.write_json(layout.build_meta(app, build), {"id": build, "commit": build * 10, "procfile": procfile,
                                                 "path": ["bin"], "env": {}})
    return releases.add(layout, app, "Deploy " + build, config or {}, build=build, commit=build * 10, by="test")


def scale(layout, app=APP, **quantity):
    path = layout.app_file(app, "formation.json")
    saved = store.read_json(path)
    saved["quantity"].update(quantity)
    store.write_json(path, saved)


@pytest.fixture
def app(layout):
    make_app(layout)
    return APP


def states(sup, app=APP):
    return {name: inst["state"] for name, inst in sorted(sup.apps.get(app, {}).items())}


def inst(sup, name, app=APP):
    return sup.apps[app][name]


def log_text(layout, app=APP):
    with open(layout.log_file(app)) as f:
        return f.read()


# --- pure parts --------------------------------------------------------------------


@pytest.mark.parametrize("streak, delay", [
    (0, 0), (1, 0), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (7, 64), (8, 128), (9, 256),
    (10, MAX_BACKOFF), (11, MAX_BACKOFF), (100, MAX_BACKOFF),
])
def test_backoff_doubles_from_2_seconds_up_to_300(streak, delay):
    assert backoff(streak) == delay
    assert MAX_BACKOFF == 300


@pytest.mark.parametrize("config, grace", [
    ({}, 30.0),
    ({"TINYSERV_STOP_TIMEOUT": "5"}, 5.0),
    ({"TINYSERV_STOP_TIMEOUT": "2.5"}, 2.5),
    ({"TINYSERV_STOP_TIMEOUT": "0"}, 0.0),
    ({"TINYSERV_STOP_TIMEOUT": ""}, 30.0),
    ({"TINYSERV_STOP_TIMEOUT": "soon"}, 30.0),
    ({"TINYSERV_STOP_TIMEOUT": "-1"}, 30.0),
    ({"TINYSERV_STOP_TIMEOUT": "1.2.3"}, 30.0),
    ({"TINYSERV_STOP_TIMEOUT": "²"}, 30.0),
])
def test_stop_timeout_comes_from_the_release_config(config, grace):
    assert stop_timeout(config) == grace


def test_desired_state_lists_one_instance_per_process_type(layout, app):
    want = desired_state(layout, APP)
    assert want.instances == {"web.1": "node server.js", "worker.1": "node worker.js"}
    assert want.release["version"] == 2
    assert want.build_dir == layout.build_dir(APP, "b1")


def test_desired_state_of_an_app_never_deployed_runs_nothing(layout):
    os.makedirs(layout.app_file(APP, "run"))
    releases.add(layout, APP, "Initial release", {}, by="test", app_port=PORT)
    assert desired_state(layout, APP).instances == {}


def test_desired_state_of_a_missing_app_is_none(layout):
    assert desired_state(layout, APP) is None


# --- starting ------------------------------------------------------------------------


def test_sync_starts_one_instance_per_process_type(sup, fake, app, layout):
    sup.sync()
    assert states(sup) == {"web.1": "starting", "worker.1": "up"}
    assert [(argv, cwd) for argv, cwd, _ in fake.spawned] == [
        (["/bin/sh", "-c", "node server.js"], layout.build_dir(APP, "b1")),
        (["/bin/sh", "-c", "node worker.js"], layout.build_dir(APP, "b1")),
    ]


def test_sync_twice_starts_nothing_more(sup, fake, app):
    sup.sync()
    sup.sync(APP)
    sup.tick()
    assert len(fake.spawned) == 2


def test_an_instance_gets_the_release_config_and_its_own_names(sup, fake, layout):
    make_app(layout, procfile={"web": "serve"}, config={"MSG": "hi there", "PORT": "1"})
    sup.sync()
    env = fake.spawned[0][2]
    assert {k: env[k] for k in ("MSG", "PORT", "DYNO", "PS", "TINYSERV_APP", "TINYSERV_RELEASE")} == {
        "MSG": "hi there", "PORT": str(PORT), "DYNO": "web.1", "PS": "web.1", "TINYSERV_APP": APP,
        "TINYSERV_RELEASE": "v2"}
    assert env["PATH"].startswith(os.path.join(layout.build_dir(APP, "b1"), "bin") + ":")


def test_an_instance_records_what_it_runs(sup, fake, app):
    sup.sync()
    web = inst(sup, "web.1")
    assert {k: web[k] for k in ("name", "type", "version", "command", "pid", "pgid", "starttime", "restarts",
                                "exit_code", "next_try", "port", "since", "started")} == {
        "name": "web.1", "type": "web", "version": 2, "command": "node server.js", "pid": 100, "pgid": 100,
        "starttime": 1000, "restarts": 0, "exit_code": None, "next_try": None, "port": PORT,
        "since": 1000.0, "started": 1000.0}


@pytest.mark.parametrize("formation, expected", [
    ({"quantity": {"worker": 3}, "stopped": []}, ["web.1", "worker.1", "worker.2", "worker.3"]),
    ({"quantity": {"web": 0}, "stopped": []}, ["worker.1"]),
    ({"quantity": {"web": 0, "worker": 0}, "stopped": []}, []),
    ({"quantity": {"worker": 2}, "stopped": ["worker"]}, ["web.1"]),
    ({"quantity": {}, "stopped": ["web", "worker"]}, []),
])
def test_sync_respects_quantity_and_stopped_types(sup, layout, formation, expected):
    make_app(layout, formation=formation)
    sup.sync()
    assert sorted(sup.apps.get(APP, {})) == expected


def test_the_release_phase_is_never_started_as_a_process(sup, fake, app):
    sup.sync()
    assert all(argv[-1] != "./migrate" for argv, _, _ in fake.spawned)


def test_an_app_never_deployed_runs_nothing(sup, fake, layout):
    os.makedirs(layout.app_file(APP, "run"))
    releases.add(layout, APP, "Initial release", {}, by="test", app_port=PORT)
    sup.sync()
    sup.tick()
    assert fake.spawned == [] and states(sup) == {}


def test_web_is_up_only_once_its_port_accepts_connections(sup, fake, app):
    sup.sync()
    fake.now += 5
    sup.tick()
    assert states(sup) == {"web.1": "starting", "worker.1": "up"}
    fake.listening.add(PORT)
    fake.now += 1
    sup.tick()
    assert states(sup) == {"web.1": "up", "worker.1": "up"}
    assert inst(sup, "web.1")["since"] == 1006.0
    assert "tinyserv: web.1 accepts connections on port %d" % PORT in log_text(sup.layout)


# --- crashes ---------------------------------------------------------------------------


def test_an_instance_that_exits_is_restarted_at_once_the_first_time(sup, fake, app):
    sup.sync()
    worker = inst(sup, "worker.1")["pid"]
    fake.now += 10
    fake.exit(worker, 3)
    sup.tick()
    restarted = inst(sup, "worker.1")
    assert restarted["pid"] != worker and restarted["state"] == "up"
    assert (restarted["restarts"], restarted["exit_code"], restarted["streak"]) == (1, 3, 1)
    assert len(fake.spawned) == 3
    assert "tinyserv: worker.1 exited with 3, restarting now" in log_text(sup.layout)


def test_a_crashed_instance_group_is_killed_before_the_restart(sup, fake, app):
    sup.sync()
    worker = inst(sup, "worker.1")["pid"]
    fake.exit(worker, 1)
    sup.tick()
    assert (worker, signal.SIGKILL) in fake.signals


def test_an_idle_tick_looks_at_no_steady_instance_and_adopted_ones_only_every_few_seconds(sup, fake, app):
    from tinyserv.supervise.supervisor import ADOPTED_CHECK
    sup.sync()
    looked = []
    real_alive, real_reap = fake.alive, fake.reap
    fake.alive = lambda pid, started=None: looked.append(pid) or real_alive(pid, started)
    fake.reap = lambda pid: looked.append(pid) or real_reap(pid)
    fake.listening.add(PORT)
    sup.tick()  # an event tick looks at everything: web.1 is seen listening
    assert states(sup) == {"web.1": "up", "worker.1": "up"}
    for _ in range(20):
        looked.clear()
        fake.now += 0.5
        sup.tick(events=False)
        assert looked == []  # children: their end comes as SIGCHLD (events=True), no /proc read meanwhile
    worker = inst(sup, "worker.1")
    worker["child"] = False  # as if adopted from a previous supervisor: no SIGCHLD when it ends
    sup.counted = None  # the census is made anew after a change, as after take_over's
    fake.exit(worker["pid"], 1)
    fake.exit_codes.clear()
    fake.now += 0.1
    sup.tick(events=False)
    if inst(sup, "worker.1")["pid"] == worker["pid"]:  # not yet due: seen within ADOPTED_CHECK s
        fake.now += ADOPTED_CHECK
        sup.tick(events=False)
    assert inst(sup, "worker.1")["pid"] != worker["pid"]
    assert "worker.1 exited" in log_text(sup.layout)


def test_a_child_that_ends_is_seen_at_the_tick_its_signal_brings(sup, fake, app):
    sup.sync()
    sup.tick()
    worker = inst(sup, "worker.1")["pid"]
    fake.exit(worker, 4)
    fake.now += 0.5
    sup.tick(events=False)
    assert inst(sup, "worker.1")["pid"] == worker  # an idle tick does not look
    sup.tick(events=True)  # SIGCHLD woke the loop
    assert inst(sup, "worker.1")["pid"] != worker
    assert "worker.1 exited with 4" in log_text(sup.layout)


def test_a_crash_loop_waits_longer_before_each_restart(sup, fake, app):
    sup.sync()
    delays = []
    for crash in range(1, 7):
        fake.now += 1
        fake.exit(inst(sup, "worker.1")["pid"], 1)
        sup.tick()
        worker = inst(sup, "worker.1")
        if worker["state"] == "crashed":
            delay = worker["next_try"] - fake.now
            fake.now += delay - 0.5
            sup.tick()
            assert inst(sup, "worker.1")["state"] == "crashed"  # not before its time
            fake.now += 0.5
            sup.tick()
            delays.append(delay)
        else:
            delays.append(0)
        assert inst(sup, "worker.1")["state"] == "up"
        assert inst(sup, "worker.1")["restarts"] == crash
    assert delays == [0, 2, 4, 8, 16, 32]


def test_a_crashed_instance_shows_its_next_try_and_exit_code(sup, fake, app):
    sup.sync()
    for code in (1, 2):
        fake.now += 1
        fake.exit(inst(sup, "worker.1")["pid"], code)
        sup.tick()
    worker = inst(sup, "worker.1")
    assert (worker["state"], worker["next_try"], worker["exit_code"], worker["restarts"]) == (
        "crashed", fake.now + 2, 2, 2)
    assert "tinyserv: worker.1 exited with 2, restarting in 2s" in log_text(sup.layout)


def test_an_instance_that_ran_longer_than_stable_after_restarts_at_once(sup, fake, app):
    sup.sync()
    for _ in range(4):  # a crash loop builds up a long backoff ...
        fake.exit(inst(sup, "worker.1")["pid"], 1)
        sup.tick()
        fake.now = inst(sup, "worker.1")["next_try"] or fake.now
        sup.tick()
    assert inst(sup, "worker.1")["streak"] == 4
    fake.now += STABLE_AFTER  # ... then the instance runs fine for a while
    fake.exit(inst(sup, "worker.1")["pid"], 1)
    sup.tick()
    worker = inst(sup, "worker.1")
    assert (worker["state"], worker["streak"], worker["restarts"]) == ("up", 1, 5)


def test_a_web_that_exits_before_listening_is_restarted(sup, fake, app):
    sup.sync()
    web = inst(sup, "web.1")["pid"]
    fake.exit(web, 127)
    sup.tick()
    assert inst(sup, "web.1")["state"] == "starting" and inst(sup, "web.1")["exit_code"] == 127


# --- stopping and replacing ---------------------------------------------------------------


def test_a_new_release_replaces_running_instances_after_sigterm(sup, fake, app, layout):
    sup.sync()
    old = {name: i["pid"] for name, i in sup.apps[APP].items()}
    deploy(layout)
    sup.sync(APP)
    assert sorted(fake.sent(signal.SIGTERM)) == sorted(old.values())
    assert fake.sent(signal.SIGKILL) == []
    sup.tick()
    assert {name: (i["version"], i["state"]) for name, i in sup.apps[APP].items()} == {
        "web.1": (3, "starting"), "worker.1": (3, "up")}
    assert fake.spawned[-1][1] == layout.build_dir(APP, "b2")


def test_sigkill_comes_only_after_the_release_stop_timeout(sup, fake, app, layout):
    sup.sync()
    fake.ignore_sigterm = True
    old = sorted(i["pid"] for i in sup.apps[APP].values())
    deploy(layout, config={"TINYSERV_STOP_TIMEOUT": "5"})
    sup.sync(APP)
    assert sorted(fake.sent(signal.SIGTERM)) == old
    fake.now += 4.9
    sup.tick()
    assert fake.sent(signal.SIGKILL) == []
    assert states(sup) == {"web.1": "stopping", "worker.1": "stopping"}
    fake.now += 0.1
    sup.tick()
    assert sorted(fake.sent(signal.SIGKILL)) == old
    assert "tinyserv: web.1 did not stop in time: SIGKILL" in log_text(layout)
    sup.tick()
    assert {name: i["version"] for name, i in sup.apps[APP].items()} == {"web.1": 3, "worker.1": 3}


def test_the_old_instance_is_gone_before_its_replacement_starts(sup, fake, app, layout):
    sup.sync()
    fake.ignore_sigterm = True
    deploy(layout)
    sup.sync(APP)
    sup.tick()
    assert len(fake.spawned) == 2  # still the old ones, stopping


def stop_type(layout, ptype):
    path = layout.app_file(APP, "formation.json")
    saved = store.read_json(path)
    saved["stopped"].append(ptype)
    store.write_json(path, saved)


@pytest.mark.parametrize("change", [
    lambda layout: scale(layout, worker=0),
    lambda layout: stop_type(layout, "worker"),
], ids=["scaled to 0", "ps:stop"])
def test_scaling_to_zero_or_stopping_the_type_stops_the_instance(sup, fake, app, layout, change):
    sup.sync()
    worker = inst(sup, "worker.1")["pid"]
    change(layout)
    sup.sync(APP)
    assert fake.sent(signal.SIGTERM) == [worker]
    sup.tick()
    assert states(sup) == {"web.1": "starting"}
    assert "tinyserv: worker.1 stopped" in log_text(layout)


def test_scaling_to_zero_cancels_a_pending_restart(sup, fake, app, layout):
    sup.sync()
    for _ in range(2):
        fake.exit(inst(sup, "worker.1")["pid"], 1)
        sup.tick()
    assert inst(sup, "worker.1")["state"] == "crashed"
    scale(layout, worker=0)
    sup.sync(APP)
    fake.now += MAX_BACKOFF
    sup.tick()
    assert states(sup) == {"web.1": "starting"}
    assert len(fake.spawned) == 3


def test_scaling_up_starts_the_extra_instances(sup, fake, app, layout):
    sup.sync()
    scale(layout, worker=3)
    sup.sync(APP)
    assert states(sup) == {"web.1": "starting", "worker.1": "up", "worker.2": "up", "worker.3": "up"}
    assert fake.signals == []


def test_a_crashed_instance_of_an_old_release_is_replaced_at_once(sup, fake, app, layout):
    sup.sync()
    for _ in range(2):
        fake.exit(inst(sup, "worker.1")["pid"], 1)
        sup.tick()
    assert inst(sup, "worker.1")["state"] == "crashed"
    deploy(layout)
    sup.sync(APP)
    assert inst(sup, "worker.1")["state"] == "up" and inst(sup, "worker.1")["version"] == 3


def test_a_destroyed_app_has_its_instances_stopped(sup, fake, app, layout):
    sup.sync()
    os.unlink(layout.public_release(APP))
    sup.sync()
    assert sorted(fake.sent(signal.SIGTERM)) == [100, 101]
    sup.tick()
    assert APP not in sup.apps


@pytest.mark.parametrize("ptype, other", [("web", "worker"), ("worker", "web")])
def test_restart_replaces_the_type_and_resets_its_backoff(sup, fake, app, ptype, other):
    name = ptype + ".1"
    sup.sync()
    for _ in range(3):
        fake.exit(inst(sup, name)["pid"], 1)
        sup.tick()
        fake.now = inst(sup, name)["next_try"] or fake.now
        sup.tick()
    assert inst(sup, name)["streak"] == 3
    pid, untouched = inst(sup, name)["pid"], inst(sup, other + ".1")["pid"]
    sup.restart(APP, ptype)
    assert fake.sent(signal.SIGTERM) == [pid]
    sup.tick()
    assert (inst(sup, name)["restarts"], inst(sup, name).get("streak")) == (0, None)
    assert inst(sup, name)["state"] in ("starting", "up") and inst(sup, name)["pid"] != pid
    assert inst(sup, other + ".1")["pid"] == untouched
    fake.exit(inst(sup, name)["pid"], 1)
    sup.tick()
    assert inst(sup, name)["state"] != "crashed"  # first crash after a restart: again at once


@pytest.mark.parametrize("target, stopped", [
    (None, ["web.1", "worker.1"]),
    ("web", ["web.1"]),
    ("worker.1", ["worker.1"]),
    ("worker.2", []),
])
def test_restart_targets_all_a_type_or_one_instance(sup, fake, app, target, stopped):
    sup.sync()
    pids = {name: i["pid"] for name, i in sup.apps[APP].items()}
    sup.restart(APP, target)
    assert sorted(fake.sent(signal.SIGTERM)) == sorted(pids[n] for n in stopped)


@pytest.mark.parametrize("ptype, state", [("web", "starting"), ("worker", "up")])
def test_restart_of_a_crashed_type_starts_it_again_at_once(sup, fake, app, ptype, state):
    name = ptype + ".1"
    sup.sync()
    for _ in range(2):
        fake.exit(inst(sup, name)["pid"], 1)
        sup.tick()
    assert inst(sup, name)["state"] == "crashed"  # waiting 2 s before trying again
    sup.restart(APP, ptype)
    sup.save_dirty()  # what Server.handle does after a restart request
    sup.tick()
    assert name in sup.apps[APP], "%s was forgotten and never started again" % name
    assert (inst(sup, name)["state"], inst(sup, name)["restarts"]) == (state, 0)


def test_shutdown_stops_everything_and_then_is_idle(sup, fake, app, layout):
    sup.sync()
    assert not sup.idle()
    sup.shutdown()
    assert sorted(fake.sent(signal.SIGTERM)) == [100, 101]
    assert not sup.idle()  # still stopping
    sup.tick()
    assert sup.idle()
    assert store.read_json(layout.state_file(APP))["instances"] == []


def test_shutdown_sigkills_what_ignores_sigterm_after_the_grace(sup, fake, app):
    sup.sync()
    fake.ignore_sigterm = True
    sup.shutdown()
    fake.now += 30
    sup.tick()
    assert sorted(fake.sent(signal.SIGKILL)) == [100, 101]
    sup.tick()
    assert sup.idle()


def test_shutdown_starts_nothing_even_when_an_instance_crashes(sup, fake, app):
    sup.sync()
    fake.ignore_sigterm = True
    sup.shutdown()
    fake.exit(100, 1)
    fake.exit(101, 1)
    sup.tick()
    assert len(fake.spawned) == 2 and sup.idle()


# --- state on disk and adoption ------------------------------------------------------------


def test_state_json_lists_the_instances(sup, fake, app, layout):
    sup.sync()
    sup.save_dirty()
    saved = store.read_json(layout.state_file(APP))
    assert saved["supervisor"] == os.getpid()
    assert [(i["name"], i["state"], i["pid"], i["version"]) for i in saved["instances"]] == [
        ("web.1", "starting", 100, 2), ("worker.1", "up", 101, 2)]
    assert all("reader" not in i for i in saved["instances"])


def test_state_json_follows_each_tick(sup, fake, app, layout):
    sup.sync()
    fake.listening.add(PORT)
    sup.tick()
    assert {i["name"]: i["state"] for i in store.read_json(layout.state_file(APP))["instances"]} == {
        "web.1": "up", "worker.1": "up"}


def saved_instance(name, pid, state="up", version=2, fifo="/nonexistent/fifo"):
    return {"name": name, "type": name.split(".")[0], "version": version, "command": "x", "pid": pid,
            "pgid": pid, "starttime": pid * 10, "child": True, "state": state, "since": 1.0,
            "started": 1.0, "restarts": 0, "exit_code": None, "next_try": None, "fifo": fifo, "port": PORT}


def test_adopt_takes_over_live_instances_and_starts_no_duplicate(sup, fake, app, layout):
    fifo = layout.app_file(APP, "run", "web.1.fifo")
    os.mkfifo(fifo)
    store.write_json(layout.state_file(APP), {"instances": [
        saved_instance("web.1", 500, fifo=fifo), saved_instance("worker.1", 501)]})
    fake.running.update({500: 5000, 501: 5010})
    sup.adopt()
    sup.sync()
    assert fake.spawned == []
    assert {n: (i["pid"], i["child"]) for n, i in sup.apps[APP].items()} == {
        "web.1": (500, False), "worker.1": (501, False)}
    assert "tinyserv: web.1 adopted by a new supervisor (pid %d)" % os.getpid() in log_text(layout)


def test_an_adopted_instance_that_dies_is_restarted(sup, fake, app, layout):
    store.write_json(layout.state_file(APP), {"instances": [saved_instance("worker.1", 501)]})
    fake.running.update({501: 5010})
    sup.adopt()
    sup.sync()
    del fake.running[501]  # not our child: no exit code to reap
    sup.tick()
    worker = inst(sup, "worker.1")
    assert (worker["state"], worker["restarts"], worker["exit_code"], worker["child"]) == ("up", 1, None, True)
    assert "tinyserv: worker.1 exited, restarting now" in log_text(layout)


@pytest.mark.parametrize("saved, running", [
    (saved_instance("worker.1", 501), {}),  # dead
    (saved_instance("worker.1", 501), {501: 9999}),  # pid reused by another process
    (saved_instance("worker.1", 501, state="crashed"), {501: 5010}),
])
def test_adopt_leaves_dead_or_reused_pids_and_starts_afresh(sup, fake, app, layout, saved, running):
    store.write_json(layout.state_file(APP), {"instances": [saved]})
    fake.running.update(running)
    sup.adopt()
    sup.sync()
    assert [argv[-1] for argv, _, _ in fake.spawned] == ["node server.js", "node worker.js"]
    assert inst(sup, "worker.1")["pid"] != 501


def adopt_in_root_mode(sup, monkeypatch, uid=4242):
    """sup.adopt() as in root mode, where APP's own user has uid (then back: starting needs real accounts)."""
    from tinyserv.platform.users import Account
    from tinyserv.supervise import ondisk
    monkeypatch.setattr(ondisk.privileged, "find_account", lambda layout, app: Account("ts-" + app, uid, uid, "/h"))
    sup.root_mode = True
    sup.adopt()
    sup.root_mode = False


def test_root_mode_adopts_a_leader_of_the_apps_own_user_carrying_its_mark(sup, fake, app, layout, monkeypatch):
    mark = layout.app_marks(APP) + "worker.1@1"
    store.write_json(layout.state_file(APP), {"instances": [dict(saved_instance("worker.1", 501), mark=mark)]})
    fake.running[501], fake.marks[501], fake.owners[501] = 5010, mark, 4242
    adopt_in_root_mode(sup, monkeypatch)
    sup.sync()
    assert inst(sup, "worker.1")["pid"] == 501 and [argv[-1] for argv, _, _ in fake.spawned] == ["node server.js"]


@pytest.mark.parametrize("owner, marked, why", [
    (0, True, "root's process"), (4242, False, "a process without the instance's mark")])
def test_root_mode_never_adopts_or_signals_a_pid_the_deploy_users_state_names_falsely(
        sup, fake, app, layout, monkeypatch, owner, marked, why):
    """state.json is the deploy user's to write: a pid it names is adopted (and later signalled by root) only
    when it leads a group of the app's own user and carries the app's mark."""
    mark = layout.app_marks(APP) + "worker.1@1"
    store.write_json(layout.state_file(APP), {"instances": [dict(saved_instance("worker.1", 501), mark=mark)]})
    fake.running[501], fake.owners[501] = 5010, owner
    if marked:
        fake.marks[501] = mark
    adopt_in_root_mode(sup, monkeypatch)
    sup.sync()
    assert inst(sup, "worker.1")["pid"] != 501, why
    assert "worker.1 not adopted: pid 501 is not one of this app's processes" in log_text(layout)
    if not marked:
        assert 501 in fake.running and not [s for s in fake.signals + fake.pid_signals if s[0] == 501], why


def test_an_adopted_instance_of_an_old_release_is_replaced(sup, fake, app, layout):
    store.write_json(layout.state_file(APP), {"instances": [saved_instance("worker.1", 501, version=1)]})
    fake.running.update({501: 5010})
    sup.adopt()
    sup.sync()
    assert fake.sent(signal.SIGTERM) == [501]
    sup.tick()
    assert inst(sup, "worker.1")["version"] == 2


def test_an_adopted_stopping_instance_is_killed_soon(sup, fake, app, layout):
    store.write_json(layout.state_file(APP), {"instances": [saved_instance("worker.1", 501, state="stopping")]})
    fake.running.update({501: 5010})
    fake.ignore_sigterm = True
    sup.adopt()
    fake.now += 1
    sup.tick()
    assert fake.sent(signal.SIGKILL) == [501]


# --- output -------------------------------------------------------------------------------


def test_instance_output_is_stamped_into_the_app_log(sup, fake, layout):
    make_app(layout, procfile={"worker": "w"})
    fake.output = b"hello\nworld \xe2\xac\xa2\nno newline"
    sup.sync()
    fd = inst(sup, "worker.1")["reader"]
    assert sup.read_output(fd) is True
    assert sup.read_output(fd) is False  # end of file: the fake wrote and closed its end
    text = log_text(layout)
    assert "Z worker.1: hello\n" in text
    assert "Z worker.1: world ⬢\n" in text
    assert "Z worker.1: no newline\n" in text


def test_forgetting_an_instance_removes_its_pipe(sup, fake, app, layout):
    sup.sync()
    fifo = inst(sup, "worker.1")["fifo"]
    assert os.path.exists(fifo)
    scale(layout, worker=0)
    sup.sync(APP)
    sup.tick()
    assert not os.path.exists(fifo)
    assert len(sup.streams) == 1  # web.1's


# --- control requests --------------------------------------------------------------------------


@pytest.mark.parametrize("message, reply", [
    ({"cmd": "ping"}, {"ok": True}),
    ({"cmd": "sync", "app": APP}, {"ok": True}),
    ({"cmd": "restart", "app": APP, "target": "web"}, {"ok": True}),
    ({"cmd": "bogus"}, {"ok": False, "error": "unknown request 'bogus'"}),
    ({}, {"ok": False, "error": "unknown request None"}),
])
def test_the_server_answers_control_requests(sup, app, message, reply):
    answer = Server(sup, "unused.sock").handle(message)
    answer.pop("pid", None)
    assert answer == reply


def test_an_adopted_instance_whose_end_is_watched_is_not_looked_at_until_it_ends(sup, fake, app):
    from tinyserv.supervise.supervisor import ADOPTED_CHECK
    ends, _ = os.pipe()
    fake.exit_fd = lambda pid: os.dup(ends)  # as pidfd_open: a descriptor that turns readable at the end
    sup.sync()
    fake.listening.add(PORT)
    sup.tick()
    worker = inst(sup, "worker.1")
    worker["child"] = False  # adopted: no SIGCHLD when it ends
    fake.now += ADOPTED_CHECK
    sup.tick(events=False)  # the adopted look, once: from then on its end is watched
    assert worker["pid"] in sup.exit_fds
    looked = []
    real_alive = fake.alive
    fake.alive = lambda pid, started=None: looked.append(pid) or real_alive(pid, started)
    for _ in range(10):
        fake.now += ADOPTED_CHECK
        sup.tick(events=False)
    assert looked == []  # no /proc read per adopted instance every ADOPTED_CHECK s
    fake.exit(worker["pid"], 1)
    fake.exit_codes.clear()
    sup.exit_seen(sup.exit_fds[worker["pid"]])  # what the loop does when the descriptor turns readable
    sup.tick(events=True)
    assert worker["pid"] not in sup.exit_fds and inst(sup, "worker.1")["pid"] != worker["pid"]
    assert "worker.1 exited" in log_text(sup.layout)
    os.close(ends)


def test_a_tick_looks_at_the_app_an_event_named_and_at_the_apps_that_are_changing_only(sup, fake, layout):
    # Ten apps; one is being changed (its worker stops after a scale-down): the ticks meanwhile, and a tick for
    # an event of that app, look at no instance of the nine others (no /proc read for them, however many).
    ends, _ = os.pipe()
    fake.exit_fd = lambda pid: os.dup(ends)  # as pidfd_open: children's ends come as events naming their app
    names = ["app%d" % n for n in range(10)]
    for n, name in enumerate(names):
        make_app(layout, procfile={"worker": "node worker.js"}, app=name, port=PORT + n)
    sup.sync()
    sup.tick()
    assert all(states(sup, name) == {"worker.1": "up"} for name in names)
    others = {inst(sup, "worker.1", name)["pid"] for name in names[1:]}
    looked = []
    real_alive, real_reap = fake.alive, fake.reap
    fake.alive = lambda pid, started=None: looked.append(pid) or real_alive(pid, started)
    fake.reap = lambda pid: looked.append(pid) or real_reap(pid)
    scale(layout, app="app0", worker=0)
    sup.sync("app0")
    sup.tick(events={"app0"})  # what the loop passes after that sync
    fake.now += 0.05
    sup.tick(events=False)
    assert states(sup, "app0") in ({}, {"worker.1": "stopping"})
    assert looked and not set(looked) & others, looked
    os.close(ends)


def test_starting_webs_are_seen_listening_from_one_table_of_sockets_per_tick(sup, fake, app):
    asked = []
    fake.listening_table = lambda ports: asked.append(sorted(ports)) or {PORT: {"socket:[7]"}}
    fake.group_holds = lambda pgid, sockets: sockets == {"socket:[7]"} and pgid == inst(sup, "web.1")["pgid"]
    fake.accepts = lambda port, pgid: pytest.fail("a web was asked about on its own")
    sup.sync()
    sup.tick()
    assert states(sup) == {"web.1": "up", "worker.1": "up"} and [a for a in asked if a] == [[PORT]]


def test_a_crashed_child_with_no_pidfd_left_does_not_make_every_sigchld_a_look_at_every_instance(sup, fake, app):
    ends, _ = os.pipe()
    fake.exit_fd = lambda pid: os.dup(ends) if pid in fake.running else None  # as pidfd_open: none for the gone
    sup.sync()
    sup.tick()
    worker = inst(sup, "worker.1")["pid"]
    fake.exit(worker, 4)
    sup.exit_seen(sup.exit_fds[worker])  # what the loop does when its pidfd turns readable
    sup.tick(events=sup.take_events())
    assert inst(sup, "worker.1")["pid"] != worker and "worker.1 exited with 4" in log_text(sup.layout)
    assert not sup.blind_children  # pidfds work here: a process that is gone just has none
    os.close(ends)
