"""Root mode's request protocol without root: who may ask, descriptors passed along, a process as long as its caller."""

import json
import os
import socket
import threading

import pytest

from tinyserv.platform import privileged
from tinyserv.supervise import rootmode
from tinyserv.state import releases
from tinyserv.common.errors import TinyservError
from tinyserv.supervise.loop import Server
from tinyserv.supervise.supervisor import Supervisor

from .fakes import FakeSystem


@pytest.mark.parametrize("uid, owner, allowed", [
    (0, 1000, True),  # root
    (1000, 1000, True),  # the deploy user (the supervisor's own effective uid)
    (999, 1000, False),  # an app's user
    (65534, 1000, False),  # nobody
])
def test_only_root_and_the_supervisors_own_user_may_talk_to_it(uid, owner, allowed):
    why = rootmode.refusal(uid, owner)
    assert (why is None) == allowed
    if not allowed:
        assert why.startswith("uid %d may not use tinyserv's supervisor" % uid) and "\n" not in why


def test_the_peer_of_a_unix_socket_is_known_by_its_uid():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert rootmode.peer_uid(a) == os.getuid()


@pytest.mark.parametrize("app, expected", [
    ("web", "ts-web"),
    ("a" * 29, "ts-" + "a" * 29),  # 32 characters: Linux's limit, kept whole
    ("b" * 30, "ts-" + "b" * 22 + "-"),  # 33 would not fit: shortened, with a hash that keeps it unique
])
def test_an_apps_user_name_fits_linuxs_32_characters(app, expected):
    name = privileged.user_name(app)
    assert len(name) <= 32 and name.startswith(expected)


def test_the_user_names_of_two_long_apps_differ_where_they_are_cut():
    assert privileged.user_name("c" * 29 + "1") != privileged.user_name("c" * 29 + "2")


def test_single_user_mode_is_the_default_and_asks_nobody(layout):
    assert privileged.deploy_user(layout) is None
    assert privileged.enter(layout, environ={}) is None
    privileged.ensure_user(layout, "web")  # nothing to make, nothing asked: no supervisor runs here


def test_a_deploy_user_named_to_a_supervisor_that_is_not_root_is_refused_in_one_line(layout, monkeypatch):
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    with pytest.raises(TinyservError) as caught:
        privileged.enter(layout, environ={"TINYSERV_DEPLOY_USER": "deploy"})
    assert "TINYSERV_DEPLOY_USER is for a supervisor started as root" in str(caught.value)


def test_a_request_carries_descriptors_that_the_other_side_writes_into(layout):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(layout.supervisor_sock)
    listener.listen(1)
    read, write = os.pipe()
    try:
        conn = privileged.ask(layout, {"cmd": "exec", "argv": ["x"]}, [write])
        served, _ = listener.accept()
        with conn, served:
            text, fds = rootmode.receive(served)
            assert json.loads(text) == {"cmd": "exec", "argv": ["x"]} and len(fds) == 1
            os.write(fds[0], b"through the socket\n")
            os.close(fds[0])
        os.close(write)
        write = None
        assert os.read(read, 100) == b"through the socket\n"
    finally:
        listener.close()
        os.close(read)
        if write is not None:
            os.close(write)


def serving(layout, peer=None):
    """A supervisor Server on a real socket (fake processes), answering from a thread; returns (server, stop)."""
    server = Server(Supervisor(layout, FakeSystem()), layout.supervisor_sock)
    if peer is not None:
        server.peer_uid = lambda conn: peer
    server.listen()
    return server


def test_a_peer_that_is_neither_root_nor_the_deploy_user_is_refused_and_its_descriptors_closed(layout):
    server = serving(layout, peer=4242)
    read, write = os.pipe()
    try:
        conn = privileged.ask(layout, {"cmd": "exec", "app": "web"}, [write, write, write])
        os.close(write)
        server.serve_one()
        with pytest.raises(TinyservError) as caught:
            privileged.finish(conn, "exec")
        conn.close()
        assert str(caught.value) == ("the supervisor refused exec: uid 4242 may not use tinyserv's supervisor: "
                                     "only %s and root may" % rootmode._name(os.geteuid()))
        assert server.helpers == set()  # nothing was started for it
        assert os.read(read, 10) == b""  # the supervisor kept no copy of the descriptors it was sent
    finally:
        server.close()
        os.close(read)


def app_exists(layout, app="web"):
    os.makedirs(layout.app_dir(app))
    releases.add(layout, app, "Initial release", {}, app_port=5000)
    os.makedirs(layout.app_file(app, "builds", "b1"))
    return layout.app_file(app, "builds", "b1")


def served_in_thread(layout, listener):
    """Accept one request and answer it as the supervisor's helper would (here without root: as us)."""
    def answer():
        conn, _ = listener.accept()
        with conn:
            text, fds = rootmode.receive(conn)
            rootmode.serve(layout, conn, json.loads(text), fds)
    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def exec_request(layout, cwd, command, fds, mark=None):
    env = {"PATH": "/usr/bin:/bin", "TINYSERV_INSTANCE": mark or layout.mark("web", "run.1")}
    return privileged.Remote(privileged.ask(layout, {"cmd": "exec", "app": "web", "argv": ["/bin/sh", "-c", command],
                                                     "cwd": cwd, "env": env}, fds))


@pytest.fixture
def listener(layout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(layout.supervisor_sock)
    sock.listen(4)
    yield sock
    sock.close()


def test_an_exec_request_runs_on_the_callers_descriptors_and_answers_its_exit_code(layout, listener):
    cwd = app_exists(layout)
    thread = served_in_thread(layout, listener)
    read, write = os.pipe()
    proc = exec_request(layout, cwd, "echo out; echo err >&2; exit 7", [write, write, write])
    os.close(write)
    assert proc.wait() == 7
    thread.join(10)
    assert os.read(read, 100) == b"out\nerr\n"
    os.close(read)


def test_a_process_lives_as_long_as_its_callers_connection(layout, listener):
    cwd = app_exists(layout)
    thread = served_in_thread(layout, listener)
    read, write = os.pipe()
    proc = exec_request(layout, cwd, "echo $$; exec sleep 60", [write, write, write])
    os.close(write)
    pid = int(os.read(read, 100).split()[0])
    proc.stop(None)  # the caller goes away
    thread.join(10)
    assert not thread.is_alive()
    from tinyserv.platform.procs import alive
    assert not alive(pid)
    assert os.read(read, 100) == b""  # every holder of the output is gone
    os.close(read)


@pytest.mark.parametrize("request_, refusal", [
    ({"argv": "sh"}, "exec needs a command (a list of text)"),
    ({"cwd": "/etc"}, "exec runs only inside web's directory, not in '/etc'"),
    ({"env": {"PATH": "/bin"}}, "exec needs TINYSERV_INSTANCE="),
    ({"app": "other"}, "no app named 'other' on this server"),
])
def test_an_exec_request_out_of_bounds_is_refused_in_one_line_and_runs_nothing(layout, listener, request_, refusal):
    cwd = app_exists(layout)
    thread = served_in_thread(layout, listener)
    read, write = os.pipe()
    message = {"cmd": "exec", "app": "web", "argv": ["/bin/sh", "-c", "echo ran"], "cwd": cwd,
               "env": {"PATH": "/bin", "TINYSERV_INSTANCE": layout.mark("web", "run.1")}}
    message.update(request_)
    with privileged.ask(layout, message, [write, write, write]) as conn:
        os.close(write)
        with pytest.raises(TinyservError) as caught:
            privileged.finish(conn, "exec")
    thread.join(10)
    assert refusal in str(caught.value) and "\n" not in str(caught.value)
    assert os.read(read, 100) == b""
    os.close(read)


@pytest.mark.parametrize("instance", [
    {"pid": 1, "pgid": 1, "mark": "x"},  # init, with a mark that is not the app's
    {"pid": os.getpid(), "pgid": 1, "mark": None},  # a group that is not its own
])
def test_stopping_a_kept_web_is_refused_for_a_process_that_is_not_the_apps(layout, listener, instance):
    app_exists(layout)
    if instance["mark"] is None:
        instance["mark"] = layout.mark("web", "web.1@1")
    thread = served_in_thread(layout, listener)
    with privileged.ask(layout, {"cmd": "stop-kept", "app": "web", "instance": instance}) as conn:
        with pytest.raises(TinyservError) as caught:
            privileged.finish(conn, "stop-kept")
    thread.join(10)
    assert "is not one of web's" in str(caught.value)
