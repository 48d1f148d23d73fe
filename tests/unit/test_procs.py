"""procs.py against real processes: marks find daemons that left their process group, and stop() ends them."""

import os
import socket
import subprocess
import sys

import pytest

from tinyserv.common import processes
from tinyserv.platform import procs
from tinyserv.common.errors import TinyservError
from support import wait_until

DAEMON = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nelse:\n    print(os.getpid(), flush=True)\n    time.sleep(60)\n"


def start(mark, code=DAEMON):
    """A process tree in its own session with TINYSERV_INSTANCE=mark whose child escapes into a session of its own."""
    env = dict(os.environ, TINYSERV_INSTANCE=mark)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, start_new_session=True)
    proc.stdout.readline()
    return proc


def test_marks_find_a_daemon_that_left_the_process_group_and_nothing_else():
    mine, other = start("t1:app:web.1@1"), start("t1:other:web.1@1")
    try:
        found = wait_until(lambda: [p for p, _ in procs.marked(["t1:app:web.1@1"])] if len(
            procs.marked(["t1:app:web.1@1"])) == 2 else None, 10, message="both processes of the mark")
        assert mine.pid in found
        assert all(procs.proc_stat(p)[1] != mine.pid for p in found if p != mine.pid), "the daemon has its own group"
        assert not {p for p, _ in procs.marked(["t1:app:"])} & {p for p, _ in procs.marked(["t1:other:"])}
        assert procs.marked(["t1:app:web.1@"]) == [], "a mark without ':' matches exactly"
    finally:
        procs.stop_groups([mine.pid, other.pid], grace=1, marks=["t1:app:", "t1:other:"])
        mine.wait(), other.wait()


def test_stop_groups_ends_the_group_and_its_escaped_daemon():
    proc = start("t2:app:web.1@1")
    assert len(wait_until(lambda: procs.marked(["t2:app:"]) if len(procs.marked(["t2:app:"])) == 2 else None,
                          10, message="two marked processes")) == 2
    assert procs.stop_groups([proc.pid], grace=5, marks=["t2:app:web.1@1"]) == []
    proc.wait()
    assert procs.marked(["t2:app:"]) == []


def test_stop_turns_a_survivor_of_sigkill_into_the_project_error(monkeypatch):
    # A process stuck in the kernel (state D) cannot be made on demand; stand in for stop_groups' answer.
    monkeypatch.setattr(processes, "stop_groups", lambda pgids, grace, term, marks, power: [4242])
    with pytest.raises(TinyservError, match="stopping web.1: processes 4242 did not stop even after SIGKILL"):
        procs.stop([4242], grace=0, what="stopping web.1")


def test_stop_is_silent_when_everything_ended():
    proc = start("t3:app:web.1@1")
    procs.stop([proc.pid], grace=5, what="stopping web.1", marks=["t3:app:"])
    proc.wait()
    assert procs.marked(["t3:app:"]) == []


def test_without_proc_a_live_group_is_its_leader_and_nothing_is_found_by_mark(monkeypatch):
    """tinyserv local on macOS: no /proc, so procs can only ask whether a group exists."""
    real = os.listdir

    def listdir(path="."):
        if path == "/proc":
            raise FileNotFoundError(2, "No such file or directory", "/proc")
        return real(path)
    monkeypatch.setattr(procs.os, "listdir", listdir)
    assert procs.group_members(os.getpgid(0)) == [os.getpgid(0)]
    assert procs.marked_by("anything:") == {} and procs.marked(["anything:x:"]) == []


@pytest.fixture
def connected_pair():
    """A listener on a loopback port and one connection to it: (listener, client, accepted)."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    yield listener, client, accepted
    for s in (accepted, client, listener):
        s.close()


def inode_of(sock):
    return os.readlink("/proc/self/fd/%d" % sock.fileno())


@pytest.mark.parametrize("source", ["netlink", "proc"])
def test_tcp_sockets_finds_a_listener_and_both_ends_of_a_connection(connected_pair, monkeypatch, source):
    listener, client, accepted = connected_pair
    if source == "proc":  # a kernel that refuses sock_diag: /proc/net/tcp answers the same
        def refused(state, local=None, remote=None):
            raise OSError("sock_diag refused the request")
            yield
        monkeypatch.setattr(procs, "diag_sockets", refused)
    port = listener.getsockname()[1]
    assert (port, 0, procs.LISTEN, inode_of(listener)) in procs.tcp_sockets(procs.LISTEN)
    established = procs.tcp_sockets(procs.ESTABLISHED)
    assert (client.getsockname()[1], port, procs.ESTABLISHED, inode_of(client)) in established
    assert (port, client.getsockname()[1], procs.ESTABLISHED, inode_of(accepted)) in established
    assert all(row[2] == procs.LISTEN for row in procs.tcp_sockets(procs.LISTEN))
    assert procs.listening_sockets(port) == {inode_of(listener)}


@pytest.mark.parametrize("source", ["netlink", "proc"])
def test_a_port_asked_for_is_filtered_where_the_sockets_are_listed(connected_pair, monkeypatch, source):
    """The kernel returns only the sockets on that port (at 1,000 apps a boot check parsed 2,000 listeners)."""
    listener, client, accepted = connected_pair
    port = listener.getsockname()[1]
    others = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    try:
        if source == "proc":
            def refused(state, local=None, remote=None):
                raise OSError("sock_diag refused the request")
                yield
            monkeypatch.setattr(procs, "diag_sockets", refused)
        else:  # the kernel runs the filter: no fallback to /proc hidden behind tcp_sockets
            assert list(procs.diag_sockets(procs.LISTEN, local=port)) == [(port, 0, procs.LISTEN, inode_of(listener))]
        assert procs.tcp_sockets(procs.LISTEN, local=port) == [(port, 0, procs.LISTEN, inode_of(listener))]
        assert procs.tcp_sockets(procs.ESTABLISHED, remote=port) == [
            (client.getsockname()[1], port, procs.ESTABLISHED, inode_of(client))]
        assert procs.tcp_sockets(procs.LISTEN, local=others[0].getsockname()[1]) == [
            (others[0].getsockname()[1], 0, procs.LISTEN, inode_of(others[0]))]
    finally:
        for other in others:
            other.close()


def test_netlink_and_proc_agree_on_our_sockets(connected_pair):
    port = connected_pair[0].getsockname()[1]
    for state in (procs.LISTEN, procs.ESTABLISHED):
        ours = {row for row in procs.tcp_sockets(state) if port in row[:2]}
        table = {row for row in procs.proc_sockets() if row[2] == state and port in row[:2]}
        assert ours == table and len(ours) == (1 if state == procs.LISTEN else 2)


def test_leader_uid_names_the_owner_of_a_group_leader_only():
    """Root mode adopts a pid only when it leads its own group, owned by the app's user."""
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    follower = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # in our group
    try:
        assert procs.leader_uid(leader.pid) == os.getuid()
        assert procs.leader_uid(follower.pid) is None
    finally:
        for proc in (leader, follower):
            proc.kill()
            proc.wait()
    assert procs.leader_uid(leader.pid) is None  # gone


def test_listen_queues_sees_loopback_and_any_listeners_with_their_queues_and_not_others():
    import socket
    from tinyserv.platform import boot, procs
    with socket.socket() as loop, socket.socket(socket.AF_INET6) as any6, socket.socket() as other:
        loop.bind(("127.0.0.1", 0))
        loop.listen(3)
        any6.bind(("::", 0))
        any6.listen(5)
        other.bind(("127.0.0.2", 0))  # 127.0.0.1 does not reach it
        other.listen(5)
        ports = [s.getsockname()[1] for s in (loop, any6, other)]
        with socket.create_connection(("127.0.0.1", ports[0])):
            queues = procs.listen_queues()
            assert queues.get(ports[0]) == (1, 3)  # one connection waits for accept(), of 3
        assert queues.get(ports[1]) == (0, 5) and ports[2] not in queues
        assert boot.answering(ports) == set(ports[:2])
        table = procs.listeners(ports)
        assert set(table) == set(ports[:2]) and all(len(inodes) == 1 for inodes in table.values())


def test_listen_queues_of_some_ports_has_the_kernel_pass_only_those_from_the_lowest_to_the_highest():
    import socket
    from tinyserv.platform import procs
    socks = [socket.socket() for _ in range(4)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
        ports = sorted(s.getsockname()[1] for s in socks)
        queues = procs.listen_queues(ports[1:3])
        assert set(ports[1:3]) <= set(queues) and not {ports[0], ports[3]} & set(queues)
        assert all(ports[1] <= port <= ports[2] for port in queues)
    finally:
        for s in socks:
            s.close()


def test_exit_fd_turns_readable_when_the_process_ends():
    import select
    import subprocess
    from tinyserv.platform import procs
    child = subprocess.Popen(["sleep", "30"])
    fd = procs.exit_fd(child.pid)
    try:
        assert fd is not None and select.select([fd], [], [], 0)[0] == []
        child.kill()
        assert select.select([fd], [], [], 5)[0] == [fd]
    finally:
        child.wait()
        os.close(fd)


def test_a_groups_listener_is_found_among_the_leaders_descendants_and_no_other_group_holds_it():
    import signal
    import subprocess
    import time
    from tinyserv.platform import procs
    import sys
    web = subprocess.Popen(["sh", "-c", '"$0" -S -m http.server 0 --bind 127.0.0.1 & wait', sys.executable],
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, port = time.monotonic() + 10, None
        while port is None and time.monotonic() < deadline:  # (a member may end between the look and the read)
            members = procs.descendants_in_group(web.pid)
            port = next((local for local, _, _, inode in procs.tcp_sockets(procs.LISTEN)
                         if procs.any_holds(members[1:], {inode})), None)
            time.sleep(0.05)
        assert port is not None and members[0] == web.pid and len(members) == 2
        assert procs.group_listens(web.pid, port)
        assert not procs.group_listens(os.getpgid(0), port)
        table = procs.listeners([port, port + 1])  # the supervisor's one dump for every starting web
        assert procs.group_holds(web.pid, table[port]) and not procs.group_holds(os.getpgid(0), table[port])
    finally:
        os.killpg(web.pid, signal.SIGKILL)
        web.wait()
