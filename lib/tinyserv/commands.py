"""Every command tinyserv has, declared once: name, help, arguments, whether it needs an app, what the server runs.

Made from this table: the client's command line (bin/tinyserv), the server's (bin/tinyserv-remote),
the request the client sends, shell completion, and the README's command table (a test compares
them). The client's side of a command is the Client method named like it (client.py); the server's
side is the function `serves` names, called as f(layout, app, **arguments) — its JSON result goes
back on stdout. Arguments travel on the remote command line (quoted once, in transport.py) or, for
text users type freely (config values), as JSON on standard input.
"""

import collections

Arg = collections.namedtuple("Arg", "flags options to")
Command = collections.namedtuple("Command", "name help serves app args json stream who client server app_flag")

ARGV, STDIN, LOCAL = "argv", "stdin", "local"  # where an argument goes: the remote's command line, its stdin, nowhere


def arg(*flags, to=ARGV, **options):
    """One argument: argparse's flags and options, and where it travels (ARGV, STDIN or LOCAL)."""
    return Arg(flags, options, to)


def command(name, help, serves, app=True, args=(), json=False, stream=False, who=False, client=True,
            app_flag=True):
    """A command: serves is "module.function" on the server (None: the client answers alone); app: it acts on
    one app (-a/--app on the client unless app_flag is False, APP on the server); json: a --json flag;
    stream: the server writes to the terminal itself; who: the client says who asks (for releases)."""
    return Command(name, help, serves, app, tuple(args), json, stream, who, client, serves is not None, app_flag)


def dest(a):
    """The name an argument has in the parsed arguments and in the server function's call."""
    return a.options.get("dest") or a.flags[-1].lstrip("-").replace("-", "_")


def sent(cmd, to=None):
    """The arguments of cmd that go to the server (to one place, if given)."""
    return [a for a in cmd.args if a.to != LOCAL and (to is None or a.to == to)]


NUM = arg("-n", "--num", type=int, metavar="N")
VERSION = arg("version", nargs="?", metavar="vN")

COMMANDS = [
    command("apps", "list your apps", "apps.listing", app=False, json=True),
    command("apps:create", "create an app (and a 'tinyserv' git remote)", "apps.create", json=True, who=True,
            app_flag=False, args=[arg("name", nargs="?", to=LOCAL, help="app name (default: this directory's name)")]),
    command("apps:destroy", "stop an app and delete everything it has", "apps.destroy", args=[
        arg("name", nargs="?", to=LOCAL, help="app name (default: this repository's app)"),
        arg("--confirm", metavar="NAME", to=LOCAL, help="the app's name, to skip the question")]),
    command("apps:info", "show an app's port, URLs, release and state", "apps.info", json=True),
    command("ps", "list the app's processes", "apps.processes", json=True),
    command("ps:scale", "set how many instances of each process type run", "apps.scale",
            args=[arg("changes", nargs="*", metavar="TYPE=N")]),
    command("ps:restart", "restart processes (all, a TYPE, or TYPE.N)", "apps.restart",
            args=[arg("target", nargs="?", metavar="TYPE|TYPE.N")]),
    command("ps:stop", "stop a process type until ps:start", "apps.stop", args=[arg("target", metavar="TYPE")]),
    command("ps:start", "start a stopped process type", "apps.start", args=[arg("target", metavar="TYPE")]),
    command("restart", "restart every process of the app", "apps.restart"),
    command("logs", "show the app's log (-t to follow it)", "logs.show", stream=True, args=[
        arg("-n", "--num", type=int, default=100, metavar="N", help="how many lines (default 100)"),
        arg("-t", "--tail", action="store_true", dest="following", help="keep following the log"),
        arg("--ps", metavar="TYPE", help="only this process type (web) or instance (web.1)")]),
    command("run", "run a one-off command in the app's environment", "apps.run", stream=True,
            args=[arg("command", nargs="...", metavar="COMMAND ...")]),
    command("config", "show config vars", "apps.config", json=True,
            args=[arg("--shell", action="store_true", to=LOCAL, help="print KEY='value' lines for a shell")]),
    command("config:get", "print one config var", None, args=[arg("key", metavar="KEY", to=LOCAL)]),
    command("config:set", "set config vars and restart the app", "apps.set_config", who=True,
            args=[arg("pairs", nargs="*", metavar="KEY=VALUE", to=STDIN)]),
    command("config:unset", "remove config vars and restart the app", "apps.unset_config", who=True,
            args=[arg("keys", nargs="*", metavar="KEY", to=STDIN)]),
    command("releases", "list releases", "apps.history", json=True, args=[NUM._replace(options=dict(
        NUM.options, help="only the newest N"))]),
    command("releases:info", "show one release", "apps.release_info", json=True, args=[VERSION]),
    command("rollback", "go back to an earlier release, without rebuilding", "apps.rollback", who=True,
            args=[VERSION]),
    # The server's own commands: at boot and shutdown, and what git and systemd run.
    command("startup", "at boot: start every app", "lifecycle.startup", app=False, client=False, stream=True),
    command("shutdown", "stop every app and the supervisor", "lifecycle.shutdown", app=False, client=False,
            stream=True),
    command("systemd-unit", "print a systemd unit that runs tinyserv", "lifecycle.systemd_unit", app=False,
            client=False, stream=True),
    command("supervise", "run the supervisor in the foreground", "lifecycle.supervise", app=False, client=False,
            stream=True, args=[arg("--boot", action="store_true", help="clear a previous shutdown first"),
                               arg("--if-none", action="store_true", help="exit at once if a supervisor runs"),
                               arg("--standby", action="store_true",
                                   help="wait until the running supervisor dies, then take over")]),
    command("hook", None, "hook.main", client=False, stream=True),
    command("version", "print the version", "lifecycle.version", app=False, client=False, stream=True),
    # The front door (nginx): domains, HTTPS certificates, maintenance mode, features.
    command("domains", "list the domains the app answers at", "domains.listing", json=True),
    command("domains:add", "make the app answer at a domain", "domains.add",
            args=[arg("hostname", metavar="HOST", help="a host name like www.example.org")]),
    command("domains:remove", "stop the app answering at a domain", "domains.remove",
            args=[arg("hostname", metavar="HOST")]),
    command("certs", "list the app's TLS certificates", "certs.listing", json=True),
    command("certs:add", "serve the app's domains over HTTPS with a certificate and its key (PEM files)",
            "certs.add", args=[arg("cert", metavar="CERT", to=STDIN, help="the certificate (chain), a PEM file"),
                               arg("key", metavar="KEY", to=STDIN, help="its private key, a PEM file")]),
    command("certs:remove", "stop serving a certificate", "certs.remove",
            args=[arg("name", nargs="?", metavar="NAME", help="which one (see 'tinyserv certs')")]),
    command("certs:auto:enable", "get and renew certificates for the app's domains automatically (ACME)",
            "certs.auto_enable"),
    command("certs:auto:refresh", "renew the app's automatic certificate now", "certs.auto_refresh"),
    command("certs:auto:disable", "stop getting certificates automatically", "certs.auto_disable"),
    command("maintenance", "show whether the app is in maintenance mode", "frontdoor.maintenance_status"),
    command("maintenance:on", "answer every request with a 503 page; processes keep running",
            "frontdoor.maintenance_on"),
    command("maintenance:off", "serve the app again", "frontdoor.maintenance_off"),
    command("features", "list the app's features", "frontdoor.features", json=True),
    command("features:enable", "enable a feature (http-session-affinity)", "frontdoor.feature_enable",
            args=[arg("feature", metavar="FEATURE")]),
    command("features:disable", "disable a feature", "frontdoor.feature_disable",
            args=[arg("feature", metavar="FEATURE")]),
    command("certs:renew", "renew the automatic certificates that expire within 30 days", "certs.renew_due",
            app=False, client=False, stream=True),
]

BY_NAME = {c.name: c for c in COMMANDS}


def client_commands():
    return [c for c in COMMANDS if c.client]


def server_commands():
    return [c for c in COMMANDS if c.server]


def request(cmd, args, app=None, by=None):
    """The remote command line (after `tinyserv-remote`) and the stdin object for cmd with parsed args."""
    options, positionals = [], []
    for a in sent(cmd, ARGV):
        value = getattr(args, dest(a))
        if a.flags[0].startswith("-"):
            if a.options.get("action") == "store_true":
                options += [a.flags[-1]] if value else []
            elif value is not None:
                options += [a.flags[-1], str(value)]
        elif a.options.get("nargs") in ("*", "..."):
            positionals += [str(v) for v in value]
        elif value is not None:
            positionals.append(str(value))
    positionals = ([app] if cmd.app else []) + positionals
    words = [cmd.name] + options + (["--"] + positionals if positionals else [])
    payload = {dest(a): getattr(args, dest(a)) for a in sent(cmd, STDIN)}
    if cmd.who:
        payload["by"] = by
    return words, payload


def usage(cmd):
    """How the README shows a command: `tinyserv ps:scale TYPE=N ...`."""
    words = ["tinyserv", cmd.name]
    for a in cmd.args:
        words.append(_usage_word(a))
    if cmd.json:
        words.append("[--json]")
    return " ".join(words)


def _usage_word(a):
    name = a.options.get("metavar") or dest(a).upper()
    if a.flags[0].startswith("-"):
        flag = a.flags[0]
        return "[%s]" % flag if a.options.get("action") == "store_true" else "[%s %s]" % (flag, name)
    nargs = a.options.get("nargs")
    return {"?": "[%s]" % name, "*": "%s ..." % name, "...": name}.get(nargs, name)


def readme_table():
    """The README's command table, made from the declarations."""
    rows = ["| command | what it does |", "|---|---|"]
    for cmd in client_commands():
        rows.append("| `%s` | %s |" % (usage(cmd).replace("|", "\\|"), cmd.help))
    return "\n".join(rows) + "\n"
