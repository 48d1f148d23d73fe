"""The developer's git repository: finding it and its `tinyserv` remote."""

import os
import subprocess

from tinyserv.common.errors import TinyservError

REMOTE_NAME = "tinyserv"


def git(*args, cwd=None):
    """Run git with an argument list; (exit code, stripped stdout)."""
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise TinyservError("git is not installed on this machine") from None
    return result.returncode, result.stdout.strip()


def in_repository():
    return git("rev-parse", "--is-inside-work-tree")[1] == "true"


_urls = {}  # (directory, remote name) -> URL: git is asked once per command (remotes change only below)


def remote_url(name=REMOTE_NAME):
    """The URL of the named remote, or None."""
    key = (os.getcwd(), name)
    if key not in _urls:
        code, out = git("remote", "get-url", name)
        _urls[key] = out if code == 0 and out else None
    return _urls[key]


def app_from_url(url):
    """'deploy@host:/home/deploy/tinyserv/repos/myapp.git' -> 'myapp'."""
    base = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    return base[:-4] if base.endswith(".git") else base


def add_remote(url):
    _urls.clear()
    code, _ = git("remote", "add", REMOTE_NAME, url)
    if code != 0:
        raise TinyservError("could not add git remote %r" % REMOTE_NAME)


def share_ssh(ssh_command):
    """Make git in this repository run ssh as tinyserv does, so `git push` shares its connection
    (core.sshCommand: git uses it whenever GIT_SSH_COMMAND is unset)."""
    if git("config", "core.sshCommand", ssh_command)[0] != 0:
        raise TinyservError("could not set core.sshCommand in this repository's git config")


def remove_remote_if(app):
    """Remove the tinyserv remote when it names app; True if it did."""
    url = remote_url()
    if url and app_from_url(url) == app:
        _urls.clear()
        return git("remote", "remove", REMOTE_NAME)[0] == 0
    return False


def default_app_name():
    """The name apps:create uses: the repository's (or directory's) name."""
    code, top = git("rev-parse", "--show-toplevel")
    return os.path.basename(top if code == 0 and top else os.getcwd())
