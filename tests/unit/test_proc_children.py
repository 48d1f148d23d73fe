"""procs.children: a process's live children from /proc/PID/task/*/children (nginx's workers, during a reload)."""

import os
import subprocess
import sys

from tinyserv.platform import procs


def test_children_lists_the_live_children_and_not_the_grandchildren_or_the_ended():
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\n"
                               "a = subprocess.Popen(['sleep', '30'])\n"
                               "b = subprocess.Popen(['sh', '-c', 'sleep 30 & wait'])\n"
                               "c = subprocess.Popen(['true']); c.wait()\n"
                               "print(a.pid, b.pid, flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    a = b = None
    try:
        a, b = (int(p) for p in parent.stdout.readline().split())
        found = procs.children(parent.pid)
        if found is None:  # a kernel without CONFIG_PROC_CHILDREN: callers fall back on group_members
            assert not os.path.exists("/proc/%d/task/%d/children" % (parent.pid, parent.pid))
            return
        assert sorted(found) == sorted([a, b])
        assert procs.children(os.getpid()) is not None and parent.pid in procs.children(os.getpid())
    finally:
        for pid in (a, b):  # b's own sleep ends with its 30 s
            if pid:
                os.kill(pid, 9)
        parent.kill()
        parent.wait()


def test_children_of_a_process_that_is_gone_is_none():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert procs.children(proc.pid) is None
