"""services.py: platform services declared by a file, kept running by the supervisor (driven by tick, no sleeping)."""

import os
import signal

import pytest

from tinyserv.platform import services
from tinyserv.state import store
from tinyserv.common.errors import TinyservError

SPEC = dict(argv=["nginx", "-g", "daemon off;"], cwd="/srv", env={"PATH": "/usr/sbin"})


@pytest.fixture
def keeper(layout, fake):
    notes = []
    k = services.Keeper(layout, fake, notes.append)
    k.notes = notes
    return k


def running_pid(keeper, name="proxy"):
    svc = keeper.running.get(name)
    return svc["pid"] if svc and svc["state"] == "up" else None


def test_a_declared_service_is_started_with_its_argv_cwd_env_and_its_output_in_its_log(layout, fake, keeper):
    services.declare(layout, "proxy", **SPEC)
    keeper.reconcile()
    assert fake.spawned == [(SPEC["argv"], "/srv", dict(SPEC["env"], TINYSERV_INSTANCE=services.mark(layout, "proxy")))]
    assert os.path.exists(services.log_file(layout, "proxy"))
    saved = store.read_json(services.state_file(layout))["services"]["proxy"]
    assert saved["pid"] == running_pid(keeper) and saved["spec"]["argv"] == SPEC["argv"]


def test_a_service_that_dies_is_restarted_with_growing_backoff(layout, fake, keeper):
    services.declare(layout, "proxy", **SPEC)
    keeper.reconcile()
    delays = []
    for _ in range(4):
        first = running_pid(keeper)
        fake.exit(first, 1)
        keeper.tick()
        delay = keeper.running["proxy"]["next_try"] - fake.now
        delays.append(delay)
        fake.now += delay
        keeper.tick()
        assert running_pid(keeper) not in (None, first)
    assert delays == [0, 1, 2, 4]


def test_a_service_whose_declaration_changes_is_restarted_and_one_withdrawn_is_stopped(layout, fake, keeper):
    services.declare(layout, "proxy", **SPEC)
    keeper.reconcile()
    first = running_pid(keeper)
    services.declare(layout, "proxy", **dict(SPEC, argv=["nginx", "-c", "/other.conf"]))
    keeper.reconcile()
    assert (first, signal.SIGTERM) in fake.signals
    keeper.tick()  # the old one has ended: the new declaration starts
    assert running_pid(keeper) not in (None, first)
    assert fake.spawned[-1][0] == ["nginx", "-c", "/other.conf"]
    second = running_pid(keeper)
    services.withdraw(layout, "proxy")
    keeper.reconcile()
    keeper.tick()
    assert (second, signal.SIGTERM) in fake.signals and "proxy" not in keeper.running


def test_a_service_that_ignores_its_stop_signal_is_killed_after_its_grace(layout, fake, keeper):
    services.declare(layout, "proxy", grace=5, **SPEC)
    keeper.reconcile()
    pid = running_pid(keeper)
    fake.ignore_sigterm = True
    keeper.shutdown()
    keeper.tick()
    assert (pid, signal.SIGKILL) not in fake.signals
    fake.now += 5
    keeper.tick()
    assert (pid, signal.SIGKILL) in fake.signals
    keeper.tick()
    assert keeper.idle()


def test_a_new_keeper_adopts_a_running_service_instead_of_starting_another(layout, fake, keeper):
    services.declare(layout, "proxy", **SPEC)
    keeper.reconcile()
    pid = running_pid(keeper)
    successor = services.Keeper(layout, fake, lambda text: None)
    successor.adopt()
    successor.reconcile()
    assert running_pid(successor) == pid and len(fake.spawned) == 1


def test_a_damaged_declaration_names_its_file(layout, keeper):
    os.makedirs(services.services_dir(layout), exist_ok=True)
    with open(services.spec_file(layout, "proxy"), "w") as f:
        f.write('{"argv": "nginx"}')
    with pytest.raises(TinyservError, match="proxy.json is damaged"):
        keeper.reconcile()


def test_send_refuses_a_service_that_does_not_run(layout):
    with pytest.raises(TinyservError, match="the proxy service is not running"):
        services.send(layout, "proxy", signal.SIGHUP)


def test_a_service_whose_leader_is_a_zombie_while_its_threads_exit_is_not_gone_until_it_is_reaped(layout):
    # redis-server and node are multi-threaded: when the main thread ends first, /proc says 'Z' before waitpid
    # reports the process. Taken for gone then, it was never reaped: a zombie for good (the e2e test's pgrep).
    import subprocess
    import sys
    import time
    from tinyserv.platform import procs
    code = ("import ctypes, threading, time\nthreading.Thread(target=time.sleep, args=(1.0,)).start()\n"
            "ctypes.CDLL(None).pthread_exit(None)\n")  # the main thread ends, another goes on for a second
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        keeper = services.Keeper(layout, procs, lambda text: None)
        svc = {"pid": child.pid, "starttime": procs.starttime(child.pid), "child": True}
        deadline = time.monotonic() + 5
        while procs.proc_stat(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procs.proc_stat(child.pid)[0] == "Z" and not procs.alive(child.pid)  # the leader is a zombie ...
        assert not keeper.exited(svc)  # ... whose threads still run: not gone
        while not keeper.exited(svc) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert procs.proc_stat(child.pid) is None  # reaped by exited(): no zombie left
    finally:
        child.kill()
        child.wait()
