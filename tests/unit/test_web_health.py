"""Web instances that stop answering, and a switch that outlives its supervisor: driven by tick() with the
front door's fakes (test_front_door.py) — no sleeping, no network."""

import signal

import pytest

from tinyserv.supervise.supervisor import Supervisor
from .test_front_door import WEB, FakeDoor, FrontSystem, settle, web
from .test_supervisor import APP, deploy, make_app


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
    candidate = {"name": "web.1", "version": 3, "pid": checked, "pgid": checked, "starttime": fake.running[checked],
                 "fifo": None, "mark": "m", "port": 45000, "since": fake.now, "started": fake.now}
    sup.sync(APP, candidate=candidate)
    sup.sync(APP, candidate=candidate)  # its answer was lost: the change asks again
    assert web(sup)["pid"] == checked and checked not in fake.sent(signal.SIGTERM)
