"""Which app and which server a command is for (-a/--app, -r/--remote, the git remote, TINYSERV_REMOTE), and
who asks."""

import os

from tinyserv.common import commands
from tinyserv.cli import gitlocal
from tinyserv.cli.transport import Remote
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_app_name


def who():
    """Who made a change, for the release history."""
    import getpass
    import socket
    return "%s@%s" % (getpass.getuser(), socket.gethostname())


def app_option(args):
    """-a/--app, given before or after the command (None when not given)."""
    return args.app if getattr(args, "app", None) is not None else getattr(args, "app_first", None)


def git_remote_option(args):
    """-r/--remote: the git remote naming the app and its server, before or after the command."""
    return getattr(args, "git_remote", None) or getattr(args, "git_remote_first", None)


def resolve_app(args):
    """-a/--app, else the app the repository's `tinyserv` git remote (or -r's) names."""
    if app_option(args) is not None:
        return check_app_name(app_option(args))
    name = git_remote_option(args) or gitlocal.REMOTE_NAME
    url = gitlocal.remote_url(name)
    if url:
        return check_app_name(gitlocal.app_from_url(url))
    if git_remote_option(args):
        raise TinyservError("no git remote named %r in this repository" % name)
    raise TinyservError("no app here: run this in a repository with a 'tinyserv' git remote "
                        "(see 'tinyserv apps:create') or pass -a NAME")


def find_remote(args, environ=os.environ):
    """The server to ask: the one the app's git remote names, as Heroku's CLI finds the app, else
    TINYSERV_REMOTE (for -a NAME without -r, for apps and apps:create, and outside a repository)."""
    cmd = commands.BY_NAME.get(args.verb)
    named = app_option(args) is not None or getattr(args, "name", None) is not None
    if cmd and cmd.app and cmd.app_flag and (git_remote_option(args) or not named):
        url = gitlocal.remote_url(git_remote_option(args) or gitlocal.REMOTE_NAME)
        if url:
            return Remote.for_url(url, environ)
    return Remote(environ)
