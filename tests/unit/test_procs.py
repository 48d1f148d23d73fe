"""procs.py against real processes: marks find daemons that left their process group, and stop() ends them."""

import os
import subprocess
import sys

import pytest

from tinyserv import procs
from tinyserv.errors import TinyservError
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
    monkeypatch.setattr(procs, "stop_groups", lambda pgids, grace, term, marks: [4242])
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
