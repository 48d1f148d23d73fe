"""Web instances that stop answering, and a switch that outlives its supervisor: driven by tick() with the
front door's fakes (test_front_door.py) — no sleeping, no network."""

import signal

import pytest

from tinyserv.state import store
from tinyserv.supervise.health import CHECK_EVERY, FAILURES, RECHECK_EVERY
from tinyserv.supervise.supervisor import Supervisor
from .test_front_door import SETTLED, WEB, FakeDoor, FrontSystem, old_webs, settle, upstream, web
from .test_supervisor import APP, deploy, log_text, make_app


@pytest.fixture
def fake():
    return FrontSystem()


@pytest.fixture
def door(layout):
    return FakeDoor(layout)


@pytest.fixture
def sup(layout, fake, door):
    supervisor = Supervisor(layout, fake, door=door)
    yield supervisor
    supervisor.close()


@pytest.fixture
def running(layout, fake, sup):
    """An app deployed once, its web up on its internal port and routed by nginx."""
    make_app(layout, procfile=WEB)
    sup.sync()
    fake.listening.add(web(sup)["port"])
    settle(sup, fake)
    settle(sup, fake, 60)
    assert web(sup)["state"] == "up" and web(sup)["routed"]
    return web(sup)


def test_a_sync_asked_again_with_the_web_the_last_supervisor_took_keeps_it(layout, sup, fake, door, running):
    deploy(layout, WEB, build="b3")
    checked = fake.process()
    fake.listening.add(45000)
    candidate = {"name": "web.1", "version": 3, "pid": checked, "pgid": checked, "starttime": fake.running[checked],
                 "fifo": None, "mark": "m", "port": 45000, "since": fake.now, "started": fake.now}
    sup.sync(APP, candidate=candidate)
    sup.sync(APP, candidate=candidate)  # its answer was lost: the change asks again
    settle(sup, fake, SETTLED)
    assert web(sup)["pid"] == checked and web(sup)["state"] == "up"
    assert not [sig for pgid, sig in fake.signals if pgid == checked]


def test_a_new_web_that_stops_answering_before_the_switch_settles_is_restarted_and_the_old_one_serves_on(
        layout, sup, fake, door, running):
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    new = web(sup)
    fake.listening.add(new["port"])
    settle(sup, fake)
    assert new["state"] == "up" and upstream(door) == [(new["port"], False), (running["port"], True)]
    fake.listening.discard(new["port"])  # it closed its listener right after listen()
    settle(sup, fake, SETTLED)
    assert new["state"] == "crashed" and new["reason"] == "not answering" and new["exit_code"] is None
    [old] = old_webs(sup)
    assert old["pid"] == running["pid"] and old["state"] == "up", "the old web is kept: the switch can go back"
    assert "web.1 no longer answers connections on port %d" % new["port"] in log_text(layout)
    assert "web.1 stopped answering on port %d, restarting now" % new["port"] in log_text(layout)


def test_the_old_web_drains_only_once_the_new_one_answered_a_second_look(layout, sup, fake, door, running):
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    fake.listening.add(web(sup)["port"])
    settle(sup, fake)
    [old] = old_webs(sup)
    assert old["state"] == "up" and not web(sup).get("answered")
    settle(sup, fake, SETTLED)
    assert web(sup)["answered"] and old["state"] in ("draining", "stopping")


def test_a_web_that_stops_answering_is_said_to_and_restarted_after_repeated_looks(layout, sup, fake, door, running):
    fake.listening.discard(running["port"])
    settle(sup, fake, CHECK_EVERY)
    assert running["state"] == "up" and running["silent_since"] == fake.now and running["failures"] == 1
    assert "web.1 does not answer connections on port %d (1 of %d looks before a restart)" % (
        running["port"], FAILURES) in log_text(layout)
    for _ in range(FAILURES - 2):
        settle(sup, fake, RECHECK_EVERY)
    assert running["state"] == "up"
    settle(sup, fake, RECHECK_EVERY)
    assert running["state"] == "crashed" and running["reason"] == "not answering"
    assert running["pid"] in fake.sent(signal.SIGKILL)
    settle(sup, fake)
    assert web(sup)["pid"] != running["pid"] and web(sup)["restarts"] == 1


def test_a_web_that_answers_again_is_said_to_and_kept(layout, sup, fake, door, running):
    fake.listening.discard(running["port"])
    settle(sup, fake, CHECK_EVERY)
    fake.listening.add(running["port"])
    settle(sup, fake, RECHECK_EVERY)
    assert running["state"] == "up" and running["silent_since"] is None and running["failures"] == 0
    assert "web.1 answers again on port %d" % running["port"] in log_text(layout)


def test_a_web_with_a_health_check_is_looked_at_through_its_path(layout, fake, sup, door):
    make_app(layout, procfile=WEB)
    meta = store.read_json(layout.build_meta(APP, "b1"))
    store.write_json(layout.build_meta(APP, "b1"), dict(meta, healthcheck="/health"))
    sup.sync()
    port = web(sup)["port"]
    fake.listening.add(port)
    fake.healthy_ports.add(port)
    settle(sup, fake)
    settle(sup, fake, SETTLED)
    assert web(sup)["answered"]
    fake.healthy_ports.discard(port)  # it listens, but its health check fails
    settle(sup, fake, CHECK_EVERY)
    assert web(sup)["failures"] == 1
    assert "web.1 does not answer GET /health on port %d" % port in log_text(layout)


class Counting(FrontSystem):
    def __init__(self):
        super().__init__()
        self.looks = 0
        self.asked = []

    def answering(self, ports):
        self.looks += 1
        self.asked.append(sorted(ports))
        return super().answering(ports)


def test_each_web_is_looked_at_every_check_interval_not_at_every_tick(layout, door):
    fake = Counting()
    sup = Supervisor(layout, fake, door=door)
    try:
        make_app(layout, procfile=WEB)
        sup.sync()
        fake.listening.add(web(sup)["port"])
        settle(sup, fake, SETTLED)  # up
        settle(sup, fake, SETTLED)  # its first look, SETTLE after it was up
        fake.looks = 0
        for _ in range(int(CHECK_EVERY * 10) - 1):  # a tick every 0.1 s, for just under CHECK_EVERY
            fake.now += 0.1
            sup.tick()
        assert fake.looks == 1
    finally:
        sup.close()


def test_webs_due_on_the_same_beat_are_looked_at_with_one_dump_of_the_listening_sockets(layout, door):
    fake = Counting()
    sup = Supervisor(layout, fake, door=door)
    try:
        make_app(layout, procfile=WEB, app="one", port=5001)
        make_app(layout, procfile=WEB, app="two", port=5002)
        sup.sync()
        ports = sorted(i["port"] for instances in sup.apps.values() for i in instances.values())
        fake.listening.update(ports)
        settle(sup, fake, SETTLED)  # up
        settle(sup, fake, SETTLED)  # each one's first look, SETTLE after it was up
        fake.looks, fake.asked = 0, []
        for _ in range(int(CHECK_EVERY * 10) - 1):
            fake.now += 0.1
            sup.tick()
        assert fake.asked == [ports], fake.asked
    finally:
        sup.close()
