"""Validation of the names users type: app names and config keys (pure)."""

import re

from .errors import TinyservError

APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,29}\Z")
CONFIG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PROCESS_TYPE = re.compile(r"[A-Za-z0-9_-]+\Z")
NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


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


def parse_assignments(words):
    """Turn ['KEY=VALUE', ...] into a dict, validating every key."""
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise TinyservError("%r is not KEY=VALUE" % (word,))
        pairs[check_config_key(key)] = value
    return pairs


def parse_scale(words):
    """Turn ['web=1', 'worker=0'] into {'web': 1, 'worker': 0}."""
    formation = {}
    for word in words:
        ptype, sep, count = word.partition("=")
        if not sep or not PROCESS_TYPE.match(ptype) or not re.match(r"[0-9]+\Z", count):
            raise TinyservError("%r is not TYPE=N (N a whole number, 0 or more)" % (word,))
        formation[ptype] = int(count)
    return formation
