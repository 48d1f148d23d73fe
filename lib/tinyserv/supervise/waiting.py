"""Waiting on the supervisor: until a release's web instances are up (and routed, behind the front door).

Starting the supervisor and sending it requests is platform/control.py's.
"""

import os
import time

from tinyserv.state import appstate, releases
from tinyserv.platform.boot import SETTLE, Crashed, TimedOut, Up


def instances(layout, app):
    """The supervisor's last word on app's instances (list of dicts)."""
    return appstate.instances(layout, app)


def wait_for_web(layout, app, version, timeout, settle=SETTLE):
    """Wait until every web instance of release `version` is up and stays up for `settle` s.

    Returns boot.Up (also when the release runs no web), boot.Crashed when an instance
    crashed or restarted while we watched, or boot.TimedOut. Behind the front door an
    instance also counts once nginx sends it traffic ("routed"); old ones draining do not count.
    """
    deadline = time.monotonic() + timeout
    restarts = {}
    while True:
        newest = releases.current(layout, app)
        if newest and newest["version"] > version:
            # Another change (a concurrent ps:scale, say) superseded this release: watch that one.
            version, restarts = newest["version"], {}
        webs = [i for i in instances(layout, app) if i["type"] == "web" and i["version"] == version
                and not i.get("retired")]
        for i in webs:
            restarts.setdefault(i["name"], i.get("restarts", 0))
        failed = [i for i in webs if i["state"] == "crashed" or i.get("restarts", 0) > restarts[i["name"]]]
        if failed:
            return Crashed(failed[0].get("exit_code"), [], failed[0].get("reason"))
        if not webs and not expects_web(layout, app) and not still_routed(layout, app):
            return Up(None)
        # "since" is when the supervisor saw the instance accept connections; "answered", when it saw it
        # answer again SETTLE s later (supervise/health.py).
        if webs and all(i["state"] == "up" and time.time() - i["since"] >= settle and i.get("routed", True)
                        and i.get("answered") for i in webs):
            return Up(webs[0].get("port"))
        if time.monotonic() > deadline:
            return TimedOut(timeout, [])
        time.sleep(0.01)  # two small files read: the push's "done" follows the supervisor's word closely


def still_routed(layout, app):
    """Does nginx still send app's traffic to some web (it has none now: the old ones are draining)?"""
    from tinyserv.frontdoor import nginx
    prefix = nginx.Prefix(layout)
    if not os.path.exists(prefix.routes):
        return False
    site = (nginx.read_routes(prefix).get("sites") or {}).get(app)
    return bool(site and site.get("primary"))


def expects_web(layout, app):
    """Does the formation want at least one web instance?"""
    return appstate.wants_web(layout, app)


