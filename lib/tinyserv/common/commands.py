"""Every command tinyserv has, declared once: name, help, arguments, its scope, what the server runs.

Made from this table: the client's command line (bin/tinyserv), the server's (bin/tinyserv-remote),
the request the client sends, shell completion, and the README's command table (a test compares
them). Where each side of a command is, by its name alone:
  the client's side    the Client's method named like the command, ':' and '-' as '_' (`pg:backups:capture` is
                       pg_backups_capture), in the part of cli/ named for its concern: apps.py (apps, ps, logs,
                       run, config, releases, rollback, keys), frontdoor.py (domains, certs, maintenance,
                       features), data.py (storage, addons, pg, cron, backups), developer.py (what runs on this
                       machine: local, open, config:pull/push, completion, server:install, version); client.py
                       joins them and holds what every command uses to reach the server.
  the server's side    for a command of a topic, `TOPIC[:VERB...]`, the function VERB (':' and '-' as '_';
                       `index` for the bare topic, a trailing '_' on a Python name like `set`) of
                       lib/tinyserv/server/topics/TOPIC.py, so `ls server/topics` is the command map; an alias
                       names the command it stands for; the server's own commands (startup, hook, backup ...)
                       name "module.function" themselves. Called as f(layout, app, **arguments); its JSON
                       result goes back on stdout.
Arguments travel on the remote command line (quoted once, in transport.py) or, for text users type
freely (config values), as JSON on standard input.
"""

import builtins
import collections
import keyword

Arg = collections.namedtuple("Arg", "flags options to typed")
Command = collections.namedtuple("Command", "name help serves app args json stream who client server app_flag "
                                            "text_stdin scope door alias_of")

ARGV, STDIN, LOCAL = "argv", "stdin", "local"  # where an argument goes: the remote's command line, its stdin, nowhere
TOPIC = "topic"  # serves=TOPIC: server/topics/<topic>.py serves it (handler_name)
# A command's scope, which is what a deploy key limited to some apps may do with it (server/door.py):
APP = "app"              # one app, named on its command line: only an app the key may touch
EVERY_APP = "every app"  # a listing of every app: a limited key sees its own apps only
SERVER = "server"        # beyond any one app (apps:create, keys, backup): a key that is not limited
ANY = "any"              # nothing of any app (version): every key


def arg(*flags, to=ARGV, typed=True, **options):
    """One argument: argparse's flags and options, and where it travels (ARGV, STDIN or LOCAL); typed=False:
    the client's method fills it in (a key read from a file), so it is not on the client's command line."""
    return Arg(flags, options, to, typed)


def alias(name):
    """serves=alias("ps:restart"): this command is that one's, under another name (Heroku's `restart`)."""
    return ("alias", name)


def command(name, help, serves, app=True, args=(), json=False, stream=False, who=False, client=True,
            app_flag=True, text_stdin=None, scope=None, door=None):
    """A command: serves is TOPIC (server/topics/<topic>.py serves it), alias(NAME), "module.function" for the
    server's own commands, or None (the client answers alone); app: it acts on one app (-a/--app on the client
    unless app_flag is False, APP on the server); json: a --json flag; stream: the server writes to the terminal
    itself; who: the client says who asks (for releases); text_stdin: the STDIN argument that plain text on the
    server's stdin fills (an admin piping a .pub file); scope: APP, EVERY_APP, SERVER or ANY (default: APP for
    a command on one app, else ANY); door: a deploy key may run it over ssh (default: the client's commands)."""
    alias_of = serves[1] if isinstance(serves, tuple) else None
    if alias_of:
        serves = handler_name(alias_of)
    elif serves == TOPIC:
        serves = handler_name(name)
    return Command(name, help, serves, app, tuple(args), json, stream, who, client, serves is not None, app_flag,
                   text_stdin, scope or (APP if app else ANY), client if door is None else door, alias_of)


def topic_of(name):
    """`pg:backups:capture` -> 'pg'."""
    return name.partition(":")[0]


def handler_name(name):
    """The function that serves the command `name` of a topic: "server.topics.pg.backups_capture"."""
    verb = name.partition(":")[2].replace(":", "_").replace("-", "_") or "index"
    if keyword.iskeyword(verb) or hasattr(builtins, verb):
        verb += "_"
    return "server.topics.%s.%s" % (topic_of(name).replace("-", "_"), verb)


def dest(a):
    """The name an argument has in the parsed arguments and in the server function's call."""
    return a.options.get("dest") or a.flags[-1].lstrip("-").replace("-", "_")


def sent(cmd, to=None):
    """The arguments of cmd that go to the server (to one place, if given)."""
    return [a for a in cmd.args if a.to != LOCAL and (to is None or a.to == to)]


NUM = arg("-n", "--num", type=int, metavar="N")
SERVER = arg("server", nargs="?", metavar="REMOTE", to=LOCAL,
             help="user@host, ssh://user@host:port or an ssh alias (default: TINYSERV_REMOTE)")
ENV_FILE = arg("-e", "--env", default=".env", metavar="FILE", to=LOCAL, help="the file (default .env)")
VERSION = arg("version", nargs="?", metavar="vN")

COMMANDS = [
    command("apps", "list your apps", TOPIC, app=False, json=True, scope=EVERY_APP),
    command("apps:create", "create an app (and a 'tinyserv' git remote)", TOPIC, json=True, who=True,
            app_flag=False, scope=SERVER,
            args=[arg("name", nargs="?", to=LOCAL, help="app name (default: this directory's name)"),
                  arg("--scheduler", metavar="NAME", choices=["local", "swarm"],
                      help="who runs its processes: local or swarm (default: TINYSERV_SCHEDULER, else local)")]),
    command("apps:destroy", "stop an app and delete everything it has", TOPIC, args=[
        arg("name", nargs="?", to=LOCAL, help="app name (default: this repository's app)"),
        arg("--confirm", metavar="NAME", to=LOCAL, help="the app's name, to skip the question")]),
    command("apps:info", "show an app's port, URLs, release and state", TOPIC, json=True),
    command("scheduler:set", "choose who runs the app's processes: local (this server) or swarm (Docker Swarm); "
            "a deployed app moves there", TOPIC, json=True, who=True, args=[arg("name", metavar="NAME", choices=["local", "swarm"], help="local or swarm")]),
    command("ps", "list the app's processes", TOPIC, json=True),
    command("ps:scale", "set how many instances of each process type run", TOPIC, json=True,
            args=[arg("changes", nargs="*", metavar="TYPE=N")]),
    command("ps:restart", "restart processes (all, a TYPE, or TYPE.N)", TOPIC,
            args=[arg("target", nargs="?", metavar="TYPE|TYPE.N")]),
    command("ps:stop", "stop a process type until ps:start", TOPIC, args=[arg("target", metavar="TYPE")]),
    command("ps:start", "start a stopped process type", TOPIC, args=[arg("target", metavar="TYPE")]),
    command("restart", "restart every process of the app", alias("ps:restart")),
    command("logs", "show the app's log (-t to follow it)", TOPIC, stream=True, args=[
        arg("-n", "--num", type=int, default=100, metavar="N", help="how many lines (default 100)"),
        arg("-t", "--tail", action="store_true", dest="following", help="keep following the log"),
        arg("--ps", metavar="TYPE", help="only this process type (web) or instance (web.1)"),
        arg("--raw", action="store_true",
            help="the lines as the app wrote them (else control characters show as \\x1b and the like)")]),
    command("run", "run a one-off command in the app's environment", TOPIC, stream=True,
            args=[arg("command", nargs="...", metavar="COMMAND ...")]),
    command("config", "show config vars", TOPIC, json=True,
            args=[arg("--shell", action="store_true", to=LOCAL, help="print KEY='value' lines for a shell")]),
    command("config:get", "print one config var", None, json=True, args=[arg("key", metavar="KEY", to=LOCAL)]),
    command("config:set", "set config vars and restart the app", TOPIC, who=True, json=True,
            args=[arg("pairs", nargs="*", metavar="KEY=VALUE", to=STDIN)]),
    command("config:unset", "remove config vars and restart the app", TOPIC, who=True, json=True,
            args=[arg("keys", nargs="*", metavar="KEY", to=STDIN)]),
    command("releases", "list releases", TOPIC, json=True, args=[NUM._replace(options=dict(
        NUM.options, help="only the newest N"))]),
    command("releases:info", "show one release", TOPIC, json=True, args=[VERSION]),
    command("rollback", "go back to an earlier release, without rebuilding", TOPIC, who=True, json=True,
            args=[VERSION]),
    # Deploy keys: ssh keys that may only push and run these commands (server/keys.py, server/door.py).
    command("keys", "list deploy keys", TOPIC, app=False, json=True, scope=SERVER),
    command("keys:add", "add a deploy key: it may push and run tinyserv commands, and nothing else", TOPIC,
            app=False, scope=SERVER, text_stdin="key", args=[
                arg("name", metavar="NAME", help="a name for the key"),
                arg("file", nargs="?", metavar="FILE", to=LOCAL,
                    help="the public key (default: ~/.ssh/id_ed25519.pub, else id_ecdsa.pub, id_rsa.pub)"),
                arg("--apps", metavar="APP,APP", help="only these apps (default: every app, and managing keys)"),
                arg("--push-only", action="store_true", help="it may push, and run no command"),
                arg("key", to=STDIN, typed=False)]),
    command("keys:remove", "remove a deploy key: it can no longer log in", TOPIC, app=False, scope=SERVER,
            args=[arg("name", metavar="NAME")]),
    # The server's own commands: at boot and shutdown, and what git and systemd run.
    command("startup", "at boot: start every app", "server.lifecycle.startup", app=False, client=False, stream=True),
    command("shutdown", "stop every app and the supervisor", "server.lifecycle.shutdown", app=False, client=False,
            stream=True),
    command("systemd-unit", "print a systemd unit that runs tinyserv", "server.lifecycle.systemd_unit", app=False,
            client=False, stream=True,
            args=[arg("--root", action="store_true",
                      help="root mode: the supervisor runs as root and every app as a user of its own")]),
    command("supervise", "run the supervisor in the foreground", "server.lifecycle.supervise", app=False, client=False,
            stream=True, args=[arg("--boot", action="store_true", help="clear a previous shutdown first"),
                               arg("--if-none", action="store_true", help="exit at once if a supervisor runs"),
                               arg("--standby", action="store_true",
                                   help="wait until the running supervisor dies, then take over")]),
    command("hook", None, "deploy.hook.main", client=False, stream=True),
    command("ssh-serve", None, "server.door.serve", app=False, client=False, stream=True,
            args=[arg("--key", metavar="NAME", required=True)]),
    command("version", "show tinyserv's version here and on the server (warns when they differ)",
            "server.lifecycle.version", app=False, json=True, args=[SERVER]),
    # The developer's side: setting a server up and checking it, working on this machine, small things.
    command("server:install", "install tinyserv on the server over ssh, or upgrade it without stopping apps",
            None, app=False, args=[SERVER, arg("--root", action="store_true", to=LOCAL,
                                               help="root mode, connecting as root: apps isolated from each other"),
                                   arg("--user", default="deploy", metavar="USER", to=LOCAL,
                                       help="with --root: the deploy user, made if missing (default deploy)")]),
    command("setup", None, "server.setup.setup", app=False, client=False, stream=True,
            args=[arg("--deploy-user", metavar="USER", help="root mode: the deploy user (server:install --root)")]),
    command("doctor", "check this server: versions, PATH, root, supervisor, boot, disk, programs", "server.doctor.doctor",
            app=False, client=False, stream=True, scope=SERVER, door=True),
    command("local", "run the app's Procfile on this machine, as heroku local does", None, app=False, args=[
        arg("types", nargs="*", metavar="TYPE", to=LOCAL, help="only these process types (default: all)"),
        arg("-e", "--env", metavar="FILE", to=LOCAL, help="the environment file (default .env, if there is one)"),
        arg("-f", "--procfile", default="Procfile", metavar="FILE", to=LOCAL, help="default: Procfile"),
        arg("-p", "--port", type=int, default=5000, metavar="PORT", to=LOCAL,
            help="the first process's PORT; each next one gets 100 more (default 5000)"),
        arg("-t", "--timeout", type=float, default=5, metavar="SECONDS", to=LOCAL,
            help="seconds between SIGTERM and SIGKILL when stopping (default 5)")]),
    command("config:pull", "write the app's config vars into .env (keeps the values there unless --overwrite)",
            None, json=True, args=[ENV_FILE, arg("--overwrite", action="store_true", to=LOCAL,
                                                 help="replace values .env has already")]),
    command("config:push", "set the app's config vars from .env (boot-checked, like config:set)", None,
            json=True, args=[ENV_FILE]),
    command("open", "open the app in a web browser (prints its address when there is none)", None,
            args=[arg("path", nargs="?", default="", metavar="PATH", to=LOCAL, help="a path on the app")]),
    command("completion", "print shell completion for bash or zsh (eval \"$(tinyserv completion bash)\")", None,
            app=False, args=[arg("shell", choices=["bash", "zsh"], metavar="SHELL", to=LOCAL, help="bash or zsh")]),
    # Apps that keep data (issue 10): storage, add-ons, scheduled jobs, backups.
    command("storage", "show the app's data directory (TINYSERV_DATA_DIR): path and size", TOPIC,
            json=True),
    command("addons", "list the app's add-ons", TOPIC, json=True),
    command("addons:create", "create an add-on (postgresql or redis) and set its URL config var",
            TOPIC, json=True, who=True, args=[arg("kind", metavar="KIND", help="postgresql or redis")]),
    command("addons:destroy", "unset an add-on's config var, then delete it and its data", TOPIC,
            who=True, args=[arg("addon", metavar="NAME", help="the add-on (see 'tinyserv addons')"),
                            arg("--confirm", metavar="APP", to=LOCAL, help="the app's name, to skip the question")]),
    command("addons:info", "show one add-on", TOPIC, json=True, args=[arg("addon", metavar="NAME")]),
    command("pg:psql", "open psql on the app's database", TOPIC, stream=True, args=[
        arg("-c", "--command", metavar="SQL", help="run SQL and exit instead of opening a prompt"),
        arg("database", nargs="?", metavar="DATABASE", help="the add-on (default: the one in DATABASE_URL)")]),
    command("pg:backups", "list the database's backups", TOPIC, json=True,
            args=[arg("database", nargs="?", metavar="DATABASE")]),
    command("pg:backups:capture", "back up the database now (pg_dump)", TOPIC, json=True,
            args=[arg("database", nargs="?", metavar="DATABASE")]),
    command("pg:backups:restore", "load a backup into the database (pg_restore), replacing what it has",
            TOPIC, args=[
                arg("backup", nargs="?", metavar="ID", help="the backup (default: the newest)"),
                arg("database", nargs="?", metavar="DATABASE"),
                arg("--confirm", metavar="APP", to=LOCAL, help="the app's name, to skip the question")]),
    command("pg:backups:download", "save a backup to a file here", TOPIC, stream=True,
            args=[arg("backup", nargs="?", metavar="ID", help="the backup (default: the newest)"),
                  arg("-o", "--output", metavar="FILE", to=LOCAL, help="where (default: latest.dump)"),
                  arg("--database", metavar="DATABASE")]),
    command("cron", "list the app's scheduled jobs (app.json's cron)", TOPIC, json=True),
    command("backups:capture", "back up the whole server into a file here", None, app=False, args=[
        arg("file", nargs="?", metavar="FILE", to=LOCAL,
            help="where (default: tinyserv-backup-HOST-TIME.tar.gz)")]),
    command("backup", "write an archive of every app (FILE, or - for stdout)", "server.backup.capture", app=False,
            client=False, stream=True, scope=SERVER, door=True, args=[arg("file", nargs="?", metavar="FILE|-")]),
    command("restore", "bring back every app of an archive (FILE, or - for stdin)", "server.backup.restore", app=False,
            client=False, stream=True, args=[arg("file", metavar="FILE|-")]),
    # The front door (nginx): domains, HTTPS certificates, maintenance mode, features.
    command("domains", "list the domains the app answers at", TOPIC, json=True),
    command("domains:add", "make the app answer at a domain", TOPIC,
            args=[arg("hostname", metavar="HOST", help="a host name like www.example.org")]),
    command("domains:remove", "stop the app answering at a domain", TOPIC,
            args=[arg("hostname", metavar="HOST")]),
    command("certs", "list the app's TLS certificates", TOPIC, json=True),
    command("certs:add", "serve the app's domains over HTTPS with a certificate and its key (PEM files)",
            TOPIC, args=[arg("cert", metavar="CERT", to=STDIN, help="the certificate (chain), a PEM file"),
                               arg("key", metavar="KEY", to=STDIN, help="its private key, a PEM file")]),
    command("certs:remove", "stop serving a certificate", TOPIC,
            args=[arg("name", nargs="?", metavar="NAME", help="which one (see 'tinyserv certs')")]),
    command("certs:auto:enable", "get and renew certificates for the app's domains automatically (ACME)",
            TOPIC),
    command("certs:auto:refresh", "renew the app's automatic certificate now", TOPIC),
    command("certs:auto:disable", "stop getting certificates automatically", TOPIC),
    command("maintenance", "show whether the app is in maintenance mode", TOPIC, json=True),
    command("maintenance:on", "answer every request with a 503 page; processes keep running",
            TOPIC),
    command("maintenance:off", "serve the app again", TOPIC),
    command("features", "list the app's features", TOPIC, json=True),
    command("features:enable", "enable a feature (http-session-affinity)", TOPIC,
            args=[arg("feature", metavar="FEATURE")]),
    command("features:disable", "disable a feature", TOPIC,
            args=[arg("feature", metavar="FEATURE")]),
    command("certs:renew", "renew the automatic certificates that expire within 30 days", "frontdoor.certs.renew_due",
            app=False, client=False, stream=True),
]

BY_NAME = {c.name: c for c in COMMANDS}


def client_args(cmd):
    """The arguments on the client's command line."""
    return [a for a in cmd.args if a.typed]


def client_commands():
    return [c for c in COMMANDS if c.client]


def server_commands():
    return [c for c in COMMANDS if c.server]


def named_in(argv):
    """The command names among argv's words (None, meaning all of them, when there is none or help is asked for).

    A command line builds only the parsers of these: a parser for every command costs more than the work.
    """
    if any(word in ("-h", "--help") for word in argv):
        return None
    names = {word for word in argv if word in BY_NAME}
    return names or None


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
    payload = {dest(a): getattr(args, dest(a), None) for a in sent(cmd, STDIN)}
    if cmd.who:
        payload["by"] = by
    return words, payload


def usage(cmd):
    """How the README shows a command: `tinyserv ps:scale TYPE=N ...`."""
    words = ["tinyserv", cmd.name]
    for a in client_args(cmd):
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
