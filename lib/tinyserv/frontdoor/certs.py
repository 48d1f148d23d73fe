"""certs, certs:add, certs:remove, certs:auto:*: TLS certificates nginx serves on the HTTPS port (SNI).

certs:add takes a PEM certificate (chain) and its key, read on the client and sent as JSON on
standard input; openssl checks them here: the key must match the certificate, which must not have
expired. A certificate serves the app's domains it names. certs:auto:enable gets one for the
app's domains from an ACME server with certbot (webroot: our nginx serves the challenge from
nginx/acme), and certs:auto:refresh (or certs:renew, run by whoever keeps the server) renews it.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

from tinyserv.state import appstate, store
from tinyserv.frontdoor import changes as frontdoor, nginx
from tinyserv.common import settings
from tinyserv.frontdoor.domains import default_domain
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_pem

ACME_NAME = "acme"  # the certificate certs:auto manages
CERT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")


def openssl(*args, stdin=None):
    """stdout of `openssl ARGS`, or raise with its first error line."""
    try:
        result = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TinyservError("cannot run openssl: %s (install it: sudo apt install openssl)" % (
            getattr(e, "strerror", None) or e)) from None
    if result.returncode != 0:
        raise TinyservError(" ".join((result.stderr.strip().splitlines() or ["openssl failed"])[0].split()))
    return result.stdout


def inspect(cert, key):
    """{names, expires, subject} of a certificate whose key matches it and that has not expired; else raise."""
    check_pem(cert, "cert")
    check_pem(key, "key")
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, text in ((cert_path, cert), (key_path, key)):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(text)
        try:
            shown = openssl("x509", "-in", cert_path, "-noout", "-enddate", "-subject", "-ext", "subjectAltName",
                            "-nameopt", "RFC2253")
        except TinyservError:
            raise TinyservError("the certificate is not a PEM X.509 certificate that openssl can read") from None
        try:
            key_public = openssl("pkey", "-in", key_path, "-pubout")
        except TinyservError:
            raise TinyservError("the key is not a PEM private key that openssl can read "
                                "(an encrypted key needs its passphrase removed first)") from None
        if openssl("x509", "-in", cert_path, "-noout", "-pubkey") != key_public:
            raise TinyservError("the key does not match the certificate (it belongs to another one)")
    expires = expiry(shown)
    if expires <= time.time():
        raise TinyservError("the certificate expired on %s: get a new one" % iso(expires))
    import hashlib
    return {"names": names_in(shown), "expires": iso(expires), "sha256": hashlib.sha256(cert.encode()).hexdigest()}


def expiry(shown):
    """The notAfter time in openssl's output, in seconds since the epoch."""
    match = re.search(r"notAfter=(.+)", shown)
    try:
        return time.mktime(time.strptime(match.group(1).strip(), "%b %d %H:%M:%S %Y GMT")) - time.timezone
    except (AttributeError, ValueError):
        raise TinyservError("cannot read the certificate's expiry date") from None


def names_in(shown):
    """The DNS names a certificate covers: its subjectAltName DNS entries, else its CN."""
    names = re.findall(r"DNS:([^\s,]+)", shown)
    if not names:
        names = re.findall(r"subject=.*?CN=([^,\s]+)", shown)
    return sorted(set(n.lower() for n in names))


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def listing(layout, app):
    """certs: each certificate with the names it covers, the app's domains it serves and when it expires."""
    layout.require(app)
    from tinyserv.frontdoor.router import covers
    saved = appstate.router_settings(layout, app)
    domains = saved["domains"] + ([default_domain(app)] if default_domain(app) else [])
    return [dict(cert, serves=[d for d in domains if covers(cert["names"], d)]) for cert in saved["certs"]]


def slug(names, taken):
    """A name for a certificate: its first host name with dashes for dots, unique among taken."""
    base = re.sub(r"[^a-z0-9-]+", "-", (names[0] if names else "cert").replace("*", "wildcard"))[:50].strip("-")
    base = base or "cert"
    name, n = base, 1
    while name in taken or name == ACME_NAME:
        n += 1
        name = "%s-%d" % (base, n)
    return name


def add(layout, app, cert, key):
    """certs:add CERT KEY: serve the app's domains the certificate names over HTTPS."""
    frontdoor.require()
    info = inspect(cert, key)
    written = []

    def mutate(saved):
        name = slug(info["names"], {c["name"] for c in saved["certs"]})
        return dict(saved, certs=saved["certs"] + [dict(info, name=name)])

    def put_files(new):
        install_files(layout, app, new["certs"][-1]["name"], cert, key, written)
    try:
        new = frontdoor.change(layout, app, mutate, before_check=put_files)
    except BaseException:
        for path in written:
            store.remove(path)
        raise
    return dict(new["certs"][-1], serves=listing_of(layout, app, new["certs"][-1]))


def listing_of(layout, app, cert):
    return next((c["serves"] for c in listing(layout, app) if c["name"] == cert["name"]), [])


def install_files(layout, app, name, cert, key, written):
    """apps/<app>/certs/NAME.crt and .key, readable by us only."""
    os.makedirs(layout.app_file(app, "certs"), mode=0o700, exist_ok=True)
    for kind, text in (("crt", cert), ("key", key)):
        path = appstate.cert_file(layout, app, name, kind)
        store.write_atomic(path, text if text.endswith("\n") else text + "\n", 0o600)
        written.append(path)


def remove(layout, app, name=None):
    """certs:remove [NAME]: stop serving a certificate (the only one when no name is given)."""
    layout.require(app)
    names = [c["name"] for c in appstate.router_settings(layout, app)["certs"]]
    if name is None:
        if len(names) != 1:
            raise TinyservError("%s has %s: name the one to remove (see 'tinyserv certs')" % (
                app, "no certificate" if not names else "%d certificates" % len(names)))
        name = names[0]
    if name not in names:
        raise TinyservError("%s has no certificate named %r (it has: %s)" % (app, name, ", ".join(names) or "none"))
    frontdoor.change(layout, app, lambda s: dict(s, certs=[c for c in s["certs"] if c["name"] != name],
                                                 acme=s["acme"] and name != ACME_NAME))
    for kind in ("crt", "key"):
        store.remove(appstate.cert_file(layout, app, name, kind))
    return {"removed": name}


# --- certs:auto (ACME, with certbot) -------------------------------------------------------------


def acme_dirs(layout):
    base = os.path.join(layout.root, "acme")
    return {"config": os.path.join(base, "config"), "work": os.path.join(base, "work"),
            "logs": os.path.join(base, "logs")}


def certbot(layout, app, domains, renew=False):
    """Ask the ACME server for a certificate of domains with certbot (webroot: our nginx serves the challenge)."""
    binary = shutil.which("certbot") or ("/usr/bin/certbot" if os.path.exists("/usr/bin/certbot") else None)
    if binary is None:
        raise TinyservError("certbot is missing on this server: install it (sudo apt install certbot)")
    dirs = acme_dirs(layout)
    for path in dirs.values():
        os.makedirs(path, mode=0o700, exist_ok=True)
    email = settings.acme_email()
    argv = [binary, "certonly", "--non-interactive", "--agree-tos", "--webroot", "-w", nginx.Prefix(layout).acme,
            "--config-dir", dirs["config"], "--work-dir", dirs["work"], "--logs-dir", dirs["logs"],
            "--server", settings.acme_directory(), "--cert-name", app]
    argv += ["--email", email] if email else ["--register-unsafely-without-email"]
    argv += ["--force-renewal"] if renew else ["--keep-until-expiring"]
    for domain in domains:
        argv += ["-d", domain]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TinyservError("certbot did not finish: %s" % (getattr(e, "strerror", None) or e)) from None
    if result.returncode != 0:
        lines = [l for l in (result.stderr + result.stdout).splitlines() if l.strip()]
        why = next((l for l in lines if "Detail:" in l or "Error" in l or "error" in l), lines[-1] if lines else "")
        raise TinyservError("certbot could not get a certificate from %s: %s (its log: %s)" % (
            settings.acme_directory(), " ".join(why.split()), dirs["logs"]))
    live = os.path.join(dirs["config"], "live", app)
    try:
        with open(os.path.join(live, "fullchain.pem")) as f:
            cert = f.read()
        with open(os.path.join(live, "privkey.pem")) as f:
            key = f.read()
    except OSError as e:
        raise TinyservError("certbot said yes but left no certificate in %s: %s" % (live, e.strerror)) from None
    return cert, key


def app_domains(layout, app):
    saved = appstate.router_settings(layout, app)
    return saved["domains"] + ([default_domain(app)] if default_domain(app) else [])


def auto_enable(layout, app, renew=False):
    """certs:auto:enable: get a certificate for the app's domains from the ACME server, and keep renewing it."""
    layout.require(app)
    frontdoor.require()
    domains = app_domains(layout, app)
    if not domains:
        raise TinyservError("%s has no domain to get a certificate for: add one first ('tinyserv domains:add HOST')"
                            % app)
    cert, key = certbot(layout, app, domains, renew=renew)
    info = inspect(cert, key)
    written = []

    def mutate(saved):
        certs = [c for c in saved["certs"] if c["name"] != ACME_NAME] + [dict(info, name=ACME_NAME, auto=True)]
        return dict(saved, certs=certs, acme=True)
    try:
        frontdoor.change(layout, app, mutate, before_check=lambda new: install_files(
            layout, app, ACME_NAME, cert, key, written))
    except BaseException:
        for path in written:
            store.remove(path)
        raise
    return dict(info, name=ACME_NAME, auto=True, serves=[d for d in domains])


def auto_refresh(layout, app):
    """certs:auto:refresh: renew the app's automatic certificate now."""
    layout.require(app)
    if not appstate.router_settings(layout, app)["acme"]:
        raise TinyservError("%s has no automatic certificate: 'tinyserv certs:auto:enable' first" % app)
    return auto_enable(layout, app, renew=True)


def auto_disable(layout, app):
    """certs:auto:disable: stop renewing; the certificate it got is removed."""
    layout.require(app)
    saved = appstate.router_settings(layout, app)
    if not saved["acme"]:
        raise TinyservError("%s does not get its certificate automatically" % app)
    return remove(layout, app, ACME_NAME) if any(c["name"] == ACME_NAME for c in saved["certs"]) else {}


def renew_due(layout, days=30):
    """certs:renew (on the server, from cron or a timer): renew every automatic certificate expiring within days."""
    renewed = []
    for app in layout.apps():
        try:
            saved = appstate.router_settings(layout, app)
        except TinyservError:
            continue
        acme = next((c for c in saved["certs"] if c["name"] == ACME_NAME), None)
        if saved["acme"] and acme and time.mktime(time.strptime(acme["expires"], "%Y-%m-%dT%H:%M:%SZ")) - \
                time.timezone - time.time() < days * 86400:
            auto_enable(layout, app, renew=True)
            renewed.append(app)
    print("renewed: %s" % (", ".join(renewed) or "none due"))
