"""The client's side of the front door's commands (nginx): domains, certs, maintenance, features."""

from tinyserv.common import userfiles
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import MAX_PEM, check_domain, check_feature, check_pem
from tinyserv.common.printer import escaped, heading, table


class FrontDoorCommands:
    """A part of the Client (client.py): each method is the command named like it."""

    def domains(self):
        self.json_or(self.call(), self.render_domains)

    def render_domains(self, d):
        names = ([d["default"]] if d["default"] else []) + d["domains"]
        self.say(heading("%s Domains" % d["app"]))
        if names:
            self.say(table([[n, d["https"].get(n, "-")] for n in names], ["DOMAIN", "HTTPS CERTIFICATE"]))
        else:
            self.say("(none: 'tinyserv domains:add www.example.org' adds one)")
        self.say("HTTP on port %d, HTTPS on port %d; %s" % (d["http_port"], d["https_port"], d["front_door"]))

    def domains_add(self):
        check_domain(self.args.hostname)  # refused here before anything travels; the server checks again
        result = self.call()
        self.say("Adding %s to ⬢ %s... done" % (self.args.hostname, self.app))
        self.say("Point %s's DNS at this server (an A record, or a CNAME to %s); nginx answers it on port %d" % (
            self.args.hostname, self.remote.web_host(), result["http_port"]))

    def domains_remove(self):
        check_domain(self.args.hostname)
        self.call()
        self.say("Removing %s from ⬢ %s... done" % (self.args.hostname, self.app))

    def certs(self):
        self.json_or(self.call(), lambda certs: self.say(table(
            [[c["name"], ", ".join(c["names"]), ", ".join(c["serves"]) or "-", c["expires"],
              "yes" if c.get("auto") else "no"] for c in certs],
            ["NAME", "COVERS", "SERVES", "EXPIRES", "AUTO"]) if certs else
            "%s has no certificates ('tinyserv certs:add CERT KEY' or 'tinyserv certs:auto:enable')" % self.app))

    def certs_add(self):
        self.args.cert = read_pem(self.args.cert, "cert")  # sent as JSON on standard input, not as paths
        self.args.key = read_pem(self.args.key, "key")
        cert = escaped(self.call())  # its names are the certificate's own
        self.say("Adding a certificate to ⬢ %s... done, %s (expires %s)" % (self.app, cert["name"], cert["expires"]))
        self.say("It serves %s over HTTPS" % (", ".join(cert["serves"]) if cert["serves"] else
                                               "none of the app's domains yet (it covers %s)" % ", ".join(
                                                   cert["names"])))

    def certs_remove(self):
        result = self.call()
        self.say("Removing certificate %s from ⬢ %s... done" % (result["removed"], self.app))

    def certs_auto_enable(self):
        cert = escaped(self.call())
        self.say("Getting a certificate for ⬢ %s... done, it serves %s (expires %s)" % (
            self.app, ", ".join(cert["serves"]), cert["expires"]))

    def certs_auto_refresh(self):
        cert = self.call()
        self.say("Renewing the certificate of ⬢ %s... done (expires %s)" % (self.app, cert["expires"]))

    def certs_auto_disable(self):
        self.call()
        self.say("Automatic certificates of ⬢ %s... disabled" % self.app)

    def maintenance(self):
        self.json_or(self.call(), lambda m: self.say("on" if m["maintenance"] else "off"))

    def maintenance_on(self):
        self.call()
        self.say("Enabling maintenance mode for ⬢ %s... done" % self.app)

    def maintenance_off(self):
        self.call()
        self.say("Disabling maintenance mode for ⬢ %s... done" % self.app)

    def features(self):
        self.json_or(self.call(), lambda features: self.say(heading("App Features ⬢ %s" % self.app) + "\n" + "\n".join(
            "[%s] %s  %s" % ("+" if f["enabled"] else " ", f["name"], f["description"]) for f in features)))

    def features_enable(self):
        check_feature(self.args.feature)
        self.call()
        self.say("Enabling %s for ⬢ %s... done" % (self.args.feature, self.app))

    def features_disable(self):
        check_feature(self.args.feature)
        self.call()
        self.say("Disabling %s for ⬢ %s... done" % (self.args.feature, self.app))


def read_pem(path, kind):
    """A PEM file the user named, read here (its text goes to the server on standard input)."""
    try:
        return check_pem(userfiles.read_bytes(path, MAX_PEM).decode("utf-8"), kind)
    except UnicodeDecodeError:
        raise TinyservError("%s is not a PEM file (not text)" % path) from None
