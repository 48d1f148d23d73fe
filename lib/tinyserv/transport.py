"""Reaching tinyserv-remote: over ssh, or with bash on this machine when the remote is localhost.

The remote command line is built in exactly one place, command_line(), which
quotes every word; values users type travel as JSON on stdin instead.
"""

import json
import os
import re
import shlex
import subprocess
import urllib.parse

from .errors import TinyservError

LOCAL_REMOTE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.realpath(__file__)))), "bin", "tinyserv-remote")


def command_line(words):
    """The one place a remote shell command is built: every word quoted."""
    return " ".join(shlex.quote(str(w)) for w in words)


def parse_remote(spec):
    """TINYSERV_REMOTE -> (host or None for localhost, port or None)."""
    if not spec or spec == "localhost":
        return None, None
    if spec.startswith("ssh://"):
        url = urllib.parse.urlsplit(spec)
        try:
            port = url.port
        except ValueError:
            port = 0
        if not url.hostname or url.path not in ("", "/") or port == 0:
            raise TinyservError("TINYSERV_REMOTE %r is not ssh://[user@]host[:port]" % spec)
        host = ("%s@%s" % (url.username, url.hostname)) if url.username else url.hostname
        return host, port
    if any(c.isspace() for c in spec) or spec.startswith("-") or ":" in spec:
        raise TinyservError("TINYSERV_REMOTE %r is not user@host, host, ssh://user@host:port or localhost" % spec)
    return spec, None


def server_of(url):
    """The server a git remote's URL points at: (TINYSERV_REMOTE spec, root or None).

    apps:create writes the app's server into its git remote, so the URL says where the app
    lives: ssh://user@host:port/..., user@host:/... (scp-like) or a local path, whose
    TINYSERV_ROOT is the directory above repos/.
    """
    if url.startswith("ssh://"):
        parts = urllib.parse.urlsplit(url)
        return "ssh://%s" % parts.netloc, None
    scp = re.match(r"([^/:]+):", url)
    if scp and not url.startswith("/"):
        return scp.group(1), None
    path = os.path.abspath(url)
    return "localhost", os.path.dirname(os.path.dirname(path.rstrip("/")))


def bracketed(host):
    """A host for a URL: an IPv6 literal goes in brackets."""
    return "[%s]" % host if ":" in host else host


class Remote:
    """Where tinyserv-remote runs, and how to run it there."""

    def __init__(self, environ=os.environ, spec=None, root=None):
        self.spec = environ.get("TINYSERV_REMOTE", "") if spec is None else spec
        self.host, self.port = parse_remote(self.spec)
        self.ssh = ssh_command(environ.get("GIT_SSH_COMMAND") or "ssh")
        # A local server named by its repository's path runs with that root, whatever TINYSERV_ROOT says.
        self.env = dict(environ, TINYSERV_ROOT=root) if root and self.local else None

    @classmethod
    def for_url(cls, url, environ=os.environ):
        """The server of an app whose git remote has this URL."""
        spec, root = server_of(url)
        return cls(environ, spec, root)

    @property
    def local(self):
        return self.host is None

    def argv(self, words, tty=False):
        """The local argument list that runs `tinyserv-remote WORDS` on the server."""
        if self.local:
            return ["bash", "-c", command_line([LOCAL_REMOTE, *words])]
        opts = ["-t"] if tty else []
        if self.port:
            opts += ["-p", str(self.port)]
        return [*self.ssh, *opts, "--", self.host, command_line(["tinyserv-remote", *words])]

    def check_reached(self, returncode, stderr=""):
        """ssh exits 255 for its own failures: say so instead of blaming the command."""
        if not self.local and returncode == 255:
            detail = (stderr or "").strip().splitlines()
            raise TinyservError("cannot reach %s over ssh%s" % (self.host, ": " + detail[-1] if detail else ""))

    def call(self, words, data=None):
        """Run a remote command that answers JSON; raise with its one-line error."""
        try:
            result = subprocess.run(self.argv(words), input=json.dumps(data or {}),
                                    capture_output=True, text=True, env=self.env)
        except OSError as e:
            raise cannot_run(self.argv(words)[0], e) from None
        self.check_reached(result.returncode, result.stderr)
        if result.returncode != 0:
            raise TinyservError(remote_error(result.stderr, result.returncode), remote_details(result.stderr))
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise TinyservError("unexpected answer from tinyserv-remote: %r" % result.stdout[:200]) from None

    def stream(self, words, tty=False, keep_stdin=False):
        """Run a remote command with its output on our terminal; return its exit code."""
        stdin = subprocess.PIPE if keep_stdin else None
        argv = self.argv(words, tty=tty)
        try:
            proc = subprocess.Popen(argv, stdin=stdin, env=self.env)
        except OSError as e:
            raise cannot_run(argv[0], e) from None
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        self.check_reached(code)
        return code

    def git_url(self, path):
        """The URL `git push` uses for a repository at path on the server."""
        if self.local:
            return path
        user, at, host = self.host.rpartition("@")
        if self.port or ":" in host:  # scp-like URLs cannot carry a port or an IPv6 literal
            return "ssh://%s%s%s%s%s" % (user, at, bracketed(host), ":%d" % self.port if self.port else "", path)
        return "%s:%s" % (self.host, path)

    def web_host(self):
        """The host name apps are reached at over HTTP."""
        return "localhost" if self.local else bracketed(self.host.rpartition("@")[2])


def ssh_command(text):
    """GIT_SSH_COMMAND as an argument list (the way git splits it: shell words)."""
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise TinyservError("GIT_SSH_COMMAND %r cannot be split into words: %s" % (text, e)) from None
    if not words:
        raise TinyservError("GIT_SSH_COMMAND is blank: unset it, or name the ssh to run")
    return words


def cannot_run(program, error):
    """The error for a local program that could not be started (ssh, bash)."""
    hint = " (check GIT_SSH_COMMAND)" if program != "bash" else ""
    return TinyservError("cannot run %s: %s%s" % (program, error.strerror, hint))


def remote_details(stderr):
    """The lines the remote printed above its error (a web's last output), without their indent."""
    lines = [l for l in (stderr or "").rstrip().splitlines() if l.strip()]
    return [l.strip() for l in lines[:-1]][-20:]


def remote_error(stderr, code):
    """The remote's own one-line message, without our shared prefix."""
    lines = [l for l in (stderr or "").strip().splitlines() if l.strip()]
    if not lines:
        return "tinyserv-remote failed (exit %d)" % code
    last = lines[-1]
    return last[len("tinyserv: "):] if last.startswith("tinyserv: ") else last
