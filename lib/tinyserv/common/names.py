"""Validation of the names users type: app names, config keys, add-on kinds (pure)."""

import re

from tinyserv.common.errors import TinyservError

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,29}\Z")
CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PROCESS_TYPE = re.compile(r"[A-Za-z0-9_-]+\Z")
NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?\Z")
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")  # one label of a host name


def number(text, default, kind=int, minimum=1):
    """A numeric setting from an environment or config value; default when unset or not a number."""
    if text and NUMBER.match(text) and (kind is float or "." not in text) and kind(text) >= minimum:
        return kind(text)
    return default


def check_app_name(name):
    """Return name if it is a valid app name, else raise."""
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise TinyservError(
            "invalid app name %r: use lowercase letters, digits and dashes, "
            "starting with a letter, at most 30 characters" % (name,))
    return name


def check_config_key(key):
    """Return key if it is a valid environment variable name, else raise."""
    if not isinstance(key, str) or not CONFIG_KEY.match(key):
        raise TinyservError(
            "invalid config key %r: use letters, digits and underscores, "
            "not starting with a digit" % (key,))
    return key


def nonempty_words(value, needed):
    """A non-empty list of text from a request; one line saying what is needed otherwise."""
    if not isinstance(value, list) or not value or not all(isinstance(w, str) for w in value):
        raise TinyservError(needed)
    return value


def parse_assignments(words):
    """Turn ['KEY=VALUE', ...] into a dict, validating every key."""
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise TinyservError("%r is not KEY=VALUE" % (word,))
        pairs[check_config_key(key)] = value
    return pairs


MAX_PER_TYPE = 100  # Heroku caps a process type at 100 dynos
MAX_WEB = 20  # web instances, each on its own internal port behind nginx


def parse_scale(words):
    """Turn ['web=1', 'worker=0'] into {'web': 1, 'worker': 0}, within the limits of a type."""
    formation = {}
    for word in words:
        ptype, sep, count = word.partition("=")
        if not sep or not PROCESS_TYPE.match(ptype) or not re.match(r"[0-9]+\Z", count):
            raise TinyservError("%r is not TYPE=N (N a whole number, 0 or more)" % (word,))
        formation[ptype] = int(count)
        if ptype == "web" and formation[ptype] > MAX_WEB:  # the tighter limit first: it is the one that holds
            raise TinyservError("web=%d is too many: web runs at most %d instances" % (formation[ptype], MAX_WEB))
        if formation[ptype] > MAX_PER_TYPE:
            raise TinyservError("%s=%d is too many: a process type runs at most %d instances" % (
                ptype, formation[ptype], MAX_PER_TYPE))
    return formation


def check_domain(name):
    """Return name if it is a host name nginx can route by (lowercase ASCII labels, a dot, no wildcard), else raise."""
    shown = repr(name if not isinstance(name, str) or len(name) <= 60 else name[:57] + "...")
    if not isinstance(name, str) or not name or len(name) > 253:
        raise TinyservError("invalid domain %s: a host name has 1 to 253 characters" % shown)
    labels = name.split(".")
    if name != name.lower() and name.isascii():
        raise TinyservError("invalid domain %s: write it in lowercase" % shown)
    if len(labels) < 2 or not all(LABEL.match(label) for label in labels) or not labels[-1][0].isalpha():
        raise TinyservError("invalid domain %s: use a host name like www.example.org (letters, digits and dashes "
                            "between dots, at most 63 per label; no wildcards; an international name in its "
                            "xn-- form)" % shown)
    return name


MAX_PEM = 64 * 1024  # a certificate chain or key


def check_pem(text, kind):
    """Does text look like a PEM certificate ("cert") or private key ("key")? Pure: the client asks too."""
    what = {"cert": "certificate", "key": "private key"}[kind]
    if not isinstance(text, str) or "\0" in text or len(text.encode()) > MAX_PEM:
        raise TinyservError("the %s must be PEM text of at most %d KiB" % (what, MAX_PEM // 1024))
    marker = "-----BEGIN CERTIFICATE-----" if kind == "cert" else "PRIVATE KEY-----"
    if marker not in text or "-----END " not in text:
        raise TinyservError("the %s is not in PEM form (a file starting with -----BEGIN %s)" % (
            what, "CERTIFICATE-----" if kind == "cert" else "PRIVATE KEY-----"))
    return text


FEATURES = ("http-session-affinity",)


def check_feature(feature):
    """A feature tinyserv has."""
    if feature not in FEATURES:
        raise TinyservError("no feature %r: the features are %s" % (feature, ", ".join(FEATURES)))
    return feature


ADDON_KINDS = {"postgresql": "postgresql", "postgres": "postgresql", "heroku-postgresql": "postgresql",
               "redis": "redis", "heroku-redis": "redis"}


def addon_kind(text):
    """'postgresql', 'heroku-postgresql:essential-0', 'redis' ... -> the kind; one line for anything else."""
    name = text.partition(":")[0].strip().lower() if isinstance(text, str) else None
    if name not in ADDON_KINDS:
        raise TinyservError("unknown add-on kind %r: tinyserv has postgresql and redis "
                            "(e.g. 'tinyserv addons:create postgresql')" % (text,))
    return ADDON_KINDS[name]
