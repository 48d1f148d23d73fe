"""What the supervisor keeps for each instance: the states that count as running, its key, its mark."""

RUNNING = ("starting", "up")


def retired_key(inst):
    """Where an old web waits while its replacement runs under its name: web.1~PID."""
    return "%s~%d" % (inst["name"], inst["pid"])


def one_line(error):
    """An exception as one line of text, for a log line or state.json."""
    return " ".join(str(error).split()) or type(error).__name__


def is_instance_mark(mark):
    """Does a TINYSERV_INSTANCE value belong to an instance (web.1@...), not a build or a one-off run?"""
    return "@" in mark.rsplit(":", 1)[-1]


def steady(inst):
    """Is inst running with nothing to wait for but its end (which SIGCHLD or its pipe closing tells of)?"""
    return inst["state"] == "up" and not inst.get("retired")


def unwatched(inst, exit_fds):
    """Is inst adopted (not our child, so no SIGCHLD) with no exit_fd telling of its end: looked at on a timer?"""
    return not inst.get("child") and inst["pid"] not in exit_fds
