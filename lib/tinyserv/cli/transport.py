"""Reaching tinyserv-remote: over ssh, or with bash on this machine when the remote is localhost.

The remote command line is built in exactly one place, command_line(), which
quotes every word; values users type travel as JSON on stdin instead.
"""

import json
import os
import re
import shlex
import stat
import subprocess
import time
import urllib.parse
import zlib

from tinyserv.common import settings
from tinyserv import REMOTE_SCRIPT
from tinyserv.common.errors import TinyservError

LOCAL_REMOTE = REMOTE_SCRIPT


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

    def __init__(self, environ=os.environ, spec=None, root=None, probe=None):
        self.spec = environ.get("TINYSERV_REMOTE", "") if spec is None else spec
        self.host, self.port = parse_remote(self.spec)
        self.environ = environ
        self.ssh = ssh_command(environ.get("GIT_SSH_COMMAND") or "ssh")
        # A local server named by its repository's path runs with that root, whatever TINYSERV_ROOT says.
        self.env = dict(environ, TINYSERV_ROOT=root) if root and self.local else None
        self._probe = probe or ssh_config
        self._sharing = None

    @classmethod
    def for_url(cls, url, environ=os.environ):
        """The server of an app whose git remote has this URL."""
        spec, root = server_of(url)
        return cls(environ, spec, root)

    @property
    def local(self):
        return self.host is None

    def argv(self, words, tty=False, share=True):
        """The local argument list that runs `tinyserv-remote WORDS` on the server."""
        if self.local:
            return ["bash", "-c", command_line([LOCAL_REMOTE, *words])]
        return self.ssh_argv(command_line(["tinyserv-remote", *words]), tty, share)

    def ssh_argv(self, command, tty=False, share=True):
        """ssh with our options, the host and one remote shell command (already quoted)."""
        opts = (["-t"] if tty else []) + self.port_options() + (self.sharing() if share else [])
        return [*self.ssh, *opts, "--", self.host, command]

    def port_options(self):
        """ssh's -p for a server on another port than 22."""
        return ["-p", str(self.port)] if self.port else []

    def sharing(self):
        """The ssh options that make commands share one connection to the server ([] when not ours to decide)."""
        if self._sharing is None:
            self._sharing = self._sharing_options()
        return self._sharing

    def _sharing_options(self):
        if self.local or not settings.ssh_reuse(self.environ) or not shares_by_option(self.ssh):
            return []
        directory = control_dir(self.environ)
        if directory is None or ours_to_share(directory, [*self.ssh, "-G", *self.port_options(), "--", self.host],
                                              self._probe, self.environ) is False:
            return []
        return ["-o", "ControlMaster=auto", "-o", "ControlPath=" + os.path.join(directory, self.connection_name()),
                "-o", "ControlPersist=%d" % settings.SSH_PERSIST]

    def connection_name(self):
        """The shared connection's socket name: one per ssh command (its identity and options), host and port.

        Not ssh's %C (local host, remote host, port, user): a command with another key (-i) must never ride a
        connection that a different key opened, or a deploy key would act with another key's rights.
        """
        import hashlib
        return hashlib.sha1(json.dumps([self.ssh, self.host, self.port]).encode()).hexdigest()

    def git_ssh_command(self):
        """What git should run as ssh to share tinyserv's connection (None: git's own ssh is right as it is).

        Only without GIT_SSH_COMMAND: git prefers that to a repository's core.sshCommand anyway.
        """
        if self.local or self.environ.get("GIT_SSH_COMMAND") or not self.sharing():
            return None
        return shlex.join([*self.ssh, *self.sharing()])

    def check_reached(self, returncode, stderr=""):
        """ssh exits 255 for its own failures: say so instead of blaming the command."""
        if not self.local and returncode == 255:
            detail = (stderr or "").strip().splitlines()
            raise TinyservError("cannot reach %s over ssh%s" % (self.host, ": " + detail[-1] if detail else ""))

    def run(self, words, data=None, share=True):
        """Run a remote command with data on its stdin; the CompletedProcess (text)."""
        argv = self.argv(words, share=share)
        try:
            return subprocess.run(argv, input=data, capture_output=True, text=True, env=self.env)
        except OSError as e:
            raise cannot_run(argv[0], e) from None

    def call(self, words, data=None):
        """Run a remote command that answers JSON; raise with its one-line error."""
        payload = json.dumps(data or {})
        result = self.run(words, payload)
        if result.returncode == 255 and self.sharing() and master_failed(result.stderr):
            result = self.run(words, payload, share=False)  # the shared connection died before the command ran
        self.check_reached(result.returncode, result.stderr)
        if result.returncode != 0:
            raise TinyservError(remote_error(result.stderr, result.returncode), remote_details(result.stderr))
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise TinyservError("unexpected answer from tinyserv-remote: %r" % result.stdout[:200]) from None

    def stream(self, words, tty=False, keep_stdin=False, out=None):
        """Run a remote command with its output on our terminal (or into the file out); return its exit code."""
        stdin = subprocess.PIPE if keep_stdin else (subprocess.DEVNULL if out is not None else None)
        argv = self.argv(words, tty=tty)
        try:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=out, env=self.env)
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

    def pipe(self, command, data):
        """Run a shell command on the server (quoted already) with data (bytes) on its stdin and its output
        on our terminal; its exit code."""
        argv = ["bash", "-c", command] if self.local else self.ssh_argv(command)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=self.env)
        except OSError as e:
            raise cannot_run(argv[0], e) from None
        try:
            proc.communicate(data)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        self.check_reached(proc.returncode)
        return proc.returncode

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


SSH_VALUE_FLAGS = "BbcDEeFIiJLlmOoPpQRSWw"  # ssh's options that take a value


def shares_by_option(ssh):
    """May we add connection sharing to this ssh? Only to OpenSSH's ssh, and not when its own words
    (-M, -S, -o Control...) decide it already."""
    if os.path.basename(ssh[0]) != "ssh":
        return False
    words = iter(ssh[1:])
    for word in words:
        if not word.startswith("-") or word == "--":
            break
        for i, flag in enumerate(word[1:]):
            if flag == "M":
                return False
            if flag in SSH_VALUE_FLAGS:
                value = word[i + 2:] or next(words, "")
                if flag == "S" or (flag == "o" and value.lower().startswith("control")):
                    return False
                break
    return True


def ssh_config(argv):
    """`ssh -G ...`: the settings ssh would use for a host, as text (None when this ssh cannot say)."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


SSH_CONFIGS = ["/etc/ssh/ssh_config", "/etc/ssh/ssh_config.d", "~/.ssh/config", "~/.ssh/config.d"]
DECISION_AGE = 3600  # seconds a decision about sharing is kept while the ssh configuration files stay the same


def ours_to_share(directory, probe_argv, probe, environ):
    """May tinyserv share connections for this ssh and host (True), or does the user's ssh configuration decide
    (False)? `ssh -G` is asked, and its answer kept in directory while the configuration files do not change,
    so that a command through a shared connection does not pay for it each time."""
    stamp = config_stamp(environ)
    path = os.path.join(directory, "decided-%08x" % zlib.crc32(json.dumps(probe_argv).encode()))
    try:
        with open(path) as f:
            saved = json.load(f)
        if (saved["argv"], saved["stamp"]) == (probe_argv, stamp) and time.time() - os.stat(path).st_mtime < DECISION_AGE:
            return saved["ours"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    config = probe(probe_argv)
    ours = config is not None and not config_shares(config)
    try:
        with open(path + ".%d" % os.getpid(), "w") as f:
            json.dump({"argv": probe_argv, "stamp": stamp, "ours": ours}, f)
        os.replace(path + ".%d" % os.getpid(), path)
        forget_old_decisions(directory)
    except OSError:
        pass  # only a missed saving
    return ours


def forget_old_decisions(directory):
    """Remove saved decisions nobody asked for within DECISION_AGE (servers that are gone, say)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith("decided-") and time.time() - os.stat(path).st_mtime > DECISION_AGE:
            os.unlink(path)


def config_stamp(environ):
    """The size and modification time of every ssh configuration file (and of those in the .d directories)."""
    home = environ.get("HOME") or os.path.expanduser("~")
    stamp = []
    for name in SSH_CONFIGS:
        path = home + name[1:] if name.startswith("~") else name
        paths = [path]
        if path.endswith(".d") and os.path.isdir(path):
            paths = sorted(os.path.join(path, n) for n in os.listdir(path))
        for p in paths:
            try:
                info = os.stat(p)
                stamp.append([p, info.st_size, info.st_mtime_ns])
            except OSError:
                stamp.append([p, None, None])
    return stamp


def config_shares(config):
    """Does the user's ssh configuration (ssh -G's output) already decide how connections are shared?"""
    values = dict(line.split(None, 1) for line in config.lower().splitlines() if len(line.split(None, 1)) == 2)
    return values.get("controlmaster", "false") != "false" or values.get("controlpath", "none") != "none"


def control_dir(environ=os.environ):
    """A directory of ours alone (0700) for the sockets of shared ssh connections, short enough for a
    socket path; None when there is none."""
    home = environ.get("HOME") or os.path.expanduser("~")
    candidates = [os.path.join(environ["XDG_RUNTIME_DIR"], "tinyserv-ssh")] if environ.get("XDG_RUNTIME_DIR") else []
    candidates += [os.path.join(environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "tinyserv", "ssh"),
                   "/tmp/tinyserv-ssh-%d" % os.getuid()]
    for directory in candidates:
        # A socket path has room for 103 bytes (macOS), and ssh binds %C (40) plus a 17-byte temporary
        # suffix first. Spaces and % would need quoting.
        if len(directory) <= 45 and not re.search(r"[\s%\"']", directory) and private_dir(directory):
            return directory
    return None


def private_dir(path):
    """Make path a directory only we can enter; False when it cannot be (someone else's, a symlink)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
        return True
    except OSError:
        return False


def master_failed(stderr):
    """Did ssh fail because the shared connection it went through broke (not the server refusing us)?"""
    return bool(re.search(r"mux_client|master (failed|refused|is not)|ControlSocket", stderr or ""))


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
