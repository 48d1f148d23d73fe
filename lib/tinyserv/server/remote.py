"""tinyserv-remote: the server side. The client calls it over ssh; JSON goes back where parsed.

Its command line is made from the table in commands.py: `tinyserv-remote VERB [APP] ARGS`,
with the arguments declared to travel on standard input read from a JSON object there. Each
command runs the function that serves it (server/topics/TOPIC.py, or the module an internal
command names); only that module is imported, so the long-lived supervisor process does not
carry the others.
"""

import importlib
import json
import os
import sys

from tinyserv.common import commands, settings, userfiles
from tinyserv.common.commands import ARGV, STDIN, dest, sent
from tinyserv.common.errors import ArgumentParser, TinyservError, guarded, parse
from tinyserv.state.layout import Layout, server_root
from tinyserv.platform.rootsafe import place_locks


def parser(verbs=None):
    """The command line; with verbs, only those commands' parsers (building all of them is most of the start-up)."""
    p = ArgumentParser(prog="tinyserv-remote", description=__doc__)
    # prog given: else argparse formats a usage line (and imports shutil) just to name the subcommands
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=ArgumentParser, prog="tinyserv-remote")
    sub.required = True
    for cmd in commands.server_commands():
        if verbs is not None and cmd.name not in verbs:
            continue
        # A command without help (hook, ssh-serve, setup) is left out of the listing: argparse lists only the
        # parsers given a help, and prints ==SUPPRESS== for argparse.SUPPRESS.
        listed = {"help": cmd.help} if cmd.help else {}
        sp = sub.add_parser(cmd.name, description=cmd.help, **listed)
        if cmd.app:
            sp.add_argument("app")
        for a in sent(cmd, ARGV):
            sp.add_argument(*a.flags, **a.options)
    return p


def read_input(cmd):
    """The JSON object the client sends on stdin: the command's STDIN arguments (and who asks)."""
    data = userfiles.read_stream(sys.stdin.buffer, userfiles.MAX_STDIN, "standard input")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TinyservError("standard input is not UTF-8 text") from None
    try:
        data = json.loads(text or "{}")
    except ValueError as e:
        if cmd.text_stdin:  # not JSON: the text itself (`tinyserv-remote keys:add ci < key.pub`)
            return {cmd.text_stdin: text}
        raise TinyservError("expected JSON on standard input: %s" % e) from None
    except RecursionError:
        raise TinyservError("the JSON on standard input nests too deeply to be read") from None
    if not isinstance(data, dict):
        raise TinyservError("expected a JSON object on standard input")
    allowed = {dest(a) for a in sent(cmd, STDIN)} | ({"by"} if cmd.who else set())
    unexpected = sorted(set(data) - allowed)
    if unexpected:
        raise TinyservError("%s does not take %s on standard input" % (cmd.name, ", ".join(map(repr, unexpected))))
    if "by" in data and not isinstance(data["by"], str):
        raise TinyservError("'by' must be text")
    return data


def handler(cmd):
    """The function that serves cmd (commands.py says which: its topic's module, or the one it names)."""
    module, _, function = cmd.serves.rpartition(".")
    return getattr(importlib.import_module("tinyserv." + module), function)


def call(layout, cmd, args):
    """Run the server function of cmd with the parsed arguments (and stdin's); return its result."""
    kwargs = {dest(a): getattr(args, dest(a)) for a in sent(cmd, ARGV)}
    if not cmd.stream:
        kwargs.update(read_input(cmd))
    target = handler(cmd)
    return target(layout, args.app, **kwargs) if cmd.app else target(layout, **kwargs)


def main(argv=None):
    """Entry point of bin/tinyserv-remote."""
    argv = sys.argv[1:] if argv is None else argv

    def body():
        args = parse(parser(commands.named_in(argv)), argv)
        cmd = commands.BY_NAME[args.verb]
        layout = place_locks(Layout(server_root()).check())  # root mode: the supervisor's locks are root's
        settings.load_settings_file(layout.root)  # TINYSERV_POSTGRES_URL and the like, unless the environment has them
        # A push whose process was killed is settled before anything else (deploy.pending_file says where
        # its record is; looked at here first so that most commands need not load the deploy code).
        if cmd.app and cmd.name != "hook" and os.path.exists(layout.app_file(args.app, "pending.json")):
            from tinyserv.deploy.push import recover
            recover(layout, args.app)
        result = call(layout, cmd, args)
        if cmd.stream:
            return result
        from tinyserv.common.printer import dumps
        print(dumps(result))
    return guarded(body)
