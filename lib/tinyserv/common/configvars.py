"""What config vars may hold: the checks the client makes before sending and the server makes again.

Config vars become the app's environment, so a value the environment cannot carry (a NUL
byte) or one past the kernel's limits would crash every process of the app; names that
tinyserv sets itself would be silently overridden. All of those are refused at the door.
"""

from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_config_key
from tinyserv.common.settings import APP_SETTINGS, check_app_setting

OWNED = ("PORT", "DYNO", "PS")  # set by tinyserv for every process
MAX_TOTAL = 32 * 1024  # keys and values of all of an app's config vars, as on Heroku


def check_key(key):
    """A name config:set may use: a valid variable name that tinyserv does not set itself."""
    check_config_key(key)
    if key in OWNED or (key.startswith("TINYSERV_") and key not in APP_SETTINGS):
        raise TinyservError("%s is set by tinyserv for every process and cannot be a config var%s" % (
            key, "" if not key.startswith("TINYSERV_") else
            " (the TINYSERV_ settings are: %s)" % ", ".join(sorted(APP_SETTINGS))))
    return key


def check_value(key, value):
    """A value the environment can carry, and a valid one for a setting."""
    if not isinstance(value, str):
        raise TinyservError("the value of %s must be text" % key)
    if "\0" in value:
        raise TinyservError("the value of %s contains a NUL byte, which no environment can carry" % key)
    if key in APP_SETTINGS:
        check_app_setting(key, value)
    return value


def check_changes(set_vars, unset):
    """Check a config:set / config:unset request before anything changes."""
    if not isinstance(set_vars, dict) or not isinstance(unset, (list, tuple)):
        raise TinyservError("config changes must be a JSON object of vars or a list of keys")
    if not set_vars and not unset:
        raise TinyservError("no config vars given")
    for key, value in set_vars.items():
        check_value(check_key(key), value)
    for key in unset:
        if not isinstance(key, str):
            raise TinyservError("config keys must be text")
        check_config_key(key)


def check_total(config):
    """The whole config fits the limit (it all goes into each process's environment)."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in config.items())
    if size > MAX_TOTAL:
        raise TinyservError("config vars would take %d bytes, over the limit of %d (32 KiB): "
                            "keep large data in files or a database" % (size, MAX_TOTAL))
