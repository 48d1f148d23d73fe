"""Every setting tinyserv reads: the server's from its environment, each app's from its config vars.

App settings are config vars named TINYSERV_*; config:set checks their values at the door,
so a running app never depends on a default silently standing in for a typo.
"""

import os

from .errors import TinyservError
from .names import number

# config var: (default, lowest, highest, kind, what it is)
APP_SETTINGS = {
    "TINYSERV_BOOT_TIMEOUT": (60, 1, 3600, int, "seconds a new web gets to accept connections on $PORT"),
    "TINYSERV_STOP_TIMEOUT": (30.0, 0, 3600, float, "seconds between SIGTERM and SIGKILL"),
    "TINYSERV_BUILD_TIMEOUT": (900, 1, 24 * 3600, int, "seconds a build (and its release command) may take"),
    "TINYSERV_MEMORY_LIMIT": (None, 16, 1024 * 1024, int,
                              "MB of resident memory one instance may use before it is restarted"),
    "TINYSERV_NOFILE": (None, 16, 1024 * 1024, int, "open files each process may have (setrlimit)"),
}


def app_setting(config, key):
    """The value of an app setting from the release's config vars (its default when unset or invalid)."""
    default, lowest, highest, kind, _ = APP_SETTINGS[key]
    value = number(config.get(key), default, kind, minimum=lowest)
    return value if value is None or value <= highest else default


def boot_timeout(config):
    return app_setting(config, "TINYSERV_BOOT_TIMEOUT")


def stop_timeout(config):
    return app_setting(config, "TINYSERV_STOP_TIMEOUT")


def build_timeout(config):
    return app_setting(config, "TINYSERV_BUILD_TIMEOUT")


def memory_limit(config):
    """Bytes of resident memory an instance may use (TINYSERV_MEMORY_LIMIT, in MB), or None."""
    limit = app_setting(config, "TINYSERV_MEMORY_LIMIT")
    return limit * 1024 * 1024 if limit else None


def open_files(environ):
    """The open-files limit a process starts with (TINYSERV_NOFILE in its environment), or None."""
    return app_setting(environ, "TINYSERV_NOFILE")


def check_app_setting(key, value):
    """Refuse a value an app setting cannot take, in one line that says what it can."""
    default, lowest, highest, kind, what = APP_SETTINGS[key]
    parsed = number(value, None, kind, minimum=lowest)
    if parsed is None or parsed > highest:
        raise TinyservError("%s is %s: a %s from %s to %s, not %r" % (
            key, what, "whole number" if kind is int else "number", lowest, highest, value))


def keep_builds(environ=os.environ):
    """How many builds to keep for rollback (TINYSERV_KEEP_BUILDS, default 5)."""
    return number(environ.get("TINYSERV_KEEP_BUILDS"), 5)


def host_name(environ=os.environ):
    """The host name printed in URLs after a deploy (TINYSERV_HOST, default the hostname)."""
    import socket  # here: the client reads settings too, and starts faster without it
    return environ.get("TINYSERV_HOST") or socket.gethostname()


SSH_PERSIST = 600  # seconds a shared ssh connection stays open after the last command that used it


def ssh_reuse(environ=os.environ):
    """Share one ssh connection between commands (TINYSERV_SSH_REUSE, default 1; 0 turns it off)."""
    return environ.get("TINYSERV_SSH_REUSE", "1").strip() != "0"
