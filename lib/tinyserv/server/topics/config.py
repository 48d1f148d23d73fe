"""config, config:set, config:unset: an app's config vars; a change is a new release, boot-checked like a push.

(config:get, config:pull and config:push are the client's alone: they read `config`.)
"""

from tinyserv.state import releases
from tinyserv.common import configvars
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import nonempty_words, parse_assignments


def index(layout, name):
    """The config vars of the current release."""
    layout.require(name)
    return releases.current_config(layout, name)


def set_(layout, name, pairs, by=None):
    """config:set KEY=VALUE ..."""
    needed = "config:set needs KEY=VALUE, e.g. 'tinyserv config:set GREETING=hello'"
    return _change(layout, name, set_vars=parse_assignments(nonempty_words(pairs, needed)), by=by)


def unset(layout, name, keys, by=None):
    """config:unset KEY ..."""
    return _change(layout, name, unset=nonempty_words(keys, "config:unset needs a KEY, e.g. 'tinyserv config:unset "
                                                            "GREETING'"), by=by)


def _change(layout, name, set_vars=None, unset=(), by=None):
    """config:set / config:unset: a new release with the new config, boot-checked like a push."""
    from tinyserv.deploy import push, rollout  # here, not at the top: `config` starts faster without the deploy code
    layout.require(name)
    set_vars = {} if set_vars is None else set_vars
    configvars.check_changes(set_vars, unset)
    with push.changing(layout, name):
        config = releases.current_config(layout, name)
        missing = [k for k in unset if k not in config]
        if missing and not set_vars and len(missing) == len(unset):
            raise TinyservError("%s is not set on %s" % (", ".join(missing), name))
        config.update(set_vars)
        for key in unset:
            config.pop(key, None)
        configvars.check_total(config)
        current = releases.current(layout, name)
        keys = ", ".join(sorted(set(set_vars) | set(unset)))
        what = "Set" if set_vars else "Remove"
        return rollout.roll(layout, name, "%s %s config vars" % (what, keys), config, current, by)
