"""tinyserv: the developer's command line. Heroku's verbs, run against your own server."""

import re
import sys

from tinyserv import __version__
from tinyserv.common import commands, printer
from tinyserv.cli.apps import AppCommands
from tinyserv.cli.data import DataCommands
from tinyserv.cli.developer import DeveloperCommands
from tinyserv.cli.frontdoor import FrontDoorCommands
from tinyserv.cli.target import app_option, find_remote, resolve_app, who
from tinyserv.common.errors import ArgumentParser, RawDescriptionHelpFormatter, TinyservError, guarded, parse


class Client(AppCommands, FrontDoorCommands, DataCommands, DeveloperCommands):
    """One invocation: the parsed arguments, the remote, and the output stream.

    Each command's client side is the method named like it (ps:scale -> ps_scale), on one of the
    Client's parts: apps.py, frontdoor.py, data.py, developer.py; its name, help and arguments are
    declared in commands.py. Here: what every command uses to reach the server and to answer.
    """

    def __init__(self, args, remote=None, out=None):
        self.args = args
        self._remote = remote
        self.out = out or sys.stdout

    @property
    def remote(self):
        """The server this command goes to (found once, from the app's git remote or TINYSERV_REMOTE)."""
        if self._remote is None:
            self._remote = find_remote(self.args)
        return self._remote

    def say(self, text=""):
        self.out.write(text + "\n")

    def json_or(self, value, render):
        """--json: the server's answer as it is; else render(answer) with every text in it escaped, since an
        app, a build or a commit may have written it (a committer's email, a Procfile's command)."""
        if getattr(self.args, "json", False):
            self.say(printer.dumps(value))
        else:
            render(printer.escaped(value))

    @property
    def app(self):
        """The app this command acts on (found once)."""
        if getattr(self, "_app", None) is None:
            self._app = resolve_app(self.args)
        return self._app

    def call(self, name=None, app=None):
        """Run a command (this one by default) on the server with our arguments; its JSON answer."""
        cmd = commands.BY_NAME[name or self.args.verb]
        words, payload = commands.request(cmd, self.args, (app or self.app) if cmd.app else None, who())
        return self.remote.call(words, payload)

    def stream(self, **options):
        """Run this (streaming) command on the server with its output on our terminal; its exit code."""
        cmd = commands.BY_NAME[self.args.verb]
        words, _ = commands.request(cmd, self.args, self.app)
        return self.remote.stream(words, **options)

    def confirm(self, given, warning):
        """--confirm APP, or the app's name typed on a terminal; anything else leaves everything as it is."""
        app = self.app
        if given is None:
            if not sys.stdin.isatty():
                raise TinyservError("this needs --confirm %s when not run on a terminal" % app)
            self.say(" !    " + warning)
            try:
                given = input(" !    To proceed, type %s: " % app).strip()
            except EOFError:
                raise TinyservError("no confirmation given: nothing was changed") from None
        if given != app:
            raise TinyservError("confirmation %r does not match %r: nothing was changed" % (given, app))

    def web_url(self, port):
        return "http://%s:%d/" % (self.remote.web_host(), port)

    def report_release(self, doing, result, more=None):
        self.say("%s ⬢ %s... done, v%d" % (doing, self.app, result["release"]["version"]))
        if more:
            self.say(more)


def method_name(name):
    """The Client method of a command: ps:scale -> ps_scale."""
    return name.replace(":", "_").replace("-", "_")


def parser(verbs=None):
    """The command line; with verbs, only those commands' parsers (see commands.named_in)."""
    p = ArgumentParser(prog="tinyserv", description=__doc__ + "\n\nTINYSERV_REMOTE names the server "
               "(user@host, ssh://user@host:port, or localhost, the default).",
               formatter_class=RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version="tinyserv " + __version__)
    p.add_argument("-a", "--app", dest="app_first", metavar="NAME", help="the app, for any command that takes one")
    p.add_argument("-r", "--remote", dest="git_remote_first", metavar="GIT_REMOTE",
                   help="the git remote that names the app and its server (default: tinyserv)")
    # prog given: else argparse formats a usage line (and imports shutil) just to name the subcommands
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser, prog="tinyserv")
    sub.required = True
    for cmd in commands.client_commands():
        if verbs is not None and cmd.name not in verbs:
            continue
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.app and cmd.app_flag:
            sp.add_argument("-a", "--app", metavar="NAME", help="the app (default: this repository's)")
            sp.add_argument("-r", "--remote", dest="git_remote", metavar="GIT_REMOTE",
                            help="the git remote that names the app and its server (default: tinyserv)")
        else:
            sp.set_defaults(app=None)
        for a in commands.client_args(cmd):
            sp.add_argument(*a.flags, **a.options)
        if cmd.json:
            sp.add_argument("--json", action="store_true", help="print JSON")
    return p


NEGATIVE_NUMBER = re.compile(r"-[0-9]+(\.[0-9]*)?\Z")  # argparse takes these as values, not options


def stray_dashes_as_positionals(argv):
    """argv with each word after the command that starts with '-' but is none of its options (`domains:add
    -x.test`) moved behind '--': the command's positional argument, as meant, which its own check then
    refuses in one line ('invalid domain'), where argparse would say HOST is missing."""
    at = next((i for i, word in enumerate(argv) if word in commands.BY_NAME), None)
    if at is None or "--" in argv[at:]:
        return argv
    args = commands.client_args(commands.BY_NAME[argv[at]])
    positional = [a for a in args if not a.flags[0].startswith("-")]
    if not positional or any(a.options.get("nargs") == "..." for a in positional):
        return argv
    flags = {"-h", "--help", "--json", "-a", "--app", "-r", "--remote"} | {
        flag for a in args for flag in a.flags if flag.startswith("-")}

    def stray(word):
        if not word.startswith("-") or word == "-" or NEGATIVE_NUMBER.match(word):
            return False
        return not (word.partition("=")[0] in flags or (not word.startswith("--") and word[:2] in flags))
    words = argv[at + 1:]
    return argv[:at + 1] + [w for w in words if not stray(w)] + ["--"] + [w for w in words if stray(w)] \
        if any(stray(w) for w in words) else argv


def main(argv=None):
    """Entry point of bin/tinyserv."""
    argv = stray_dashes_as_positionals(sys.argv[1:] if argv is None else argv)

    def body():
        args = parse(parser(commands.named_in(argv)), argv)
        if app_option(args) is not None and not (commands.BY_NAME[args.verb].app and
                                                 commands.BY_NAME[args.verb].app_flag):
            raise TinyservError("%s does not take -a/--app" % args.verb)
        return getattr(Client(args), method_name(args.verb))()
    return guarded(body)
