"""boot.check against real processes: the trial port is the kernel's choice, and another program may hold it."""

import os
import socket
import sys

import pytest

from tinyserv.platform import boot

# A web that listens on every address of $PORT, as node and most servers do (SO_REUSEADDR, then bind).
WEB = ('%s -c "import os, socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); '
       's.bind((\'0.0.0.0\', int(os.environ[\'PORT\']))); s.listen(); time.sleep(60)"' % sys.executable)


def trial(layout, tmp_path, web, keep):
    build_dir = tmp_path / "build"
    build_dir.mkdir(exist_ok=True)
    os.makedirs(layout.app_file("app", "run"), exist_ok=True)
    return boot.check(layout, "app", str(build_dir), {"procfile": {"web": web}}, {}, 2, 20, keep=keep)


@pytest.fixture
def squatter():
    """Another program listening on a port of every address (a port free_port just handed out, say)."""
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    yield s
    s.close()


@pytest.mark.parametrize("keep", [False, True], ids=["trial", "kept (front door)"])
def test_a_web_whose_trial_port_another_program_took_is_tried_again_on_a_new_port(layout, tmp_path, monkeypatch,
                                                                                 squatter, keep):
    taken = squatter.getsockname()[1]
    handed = [taken]
    real = boot.free_port
    monkeypatch.setattr(boot, "free_port", lambda: handed.pop() if handed else real())
    result = trial(layout, tmp_path, WEB, keep)
    try:
        assert isinstance(result, boot.Up), result
        assert result.port != taken and handed == []
    finally:
        if keep and isinstance(result, boot.Up):
            boot.stop_kept(layout, result.instance)


def test_a_web_that_exits_on_a_free_port_is_not_tried_again(layout, tmp_path, monkeypatch):
    chosen = []
    real = boot.free_port
    monkeypatch.setattr(boot, "free_port", lambda: chosen.append(real()) or chosen[-1])
    result = trial(layout, tmp_path, "exit 3", keep=False)
    assert isinstance(result, boot.Crashed) and result.exit_code == 3 and result.reason is None
    assert len(chosen) == 1


def test_a_port_bound_on_any_address_is_not_listenable_and_free_ports_are():
    with socket.socket() as elsewhere:  # a socket bound to an address other than 127.0.0.1 on its port
        elsewhere.bind(("0.0.0.0", 0))
        port = elsewhere.getsockname()[1]
        assert boot.bind_error(port) is not None
    assert all(boot.bind_error(boot.free_port()) is None for _ in range(20))
