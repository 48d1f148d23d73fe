"""What systemd's AmbientCapabilities=CAP_NET_BIND_SERVICE gives tinyserv reaches nginx, never an app.

Plays systemd with setpriv: a process of an unprivileged user (nobody) holding the capability as an ambient
one spawns children the way the supervisor does (procs.spawn); each child reports its own capabilities.
"""

import os

from support import run

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib")
NET_BIND_SERVICE = 1 << 10

SPAWNER = """import os, sys
sys.path.insert(0, sys.argv[-1])
from tinyserv.platform import procs
for keep in (False, True):
    r, w = os.pipe()
    pid = procs.spawn(["grep", "^CapEff:", "/proc/self/status"], "/", {"PATH": "/usr/bin:/bin"}, w, keep_caps=keep)
    os.close(w)
    os.waitpid(pid, 0)
    print(os.read(r, 4096).decode().split()[1])
"""


def test_a_process_the_supervisor_spawns_loses_the_capability_unless_it_is_kept_for_nginx():
    result = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=+net_bind_service",
                  "--ambient-caps=+net_bind_service", "/usr/bin/python3", "-c", SPAWNER, LIB])
    app, nginx = (int(word, 16) for word in result.stdout.split())
    assert app & NET_BIND_SERVICE == 0, result.stdout  # an app: no capability at all
    assert nginx & NET_BIND_SERVICE, result.stdout  # nginx (keep_caps): may bind ports below 1024
