"""The ssh door: what a deploy key may run. `tinyserv-remote ssh-serve --key NAME` is the forced command of
the key's authorized_keys line (keys.py).

What git or the client asked for arrives in SSH_ORIGINAL_COMMAND. It is split into words and
never given to a shell, and allowed only if it is one of:
  git-receive-pack '<repos>/<app>.git'   a push (or git-upload-pack: a fetch, not for a --push-only key),
                                         of an app the key may touch
  tinyserv-remote COMMAND ...            one of the client's own commands, on an app the key may touch
Everything else — a shell, an internal command (hook, supervise, startup ...), another app, a path
outside the repositories, an option git did not send, any command for a --push-only key — is
refused in one line, and nothing runs.
"""

import os
import shlex

from tinyserv.common import commands
from tinyserv.server import keys
from tinyserv.common.errors import TinyservError

GIT = ("git-receive-pack", "git-upload-pack")


def refuse(why):
    raise TinyservError("this key may only push to its apps and run tinyserv commands on them: %s" % why)


def serve(layout, key):
    """ssh-serve --key NAME: check SSH_ORIGINAL_COMMAND against what the key may do, then run it."""
    entry = keys.find(layout, key)
    words = split(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    if words[0] in GIT:
        return serve_git(layout, entry, words)
    if words[0] == "tinyserv-remote":
        return serve_command(layout, entry, words[1:])
    refuse("%r is not one of them" % words[0])


def split(original):
    """The words of the original command (no shell ever sees it)."""
    if not original.strip():
        refuse("no shell here")
    if "\0" in original or "\n" in original or "\r" in original:
        refuse("one command on one line")
    try:
        return shlex.split(original)
    except ValueError as e:
        refuse("the command cannot be split into words (%s)" % e)


def serve_git(layout, entry, words):
    """A push or a fetch of one app's repository, exactly as git asks for it."""
    if len(words) != 2:
        refuse("git may only name the repository")
    app = app_of_repository(layout, words[1])
    allowed(entry, app)
    if words[0] == "git-upload-pack" and entry["push_only"]:
        refuse("this key may only push (it was added with --push-only): it may not fetch or clone")
    os.execvp(words[0], [words[0], layout.repo(app)])


def app_of_repository(layout, path):
    """The app whose repository path is: exactly <repos>/<app>.git (or <app>.git, relative to them)."""
    if path.startswith("-"):
        refuse("%r is an option, not a repository" % path)
    name = os.path.basename(path.rstrip("/"))
    if not name.endswith(".git") or os.path.dirname(path.rstrip("/")) not in ("", layout.repos_dir):
        refuse("%r is not one of tinyserv's repositories" % path)
    app = name[:-4]
    try:
        layout.require(app)
    except TinyservError:
        refuse("%r is not one of tinyserv's repositories" % path)
    return app


def allowed(entry, app):
    """Raise unless the key may touch app."""
    if entry["apps"] is not None and app not in entry["apps"]:
        refuse("not %s, which this key may not touch" % app)


def serve_command(layout, entry, argv):
    """One of the commands a key may run (its declaration says door), within the scope the key has."""
    from tinyserv.server import remote
    if entry["push_only"]:
        refuse("this key may only push (it was added with --push-only)")
    cmd = commands.BY_NAME.get(argv[0]) if argv else None
    if cmd is None or not cmd.door or not cmd.server:
        refuse("%r is not a client command" % (argv[0] if argv else ""))
    if cmd.scope == commands.SERVER and entry["apps"] is not None:
        refuse("%s needs a key that is not limited to some apps" % cmd.name)
    args = remote.parser().parse_args(argv)
    if cmd.app:
        allowed(entry, args.app)
    elif cmd.scope == commands.EVERY_APP and entry["apps"] is not None:
        from tinyserv.common.printer import dumps
        print(dumps([a for a in remote.handler(cmd)(layout) if a["name"] in entry["apps"]]))
        return 0
    return remote.main(argv)
