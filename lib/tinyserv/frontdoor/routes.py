"""nginx/routes.json: what the live config serves, for commands waiting on a change and for the next supervisor.

The Router writes it each time nginx confirms a config; a new supervisor adopts it (with the config
it describes) instead of reloading nginx for nothing.
"""

import os

from tinyserv.state import store
from tinyserv.frontdoor import nginx
from tinyserv.common.errors import TinyservError


class Routes:
    """The Router's routes.json: saved on every confirmed config, adopted after a supervisor restart."""

    def save_routes(self, generation, now):
        """nginx/routes.json: what the live config serves, for commands waiting on a change and the next supervisor."""
        shown = {app: site._asdict() for app, site in self.live.items()}
        try:
            store.write_json(self.prefix.routes, {"generation": generation, "confirmed_at": now, "sites": shown,
                                                  "text_digest": digest(self.written["text"] if self.written else ""),
                                                  "left_out": [self.left_out[p] for p in sorted(self.left_out)]},
                             durable=False)
        except TinyservError as e:
            self.say("routes", "cannot save the routes: %s" % e)

    def adopt_routes(self):
        """After a supervisor restart: the config on disk is what the adopted nginx runs (routes.json says what)."""
        saved = nginx.read_routes(self.prefix) if os.path.exists(self.prefix.routes) else {}
        try:
            with open(self.prefix.conf) as f:
                text = f.read()
        except OSError:
            return
        if not saved or saved.get("text_digest") != digest(text):
            return
        sites = {}
        for app, fields in (saved.get("sites") or {}).items():
            try:
                sites[app] = site_from(fields)
            except (TypeError, ValueError):
                return
        self.generation = saved.get("generation", 0)
        self.written = {"generation": self.generation, "text": text, "at": 0.0, "sites": sites}
        self.live = dict(sites)
        self.moved |= set(sites)  # published again at the next confirmed config


def digest(text):
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def site_from(fields):
    """A Site from its JSON form (routes.json)."""
    return nginx.Site(app=fields["app"], port=fields["port"], primary=tuple(fields["primary"]),
                      backup=tuple(fields["backup"]), domains=tuple(fields["domains"]),
                      maintenance=bool(fields["maintenance"]), affinity=bool(fields["affinity"]),
                      certs=tuple((c[0], c[1], tuple(c[2]), *c[3:]) for c in fields["certs"]))
