"""The client's side of the developer's own commands: what runs on this machine (local, open, completion,
config:pull/push) and setting a server up (server:install, version)."""

import argparse
import os
import sys

from tinyserv import __version__
from tinyserv.common import commands, configvars, printer, userfiles
from tinyserv.cli.target import who
from tinyserv.cli.transport import Remote
from tinyserv.common.errors import TinyservError

# macOS's `open`; elsewhere `open` may be openvt, so only the desktop's opener and WSL's.
OPENERS = ["open"] if sys.platform == "darwin" else ["xdg-open", "wslview"]


class DeveloperCommands:
    """A part of the Client (client.py): each method is the command named like it."""

    def server_remote(self):
        """The server the command line names (REMOTE), else TINYSERV_REMOTE's."""
        spec = getattr(self.args, "server", None)
        return Remote(os.environ, spec) if spec else Remote(os.environ)

    def version(self):
        from tinyserv.cli.install import server_version
        remote = self.server_remote()
        server = server_version(remote)
        info = {"client": __version__, "server": server, "server_host": remote.host or "localhost",
                "same": server == __version__}
        self.json_or(info, lambda i: self.say("tinyserv %s (this machine)\ntinyserv-remote %s (%s)" % (
            i["client"], i["server"] or "not installed", i["server_host"])))
        if not info["same"]:
            printer.warning("the server %s; 'tinyserv server:install%s' installs this version there without "
                            "stopping apps" % ("has %s, this machine %s" % (server, __version__) if server else
                                               "has no tinyserv", " " + self.args.server if self.args.server else ""))

    def server_install(self):
        from tinyserv.cli.install import install
        remote = self.server_remote()
        if remote.local:
            raise TinyservError("server:install works over ssh: name the server ('tinyserv server:install "
                                "user@host') or set TINYSERV_REMOTE")
        code = install(remote, self.say, root_user=self.args.user if self.args.root else None)
        if code == 0:
            self.say("-----> tinyserv %s is ready on %s: 'tinyserv apps:create' in an app's repository, then "
                     "'git push tinyserv main'" % (__version__, remote.host))
        return code  # the doctor printed what failed, and each fix

    def local(self):
        from tinyserv.cli import local
        return local.run(self.args.types, self.args.procfile, self.args.env or ".env", self.args.env is not None,
                         self.args.port, self.args.timeout, self.out)

    def call_with(self, name, **values):
        """Run another command on the server, with these as its arguments."""
        cmd = commands.BY_NAME[name]
        words, payload = commands.request(cmd, argparse.Namespace(**values), self.app, who())
        return self.remote.call(words, payload)

    def config_pull(self):
        from tinyserv.common import dotenv
        path = self.args.env
        server = self.call("config")
        local_values = dotenv.parse_env(read_text(path), path) if os.path.exists(path) else {}
        kept = sorted(k for k in server if k in local_values and local_values[k] != server[k]
                      and not self.args.overwrite)
        merged = dict(local_values, **{k: v for k, v in server.items() if k not in kept})
        write_private(path, dotenv.format_env(merged))
        result = {"file": path, "pulled": sorted(k for k in server if k not in kept), "kept": kept}
        self.json_or(result, lambda r: self.say(
            "Config vars of ⬢ %s written to %s: %s" % (self.app, path, ", ".join(r["pulled"]) or "(none)")
            + ("\nKept the values %s has for %s (--overwrite replaces them)" % (path, ", ".join(kept))
               if kept else "")))

    def config_push(self):
        from tinyserv.common import dotenv
        path = self.args.env
        if not os.path.exists(path):
            raise TinyservError("no %s here: write one (NAME=value lines), or pull the app's with config:pull" % path)
        wanted = dotenv.parse_env(read_text(path), path)
        configvars.check_changes(wanted, [])  # refused here before anything travels; the server checks again
        current = self.call("config")
        changes = {k: v for k, v in wanted.items() if current.get(k) != v}
        if not changes:
            self.json_or({"pushed": [], "release": None}, lambda r: self.say(
                "Config vars of ⬢ %s already match %s: nothing to push" % (self.app, path)))
            return
        result = self.call_with("config:set", pairs=["%s=%s" % item for item in sorted(changes.items())])
        result["pushed"] = sorted(changes)
        self.json_or(result, lambda r: self.report_release(
            "Setting %s from %s and restarting" % (", ".join(r["pushed"]), path), r))

    def open(self):
        import shutil
        import subprocess
        info = self.call("apps:info")
        url = self.web_url(info["port"]) + self.args.path.lstrip("/")
        opener = next((shutil.which(p) for p in OPENERS if shutil.which(p)), None)
        if opener is None:
            self.say(url)
            return
        try:
            subprocess.Popen([opener, url], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            self.say(url)  # the opener cannot run: the address is still what the user wants
            return
        self.say("Opening %s" % url)

    def completion(self):
        from tinyserv.cli import completion
        self.out.write(getattr(completion, self.args.shell)())


def read_text(path):
    """A local .env file's text (a regular file of at most 1 MiB), or the one error that says why not."""
    return userfiles.read_text(path, userfiles.MAX_ENV)


def write_private(path, text):
    """Write a local file only its owner can read (config vars are often secrets), replacing it atomically."""
    import tempfile
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tinyserv-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise TinyservError("cannot write %s: %s" % (path, e.strerror)) from None
