"""Per-app limits: TINYSERV_MEMORY_LIMIT (the supervisor restarts an instance over it), TINYSERV_NOFILE and TINYSERV_NPROC."""

import os
import subprocess
import sys

import pytest

from tinyserv.platform import procs
from tinyserv.common import settings
from tinyserv.common.errors import TinyservError
from tinyserv.supervise.restarts import MEMORY_CHECK

from .test_supervisor import inst, log_text, make_app

WEB_ONLY = {"web": "node server.js"}
MB = 1024 * 1024


def test_an_instance_over_its_memory_limit_is_restarted_and_says_why(layout, fake, sup):
    make_app(layout, WEB_ONLY, config={"TINYSERV_MEMORY_LIMIT": "256"})
    sup.sync()
    first = inst(sup, "web.1")["pid"]
    fake.rss[first] = 200 * MB
    fake.now += MEMORY_CHECK
    sup.tick()
    assert inst(sup, "web.1")["pid"] == first, "under the limit: left alone"
    fake.rss[first] = 300 * MB
    fake.now += MEMORY_CHECK
    sup.tick()  # killed, scheduled to restart at once ...
    assert inst(sup, "web.1")["state"] == "crashed" and fake.running.get(first) is None
    sup.tick()  # ... which the next turn does
    again = inst(sup, "web.1")
    assert again["pid"] != first and again["restarts"] == 1 and again["reason"] == "memory"
    assert ("Error R15 (Memory quota exceeded): web.1 used 300 MB, over TINYSERV_MEMORY_LIMIT=256 MB; "
            "restarting it") in log_text(layout)


def test_without_a_memory_limit_nothing_is_measured(layout, fake, sup):
    make_app(layout, WEB_ONLY)
    sup.sync()
    fake.rss[inst(sup, "web.1")["pid"]] = 10 ** 12
    fake.now += MEMORY_CHECK
    sup.tick()
    assert inst(sup, "web.1")["restarts"] == 0


@pytest.mark.parametrize("config, limit", [
    ({}, None), ({"TINYSERV_MEMORY_LIMIT": "512"}, 512 * MB), ({"TINYSERV_MEMORY_LIMIT": "soon"}, None)])
def test_the_memory_limit_comes_from_the_config_in_mb(config, limit):
    assert settings.memory_limit(config) == limit


@pytest.mark.parametrize("key, value", [("TINYSERV_MEMORY_LIMIT", "8"), ("TINYSERV_MEMORY_LIMIT", "1G"),
                                        ("TINYSERV_NOFILE", "0"), ("TINYSERV_NOFILE", "lots"),
                                        ("TINYSERV_NPROC", "8"), ("TINYSERV_NPROC", "-1")])
def test_a_limit_it_cannot_take_is_refused(key, value):
    with pytest.raises(TinyservError, match=key):
        settings.check_app_setting(key, value)


@pytest.mark.parametrize("key, limit", [("TINYSERV_NOFILE", "RLIMIT_NOFILE"), ("TINYSERV_NPROC", "RLIMIT_NPROC")])
def test_a_limit_config_var_is_the_rlimit_of_a_spawned_process(tmp_path, key, limit):
    out = tmp_path / "out"
    code = "import resource; print(resource.getrlimit(resource.%s))" % limit
    with open(out, "w") as f:
        pid = procs.spawn([sys.executable, "-c", code], str(tmp_path), dict(os.environ, **{key: "100"}), f.fileno())
    os.waitpid(pid, 0)
    assert out.read_text().strip() == "(100, 100)"


def test_group_rss_adds_up_the_groups_processes():
    proc = subprocess.Popen([sys.executable, "-c", "b = bytearray(30 * 2 ** 20); input()"], stdin=subprocess.PIPE,
                            start_new_session=True)
    try:
        from support import wait_until
        assert wait_until(lambda: procs.group_rss(proc.pid) > 30 * MB, 10, message="30 MB resident")
    finally:
        proc.kill()
        proc.wait()
