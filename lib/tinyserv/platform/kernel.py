"""The kernel setting the front door's router log needs, and how server:install asks for it.

nginx sends one datagram per request to the router socket (frontdoor/routerlog.py), and a Unix datagram socket
holds at most net.unix.max_dgram_qlen of them (10 on Debian): when the machine is saturated (thirty webs
starting on two cores, say) the reader can be off the CPU for longer than ten fast requests take, and nginx,
which never waits, drops the lines past that. 512 holds a second of a busy front door. The setting is per
network namespace and only root may change it; a socket keeps the length it was made with.
"""

from tinyserv.common.errors import TinyservError

DGRAM_QUEUE = "/proc/sys/net/unix/max_dgram_qlen"
SETTING = "net.unix.max_dgram_qlen"
WANTED = 512
SYSCTL_FILE = "/etc/sysctl.d/60-tinyserv.conf"


def dgram_queue(path=DGRAM_QUEUE):
    """How many datagrams a new Unix socket queues; None when the kernel does not say (not Linux)."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def how_to_set():
    """The commands an admin runs, as root, to set it now and at every boot."""
    return "echo %s=%d > %s && sysctl -p %s" % (SETTING, WANTED, SYSCTL_FILE, SYSCTL_FILE)


def tune(as_root, run, queue=None):
    """Set the queue length now and at boot when it is short and we may (as_root: the argument prefix that runs
    a command as root, None when we may not; run(argv, data=None) raises TinyservError). One line of what
    happened."""
    queue = dgram_queue() if queue is None else queue
    if queue is None or queue >= WANTED:
        return "kernel: %s is %s" % (SETTING, "not there (not Linux)" if queue is None else queue)
    if as_root is None:
        return "kernel: %s is %d (nginx drops router log lines past that): as root, %s" % (
            SETTING, queue, how_to_set())
    try:
        run(as_root + ["tee", SYSCTL_FILE], "%s = %d\n" % (SETTING, WANTED))
        run(as_root + ["sysctl", "-q", "-p", SYSCTL_FILE])
    except TinyservError as e:
        return "kernel: %s is %d and could not be set here (%s): in a container, set it on the host or with " \
               "docker run --sysctl %s=%d" % (SETTING, queue, str(e).splitlines()[0], SETTING, WANTED)
    return "kernel: %s set to %d (%s, at boot too)" % (SETTING, WANTED, SYSCTL_FILE)
