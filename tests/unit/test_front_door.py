"""The supervisor with the front door: web on internal ports, switches without a gap, draining, nginx's reloads.

Driven by tick() with a fake system (nginx's master and workers are fake processes; a SIGHUP to the master
starts a new worker and retires the old one) and a fake door (nginx -t, the network) — no sleeping.
"""

import json
import select
import signal
import socket

import pytest

from tinyserv.platform import boot
from tinyserv.frontdoor import nginx, renewal, router
from tinyserv.state import releases, store
from tinyserv.supervise.supervisor import BUSY_POLL, POLL, Supervisor
from tinyserv.frontdoor.router import DROP_WAIT
from tinyserv.supervise.switching import DRAIN_AFTER, SETTLE
from .fakes import FakeSystem
from .test_supervisor import APP, PORT, deploy, log_text, make_app, scale

WEB = {"web": "node server.js"}
SETTLED = SETTLE + 0.01  # past the settle time (clock values are floats)


class FrontSystem(FakeSystem):
    """FakeSystem plus nginx: its workers, its reloads, internal ports and health checks."""

    def __init__(self):
        super().__init__()
        self.workers = {}  # nginx master pid -> its worker pids
        self.hups = []
        self.reloads = True  # does nginx take a new config on SIGHUP?
        self.ports = iter(range(40000, 41000))
        self.healthy_ports = set()
        self.taken = set()  # ports some other program listens on
        self.nginx_serves = True  # does a new nginx master start a worker?
        self.workers_linger = False  # do the workers of a killed master outlive the SIGKILL to its group a while?

    def spawn(self, argv, cwd, env, out_fd, keep_caps=False, user=None):
        pid = super().spawn(argv, cwd, env, out_fd)
        if argv[0] == "nginx":
            self.workers[pid] = [self.process()] if self.nginx_serves else []
        return pid

    def process(self):
        pid = self.next_pid
        self.next_pid += 1
        self.running[pid] = pid * 10
        return pid

    def group_members(self, pgid):
        return ([pgid] if pgid in self.running else []) + [w for w in self.workers.get(pgid, []) if w in self.running]

    def signal_group(self, pgid, sig):
        super().signal_group(pgid, sig)
        if sig == signal.SIGKILL and not self.workers_linger:  # the master's workers are in its group
            for worker in self.workers.get(pgid, []):
                self.running.pop(worker, None)

    def signal_pids(self, pids, sig):
        if sig != signal.SIGHUP:
            return super().signal_pids(pids, sig)
        for pid, _ in pids:
            self.hups.append(pid)
            if self.reloads and pid in self.workers:
                for old in self.workers[pid]:
                    self.running.pop(old, None)
                self.workers[pid] = [self.process()]

    def free_port(self):
        return next(self.ports)

    def healthy(self, port, path):
        return port in self.healthy_ports

    def port_taken(self, port):
        return port in self.taken


class FakeDoor:
    """nginx -t and the network, as data: what was tested and installed, what nginx refuses, open connections."""

    binary = "/usr/sbin/nginx"
    ipv6 = False

    def __init__(self, layout):
        self.conf = nginx.Prefix(layout).conf
        self.tested = []
        self.installed = []
        self.refuse = None
        self.blocked = {}  # port -> why nginx cannot listen there
        self.connections = {}  # port -> requests in flight

    def test(self, text, check=True):
        self.staged = text
        if not check:  # of a shape nginx -t accepted: written, not checked
            return None
        self.tested.append(text)
        return self.refuse

    def install(self):
        self.installed.append(self.staged)
        with open(self.conf, "w") as f:
            f.write(self.tested[-1])

    def listening_ports(self, pid):
        return set()

    def why_not_listenable(self, port):
        return self.blocked.get(port)

    def connections_to(self, port):
        return self.connections.get(port, 0)

    def service(self):
        return {"argv": ["nginx", "-c", "nginx.conf"], "cwd": "/", "env": {}}

    def serving(self, pid):
        return False

    @property
    def live(self):
        return self.installed[-1] if self.installed else ""


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


def settle(sup, fake, seconds=0.0):
    """Let time pass, then tick until nothing changes (nginx reloads and confirms within a few ticks)."""
    fake.now += seconds
    for _ in range(4):
        sup.tick()


def web(sup, name="web.1"):
    return sup.apps[APP][name]


def old_webs(sup):
    return [i for k, i in sup.apps[APP].items() if "~" in k]


def web_env(fake, name="web.1"):
    """The environment the newest instance called name was started with."""
    return [env for argv, cwd, env in fake.spawned if env.get("DYNO") == name][-1]


def upstream(door, app=APP):
    """The upstream servers of app in the config nginx runs: [(port, backup?)]."""
    text = door.live
    if "upstream %s.tinyserv {" % app not in text:
        return []
    body = text.split("upstream %s.tinyserv {" % app, 1)[1].split("}", 1)[0]
    return [(int(line.split(":")[1].split()[0].rstrip(";")), "backup" in line)
            for line in body.splitlines() if line.strip().startswith("server ")]


@pytest.fixture
def running(layout, fake, sup):
    """An app deployed once, its web up on its internal port and routed by nginx."""
    make_app(layout, procfile=WEB)
    sup.sync()
    fake.listening.add(web(sup)["port"])
    settle(sup, fake)
    settle(sup, fake, 60)  # up for a while
    assert web(sup)["state"] == "up" and web(sup)["routed"]
    return web(sup)


def test_web_listens_on_an_internal_port_and_nginx_holds_the_app_s_port(sup, fake, door, running):
    assert running["port"] == 40000 and running["port"] != PORT
    assert sup.services.running["nginx"]["state"] == "up"
    assert upstream(door) == [(running["port"], False)]  # nginx runs, and took the app's config
    assert web_env(fake)["PORT"] == "40000"
    assert upstream(door) == [(40000, False)]
    assert "listen %d;" % PORT in door.live
    assert store.read_json(sup.layout.public_release(APP))["web"] == [{"name": "web.1", "port": 40000}]


def test_a_new_release_s_web_gets_the_traffic_with_the_old_one_as_backup_then_the_old_one_drains(
        layout, sup, fake, door, running):
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    [old] = old_webs(sup)
    assert old["pid"] == running["pid"] and old["state"] == "up" and not fake.sent(signal.SIGTERM)
    assert web(sup)["port"] == 40001 and web(sup)["state"] == "starting"
    settle(sup, fake)
    assert upstream(door) == [(40000, False)]  # the new one does not listen yet: the old one serves alone

    fake.listening.add(40001)
    settle(sup, fake)
    assert upstream(door) == [(40001, False), (40000, True)]
    assert old["state"] == "up"

    settle(sup, fake, SETTLED)
    assert old["state"] == "draining" and upstream(door) == [(40001, False), (40000, True)]  # a drop waits ...
    settle(sup, fake, DROP_WAIT)
    assert old["state"] == "draining" and upstream(door) == [(40001, False)]  # ... DROP_WAIT s at most
    door.connections[40000] = 1  # a request that was in flight when the switch began
    settle(sup, fake, DRAIN_AFTER)
    assert old["state"] == "draining" and not fake.sent(signal.SIGTERM)
    door.connections[40000] = 0
    settle(sup, fake)
    assert fake.sent(signal.SIGTERM) == [old["pid"]]
    assert "web.1 of v2 is draining" in log_text(layout)


def test_a_draining_web_leaves_nginx_s_config_with_the_next_change_and_no_reload_of_its_own(
        layout, sup, fake, door, running):
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    fake.listening.add(40001)
    settle(sup, fake)
    settle(sup, fake, SETTLED)
    [old] = old_webs(sup)
    assert old["state"] == "draining" and upstream(door) == [(40001, False), (40000, True)]
    installed = len(door.installed)
    settle(sup, fake, DROP_WAIT / 2)
    assert len(door.installed) == installed  # no reload for the drop alone yet
    scale(layout, web=2)  # another change comes before DROP_WAIT is over: one reload does both
    sup.sync(APP)
    fake.listening.add(web(sup, "web.2")["port"])
    settle(sup, fake)
    assert upstream(door) == [(40001, False), (web(sup, "web.2")["port"], False)]
    assert len(door.installed) == installed + 1


def test_a_draining_web_that_ends_while_its_drop_waits_leaves_nginx_s_config_at_once(layout, sup, fake, door,
                                                                                      running):
    # Its port is free now: another app's new web may draw it, and nginx must not have it as this app's backup.
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    fake.listening.add(40001)
    settle(sup, fake)
    settle(sup, fake, SETTLED)
    [old] = old_webs(sup)
    assert old["state"] == "draining" and upstream(door) == [(40001, False), (40000, True)]
    fake.exit(old["pid"], 0)
    sup.tick(events={APP})  # what its exit_fd, or SIGCHLD, brings
    settle(sup, fake)
    assert upstream(door) == [(40001, False)]


def test_the_web_that_passed_the_boot_check_is_kept_as_the_live_one(layout, sup, fake, door, running):
    deploy(layout, WEB, build="b3")
    checked = fake.process()
    fake.listening.add(45000)
    spawned = len(fake.spawned)
    sup.sync(APP, candidate={"name": "web.1", "version": 3, "pid": checked, "pgid": checked,
                             "starttime": fake.running[checked], "fifo": None, "mark": "m", "port": 45000,
                             "since": fake.now, "started": fake.now})
    assert len(fake.spawned) == spawned  # no second boot
    assert web(sup)["pid"] == checked and web(sup)["state"] == "up" and web(sup)["port"] == 45000
    settle(sup, fake)
    assert upstream(door) == [(45000, False), (40000, True)]
    settle(sup, fake, SETTLED)
    settle(sup, fake, DROP_WAIT)
    assert upstream(door) == [(45000, False)]
    assert "web.1 of v3 is the web that passed the boot check, on port 45000" in log_text(layout)


def test_a_checked_web_of_a_superseded_release_is_stopped(layout, sup, fake, running):
    checked = fake.process()
    sup.sync(APP, candidate={"name": "web.1", "version": 9, "pid": checked, "pgid": checked,
                             "starttime": fake.running[checked], "fifo": None, "mark": "m", "port": 45000})
    assert checked in fake.sent(signal.SIGTERM)
    assert web(sup)["pid"] == running["pid"]


def test_an_undone_switch_serves_the_old_web_again_without_booting_it(layout, sup, fake, door, running):
    release = deploy(layout, WEB, build="b3")
    sup.sync(APP)
    releases.drop_last(layout, APP, release["version"])
    sup.sync(APP)
    assert web(sup)["pid"] == running["pid"] and not web(sup).get("retired")
    [new] = old_webs(sup)
    assert new["version"] == 3
    settle(sup, fake)
    assert upstream(door) == [(40000, False)]
    assert new["state"] in ("draining", "stopping")


def test_a_crashed_web_leaves_nginx_s_upstream_at_once_and_is_routed_again_only_once_it_listens_on_a_new_port(
        layout, sup, fake, door, running):
    scale(layout, web=2)
    sup.sync(APP)
    fake.listening.add(web(sup, "web.2")["port"])
    settle(sup, fake)
    port = web(sup, "web.2")["port"]
    assert upstream(door) == [(running["port"], False), (port, False)]
    fake.exit(web(sup, "web.2")["pid"], 1)
    settle(sup, fake)
    restarted = web(sup, "web.2")
    assert restarted["state"] == "starting" and restarted["port"] != port
    assert web_env(fake, "web.2")["PORT"] == str(restarted["port"])
    assert upstream(door) == [(running["port"], False)]  # neither the crashed port nor the one not yet listening
    fake.listening.add(restarted["port"])
    settle(sup, fake)
    assert upstream(door) == [(running["port"], False), (restarted["port"], False)]


def test_a_killed_nginx_starts_again_at_once_on_a_config_written_anew(layout, sup, fake, door, running):
    with open(door.conf, "w") as f:
        f.write("broken by hand {\n")
    for _ in range(5):
        master = sup.services.running["nginx"]["pid"]
        fake.exit(master, -9)
        settle(sup, fake)
        assert sup.services.running["nginx"]["pid"] != master and sup.services.running["nginx"]["state"] == "up"
        assert upstream(door) == [(running["port"], False)] and open(door.conf).read() == door.live


def test_a_killed_nginx_starts_again_once_its_workers_let_go_of_its_ports(layout, sup, fake, door, running):
    from tinyserv.frontdoor.starts import LEFTOVER_WAIT
    master = sup.services.running["nginx"]["pid"]
    [worker] = fake.workers[master]
    fake.workers_linger = True  # the SIGKILL to the group has not acted on the worker yet: it holds the ports
    fake.exit(master, -9)
    settle(sup, fake)
    assert sup.services.running["nginx"]["state"] == "crashed"  # not started on ports its old worker holds
    assert sup.poll_interval() == BUSY_POLL  # ... looked at again soon
    fake.running.pop(worker)
    settle(sup, fake)
    assert sup.services.running["nginx"]["pid"] != master and sup.services.running["nginx"]["state"] == "up"
    assert upstream(door) == [(running["port"], False)]
    master = sup.services.running["nginx"]["pid"]
    fake.exit(master, -9)  # a worker that never goes is waited for LEFTOVER_WAIT s at most
    settle(sup, fake)
    assert sup.services.running["nginx"]["state"] == "crashed"
    settle(sup, fake, LEFTOVER_WAIT)
    assert sup.services.running["nginx"]["pid"] != master and sup.services.running["nginx"]["state"] == "up"


def test_an_nginx_that_dies_before_it_serves_waits_longer_each_time_never_a_tight_loop(layout, sup, fake, door,
                                                                                         running):
    def nginx():
        return sup.services.running["nginx"]

    fake.nginx_serves = False  # from now on nginx dies before it starts a worker
    fake.exit(nginx()["pid"], -9)
    settle(sup, fake)
    assert nginx()["state"] == "up"  # it had served: started again at once
    for wait in (0.5, 1.0, 2.0):
        fake.exit(nginx()["pid"], 1)
        settle(sup, fake)
        assert sup.poll_interval() >= min(wait, POLL) - 0.01  # the loop sleeps until the next start is due
        settle(sup, fake, wait - 0.1)
        assert nginx()["state"] == "crashed"
        settle(sup, fake, 0.1)
        assert nginx()["state"] == "up"


def test_ps_restart_replaces_web_only_once_the_new_one_is_up(layout, sup, fake, door, running):
    sup.restart(APP, "web")
    [old] = old_webs(sup)
    assert old["state"] == "up" and web(sup)["state"] == "starting"
    settle(sup, fake, SETTLED)
    assert old["state"] == "up" and not fake.sent(signal.SIGTERM)
    fake.listening.add(web(sup)["port"])
    settle(sup, fake)
    settle(sup, fake, SETTLED)
    settle(sup, fake, DROP_WAIT)
    settle(sup, fake, DRAIN_AFTER)
    assert fake.sent(signal.SIGTERM) == [old["pid"]]


def test_scaling_web_down_drains_the_instances_no_longer_wanted(layout, sup, fake, door, running):
    scale(layout, web=3)
    sup.sync(APP)
    for name in ("web.2", "web.3"):
        fake.listening.add(web(sup, name)["port"])
    settle(sup, fake, 60)
    assert [p for p, _ in upstream(door)] == [40000, 40001, 40002]
    scale(layout, web=1)
    sup.sync(APP)
    leaving = sorted(i["pid"] for i in old_webs(sup))
    settle(sup, fake)
    assert upstream(door) == [(40000, False)] and len(leaving) == 2
    settle(sup, fake, DRAIN_AFTER)
    assert sorted(fake.sent(signal.SIGTERM)) == leaving


def test_scaling_web_to_zero_has_nginx_answer_no_web_processes_running(layout, sup, fake, door, running):
    scale(layout, web=0)
    sup.sync(APP)
    settle(sup, fake)
    assert upstream(door) == [] and '"H14"' in door.live


def test_a_draining_web_whose_requests_never_end_gets_sigterm_after_the_stop_timeout(layout, sup, fake, door,
                                                                                     running):
    deploy(layout, WEB, config={"TINYSERV_STOP_TIMEOUT": "5"}, build="b3")
    sup.sync(APP)
    fake.listening.add(web(sup)["port"])
    settle(sup, fake, SETTLED)
    door.connections[40000] = 1
    settle(sup, fake, 4)
    assert not fake.sent(signal.SIGTERM)
    settle(sup, fake, 31)  # the old web kept its own stop timeout (30 s, v2's)
    assert fake.sent(signal.SIGTERM) == [running["pid"]]


def test_a_config_nginx_refuses_changes_nothing_and_old_webs_keep_serving(layout, sup, fake, door, running):
    notes = []
    sup.note = notes.append
    sup.router.note = notes.append
    installed = len(door.installed)
    door.refuse = 'unknown directive "oops"'
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    fake.listening.add(web(sup)["port"])
    settle(sup, fake, SETTLED)
    settle(sup, fake, DRAIN_AFTER)
    assert len(door.installed) == installed and upstream(door) == [(40000, False)]
    assert not fake.sent(signal.SIGTERM)  # nginx still sends it traffic
    assert [n for n in notes if "refused" in n] == [
        'nginx refused the new config (the running one stays): unknown directive "oops"']
    door.refuse = None
    settle(sup, fake, 2)
    assert upstream(door) == [(40001, False)]


def test_a_reload_nginx_does_not_take_keeps_the_old_web_until_it_does(layout, sup, fake, door, running):
    fake.reloads = False
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    fake.listening.add(web(sup)["port"])
    settle(sup, fake, SETTLED)
    settle(sup, fake, router.RELOAD_TIMEOUT)
    assert not web(sup)["routed"] and not fake.sent(signal.SIGTERM)
    fake.reloads = True
    settle(sup, fake, router.APPLY_RETRY)
    settle(sup, fake, SETTLED + DRAIN_AFTER)
    assert web(sup)["routed"] and fake.sent(signal.SIGTERM) == [running["pid"]]


def test_an_app_port_another_program_holds_is_left_out_and_taken_once_it_is_free(layout, sup, fake, door):
    door.blocked[PORT] = "port %d is in use by another program" % PORT
    make_app(layout, procfile=WEB)
    sup.sync()
    fake.listening.add(web(sup)["port"])
    settle(sup, fake)
    assert "listen %d;" % PORT not in door.live and web(sup)["routed"]
    del door.blocked[PORT]
    settle(sup, fake, router.APPLY_RETRY)
    assert "listen %d;" % PORT in door.live


def test_a_web_with_a_health_check_is_up_only_once_its_path_answers(layout, sup, fake, door):
    make_app(layout, procfile=WEB)
    meta = store.read_json(layout.build_meta(APP, "b1"))
    store.write_json(layout.build_meta(APP, "b1"), dict(meta, healthcheck="/health"))
    sup.sync()
    fake.listening.add(40000)
    settle(sup, fake)
    assert web(sup)["state"] == "starting"
    fake.healthy_ports.add(40000)
    settle(sup, fake)
    assert web(sup)["state"] == "up"
    assert "web.1 accepts connections on port 40000 and answers /health" in log_text(layout)


def test_shutdown_stops_old_webs_at_once(layout, sup, fake, running):
    deploy(layout, WEB, build="b3")
    sup.sync(APP)
    sup.shutdown()
    assert running["pid"] in fake.sent(signal.SIGTERM)


def test_each_request_nginx_reports_is_a_router_line_in_the_app_log_naming_the_instance(layout, sup, running):
    assert sup.router.socket is not None
    fields = {"app": APP, "code": "", "method": "GET", "path": "/", "host": "localhost", "status": "200",
              "bytes": "12", "service": "0.003", "connect": "0.000", "upstream": "127.0.0.1:40000", "fwd": "1.2.3.4",
              "request_id": "r1", "protocol": "http"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"<190>Nov 28 05:41:35 tinyserv: " + json.dumps(fields).encode(), nginx.Prefix(layout).router_socket)
    assert select.select([sup.router.socket], [], [], 10)[0], "the router log's pump handed nothing over"
    sup.router_log()
    assert ('router: at=info method=GET path="/" host=localhost request_id=r1 fwd="1.2.3.4" dyno=web.1 connect=0ms '
            'service=3ms status=200 bytes=12 protocol=http') in log_text(layout)


def test_without_nginx_web_runs_on_the_app_s_port_as_before(layout):
    fake = FakeSystem()
    sup = Supervisor(layout, fake)
    try:
        make_app(layout, procfile=WEB)
        sup.sync()
        assert web_env(fake)["PORT"] == str(PORT) and not sup.router.enabled
    finally:
        sup.close()


def test_the_kept_boot_check_result_carries_what_the_supervisor_needs():
    up = boot.Up(41000, {"name": "web.1", "pid": 1}, ["listening"])
    assert up.port == 41000 and up.instance["name"] == "web.1" and boot.Up(5).instance is None


def test_automatic_certificates_are_looked_at_twice_a_day_by_a_certs_renew_of_its_own(layout, sup, fake, running):
    def renewals():
        return [argv for argv, cwd, env in fake.spawned if argv[-1] == "certs:renew"]
    settle(sup, fake, renewal.RENEW_EVERY)
    assert renewals() == []  # no app gets its certificate automatically
    store.write_json(layout.app_file(APP, "router.json"), {"acme": True})
    settle(sup, fake, renewal.RENEW_EVERY)
    assert len(renewals()) == 1
    settle(sup, fake, 3600)
    assert len(renewals()) == 1


def test_a_web_whose_port_another_program_took_while_it_was_down_comes_back_on_a_new_one(layout, sup, fake, door,
                                                                                      running):
    fake.exit(running["pid"], 1)
    fake.taken.add(running["port"])
    settle(sup, fake)
    assert web(sup)["port"] == 40001 and web_env(fake)["PORT"] == "40001"
    fake.listening.add(40001)
    settle(sup, fake)
    assert upstream(door) == [(40001, False)]
