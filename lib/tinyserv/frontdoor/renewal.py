"""Automatic certificates: twice a day the supervisor runs `tinyserv-remote certs:renew` if an app uses an ACME server."""

import os
import sys

from tinyserv.state import appstate
from tinyserv.platform import services
from tinyserv.common.errors import TinyservError

from tinyserv import REMOTE_SCRIPT  # noqa: E402

RENEW_EVERY = 12 * 3600  # seconds between looks for automatic certificates to renew (certs:renew)


class Renewal:
    """The Router's certificate renewal: the certs:renew it started (self.renewing) and when to look next."""

    def renew(self, now):
        """Twice a day, run `tinyserv-remote certs:renew` when an app gets its certificate from an ACME server."""
        if self.renewing is not None and self.sys.reap(self.renewing) is None and self.sys.alive(self.renewing):
            return
        self.renewing = None
        if now < self.renew_at:
            return
        self.renew_at = now + RENEW_EVERY
        if not any(self.acme(app) for app in self.layout.apps()):
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SSH_"))}
        env["TINYSERV_INSTANCE"] = services.mark(self.layout, "certs-renew")  # every process carries a mark
        try:
            out = os.open(os.path.join(self.layout.run_dir, "certs-renew.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                          0o600)
            try:
                self.renewing = self.sys.spawn([sys.executable, REMOTE_SCRIPT, "certs:renew"], self.layout.root, env,
                                               out)
            finally:
                os.close(out)
        except (OSError, ValueError) as e:
            self.say("renew", "cannot run certs:renew: %s" % e)

    def acme(self, app):
        try:
            return appstate.router_settings(self.layout, app)["acme"]
        except TinyservError:
            return False
