"""Acting as another user: the privilege primitives a root-mode supervisor needs, and nothing that asks it.

A root-mode supervisor works as the deploy user (its effective uid; its real uid stays root) and takes
root back only within as_root() and the like. A child it starts becomes the app's user for good
(become) or sheds the root it could take back (shed_root) before exec. privileged.py says when.
"""

import collections
import os

APP_UMASK = 0o007  # the app's files: its own and the deploy group's, nobody else's

Account = collections.namedtuple("Account", "name uid gid home")


def can_switch():
    """Does this process work as another user while it may take root back (a root-mode supervisor)?"""
    return os.getuid() == 0 and os.geteuid() != 0


class as_user:
    """Within the block a root-mode supervisor acts as uid/gid (root: 0, 0); elsewhere nothing changes."""

    def __init__(self, uid=0, gid=0):
        self.target = (uid, gid)

    def __enter__(self):
        self.saved = (os.geteuid(), os.getegid())
        self.switch = self.saved != self.target and (os.getuid() == 0)
        if self.switch:
            self._set(*self.target)
        return self

    def __exit__(self, *exc):
        if self.switch:
            self._set(*self.saved)

    @staticmethod
    def _set(uid, gid):
        if os.geteuid() != 0:
            os.seteuid(0)
        os.setegid(gid)
        if uid != 0:
            os.seteuid(uid)


def as_root():
    """as_user(0, 0): for what only root may do (signal an app's process, make its user)."""
    return as_user(0, 0)


def as_owner_of(pid):
    """as_user with pid's uid and gid: /proc/PID/environ and fd of another user's process are readable to
    that user even where root lacks CAP_SYS_PTRACE (a container)."""
    info = os.stat("/proc/%d" % pid)
    return as_user(info.st_uid, info.st_gid)


def become(user):
    """In a child before exec: be user for good (no groups but its own, no way back), with the app's umask."""
    if os.geteuid() != 0:
        os.seteuid(0)  # a root-mode supervisor works as the deploy user; its real uid is root
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    os.umask(APP_UMASK)


def could_take_root_back():
    """Does this process work as another user while its real or saved uid is root (a root-mode supervisor)?"""
    return os.geteuid() != 0 and 0 in os.getresuid()


def shed_root():
    """In a child before exec: a process that works as another user but could take root back (its real or
    saved uid is 0) becomes that user for good. Nothing changes for a process that is simply root or not."""
    uid, gid = os.geteuid(), os.getegid()
    if could_take_root_back():
        os.seteuid(0)
        os.setgid(gid)
        os.setuid(uid)
