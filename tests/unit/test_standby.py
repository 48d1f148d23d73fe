"""The standby supervisor's locks: one standby at a time, it takes over when the supervisor's lock frees,
and it leaves instead when tinyserv was shut down. Real flocks; a thread plays the standby."""

import fcntl
import os
import threading

from tinyserv.platform import standby
from tinyserv.server.lifecycle import stand_by
from tinyserv.state.store import lock_held
from support import wait_until


def hold(path):
    """An fd holding an exclusive flock on path."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def waiting_here():
    """Does a flock of this process wait in /proc/locks? (Asking lock_held() would take the lock for a moment.)"""
    with open("/proc/locks") as f:
        return any(row.split()[1:3] == ["->", "FLOCK"] and str(os.getpid()) in row.split() for row in f)


class Standby(threading.Thread):
    """stand_by() in a thread (a flock taken through another open file blocks like another process's)."""

    def __init__(self, layout):
        super().__init__(daemon=True)
        self.layout = layout
        self.lock = "not returned"

    def run(self):
        self.lock = stand_by(self.layout)


def test_a_second_standby_leaves_at_once(layout):
    first = hold(layout.standby_lock)
    try:
        assert stand_by(layout) is None
    finally:
        os.close(first)


def test_the_standby_waits_for_the_supervisor_lock_then_takes_it_and_lets_the_next_standby_wait(layout):
    active = hold(layout.supervisor_lock)
    standby = Standby(layout)
    standby.start()
    try:
        wait_until(waiting_here, 10, interval=0.01, message="the standby to wait for the supervisor's lock")
        assert standby.is_alive() and lock_held(layout.standby_lock) and lock_held(layout.supervisor_lock)
    finally:
        os.close(active)  # the active supervisor dies
    standby.join(10)
    assert isinstance(standby.lock, int) and lock_held(layout.supervisor_lock)
    assert not lock_held(layout.standby_lock), "the next standby may wait now"
    os.close(standby.lock)


def test_the_standby_leaves_when_tinyserv_was_shut_down(layout):
    active = hold(layout.supervisor_lock)
    standby = Standby(layout)
    standby.start()
    wait_until(waiting_here, 10, interval=0.01, message="the standby to wait for the supervisor's lock")
    with open(layout.shutdown_marker, "w"):
        pass
    os.close(active)
    standby.join(10)
    assert standby.lock is None


def test_a_lock_nobody_holds_is_not_held_and_checking_takes_it_only_for_a_moment(layout):
    assert not lock_held(layout.supervisor_lock)
    fd = hold(layout.supervisor_lock)
    os.close(fd)


class Turns:
    """done for standby.watch: each wait() is one turn (PING_EVERY s on the clock), until the answers run out."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.now = 0.0
        self.turns = 0

    def wait(self, seconds):
        self.now += seconds if self.turns else 0
        self.turns += 1
        return self.turns > len(self.answers)

    def is_set(self):
        return False

    def ping(self, sock_path):
        return self.answers[self.turns - 1]


def watched(answers):
    """The times at which standby.watch killed the supervisor, given its answers to each ping."""
    turns, killed = Turns(answers), []
    standby.watch("sock", "lock", turns, lambda text: None, ping=turns.ping,
                  kill=lambda lock, note: killed.append(turns.now), clock=lambda: turns.now)
    return killed


def pings(seconds):
    return int(seconds / standby.PING_EVERY)


def test_a_supervisor_that_answers_is_left_alone():
    assert watched([True] * pings(600)) == []


def test_a_supervisor_silent_for_the_takeover_time_is_killed_once_it_has_been_that_long():
    silent = pings(standby.TAKEOVER_AFTER) + 1
    killed = watched([True, True] + [False] * silent)
    assert len(killed) == 1
    assert killed[0] - 2 * standby.PING_EVERY == standby.TAKEOVER_AFTER


def test_a_supervisor_that_answers_again_before_the_takeover_time_is_left_alone():
    almost = pings(standby.TAKEOVER_AFTER)
    assert watched(([False] * almost + [True]) * 5) == []


def test_the_standby_never_kills_itself_when_it_holds_the_lock(layout):
    active = hold(layout.supervisor_lock)  # this process holds it, as a test does
    try:
        notes = []
        standby.kill_holders(layout.supervisor_lock, notes.append)
        assert notes == []
    finally:
        os.close(active)
