"""Every setting tinyserv reads: the server's from its environment and its settings file, each app's from its
config vars.

The server's settings file ($TINYSERV_ROOT/settings.env, mode 0600) holds what only the deploy user and root
may read (TINYSERV_POSTGRES_URL's password); a variable set in the environment wins over the file.
App settings are config vars named TINYSERV_*; config:set checks their values at the door,
so a running app never depends on a default silently standing in for a typo.
"""

import os

from tinyserv.common.errors import TinyservError
from tinyserv.common.names import number

# config var: (default, lowest, highest, kind, what it is)
APP_SETTINGS = {
    "TINYSERV_BOOT_TIMEOUT": (60, 1, 3600, int, "seconds a new web gets to accept connections on $PORT"),
    "TINYSERV_STOP_TIMEOUT": (30.0, 0, 3600, float, "seconds between SIGTERM and SIGKILL"),
    "TINYSERV_BUILD_TIMEOUT": (900, 1, 24 * 3600, int, "seconds a build (and its release command) may take"),
    "TINYSERV_MEMORY_LIMIT": (None, 16, 1024 * 1024, int,
                              "MB of resident memory one instance may use before it is restarted"),
    "TINYSERV_NOFILE": (None, 16, 1024 * 1024, int, "open files each process may have (setrlimit)"),
    "TINYSERV_NPROC": (None, 16, 1024 * 1024, int, "processes the app's user may have before its forks fail (setrlimit)"),
}


def app_setting(config, key):
    """The value of an app setting from the release's config vars (its default when unset or invalid)."""
    default, lowest, highest, kind, _ = APP_SETTINGS[key]
    value = number(config.get(key), default, kind, minimum=lowest)
    return value if value is None or value <= highest else default


def boot_timeout(config):
    return app_setting(config, "TINYSERV_BOOT_TIMEOUT")


def stop_timeout(config):
    return app_setting(config, "TINYSERV_STOP_TIMEOUT")


def build_timeout(config):
    return app_setting(config, "TINYSERV_BUILD_TIMEOUT")


def memory_limit(config):
    """Bytes of resident memory an instance may use (TINYSERV_MEMORY_LIMIT, in MB), or None."""
    limit = app_setting(config, "TINYSERV_MEMORY_LIMIT")
    return limit * 1024 * 1024 if limit else None


def open_files(environ):
    """The open-files limit a process starts with (TINYSERV_NOFILE in its environment), or None."""
    return app_setting(environ, "TINYSERV_NOFILE")


def processes(environ):
    """The processes limit a process starts with (TINYSERV_NPROC in its environment), or None."""
    return app_setting(environ, "TINYSERV_NPROC")


def check_app_setting(key, value):
    """Refuse a value an app setting cannot take, in one line that says what it can."""
    default, lowest, highest, kind, what = APP_SETTINGS[key]
    parsed = number(value, None, kind, minimum=lowest)
    if parsed is None or parsed > highest:
        raise TinyservError("%s is %s: a %s from %s to %s, not %r" % (
            key, what, "whole number" if kind is int else "number", lowest, highest, value))


# --- the server's settings file -------------------------------------------------------------------

SETTINGS_FILE = "settings.env"  # in TINYSERV_ROOT; .env lines (export NAME=value works too), mode 0600
SECRET_SETTINGS = ("TINYSERV_POSTGRES_URL",)  # never in a file that others can read (~/.bashrc is 0644)


def settings_file(root):
    """Where the server's settings file of a TINYSERV_ROOT is."""
    return os.path.join(root, SETTINGS_FILE)


def read_settings_file(path, trusted):
    """{NAME: value} of a settings file owned by one of the uids trusted ({} when there is none or another
    user's, or it is a symlink); one line naming it when it is unusable."""
    from tinyserv.common.dotenv import parse_env
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as e:
        if os.path.islink(path):
            return {}
        raise TinyservError("cannot read %s: %s" % (path, e.strerror)) from None
    with os.fdopen(fd, errors="replace") as f:
        if os.fstat(f.fileno()).st_uid not in trusted:
            return {}
        text = f.read()
    values = parse_env(text, path)
    if "TINYSERV_ROOT" in values:
        raise TinyservError("%s sets TINYSERV_ROOT, which says where that file is: set it in the environment "
                            "(~/.bashrc) instead" % path)
    return values


def load_settings_file(root, environ=os.environ, euid=os.geteuid):
    """Fill in environ from root's settings file: a variable the environment sets wins.

    Only a file of this process's own user (or root's) counts: a root process (the root-mode supervisor)
    trusts no file the deploy user can write, and takes its settings from its unit.
    """
    for name, value in read_settings_file(settings_file(root), (euid(), 0)).items():
        environ.setdefault(name, value)
    return environ


def keep_builds(environ=os.environ):
    """How many builds to keep for rollback (TINYSERV_KEEP_BUILDS, default 5)."""
    return number(environ.get("TINYSERV_KEEP_BUILDS"), 5)


def host_name(environ=os.environ):
    """The host name printed in URLs after a deploy (TINYSERV_HOST, default the hostname)."""
    import socket  # here: the client reads settings too, and starts faster without it
    return environ.get("TINYSERV_HOST") or socket.gethostname()


SSH_PERSIST = 600  # seconds a shared ssh connection stays open after the last command that used it


def ssh_reuse(environ=os.environ):
    """Share one ssh connection between commands (TINYSERV_SSH_REUSE, default 1; 0 turns it off)."""
    return environ.get("TINYSERV_SSH_REUSE", "1").strip() != "0"


# --- schedulers (local processes, or a Docker Swarm: deploy/swarm.py) ---------------------------------

def default_scheduler(environ=os.environ):
    """The scheduler of a new app (TINYSERV_SCHEDULER: local, the default, or swarm)."""
    value = environ.get("TINYSERV_SCHEDULER") or "local"
    if value not in ("local", "swarm"):
        raise TinyservError("TINYSERV_SCHEDULER must be local or swarm, not %r" % value)
    return value


def registry(environ=os.environ):
    """The image registry swarm apps' images are pushed to (TINYSERV_REGISTRY, host:port), or None (one node)."""
    return environ.get("TINYSERV_REGISTRY") or None


# --- the front door (nginx) -----------------------------------------------------------------------

NGINX_DEFAULT = "/usr/sbin/nginx"  # Debian's; not on a non-root user's PATH
INSTALL_NGINX = "install it (sudo apt install nginx-light) or point TINYSERV_NGINX at it"


def nginx_binary(environ=os.environ):
    """The nginx to run in front of the apps (TINYSERV_NGINX, else Debian's, else one on PATH), or None.

    TINYSERV_NGINX=off runs without it even when nginx is installed.
    """
    import shutil
    named = environ.get("TINYSERV_NGINX")
    if named == "off":
        return None
    for candidate in ([named] if named else [NGINX_DEFAULT, shutil.which("nginx")]):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    return None


def nginx_missing(environ=os.environ):
    """Why there is no front door, in one line that says what to do."""
    if environ.get("TINYSERV_NGINX") == "off":
        return "this server runs without nginx (TINYSERV_NGINX=off): unset it to put nginx in front of the apps"
    if environ.get("TINYSERV_NGINX"):
        return "nginx is missing on this server (TINYSERV_NGINX=%s is not an executable): %s" % (
            environ["TINYSERV_NGINX"], INSTALL_NGINX)
    return "nginx is missing on this server: %s" % INSTALL_NGINX


def server_port(name, default, environ=os.environ):
    """A port number from the server's environment (TINYSERV_HTTP_PORT, TINYSERV_HTTPS_PORT)."""
    value = environ.get(name) or str(default)
    port = number(value, None)
    if port is None or port > 65535:
        raise TinyservError("%s must be a port number (1-65535), not %r" % (name, value))
    return port


def http_port(environ=os.environ):
    """Where nginx answers for the apps' domains (TINYSERV_HTTP_PORT, default 80)."""
    return server_port("TINYSERV_HTTP_PORT", 80, environ)


def https_port(environ=os.environ):
    """Where nginx answers HTTPS for the domains that have a certificate (TINYSERV_HTTPS_PORT, default 443)."""
    return server_port("TINYSERV_HTTPS_PORT", 443, environ)


def base_domain(environ=os.environ):
    """TINYSERV_DOMAIN: every app also answers at APP.<it> (None when unset)."""
    from tinyserv.common.names import check_domain
    value = environ.get("TINYSERV_DOMAIN") or None
    if value:
        try:
            check_domain(value)
        except TinyservError as e:
            raise TinyservError("TINYSERV_DOMAIN is not usable: %s" % e) from None
    return value


def acme_directory(environ=os.environ):
    """The ACME server certs:auto asks (TINYSERV_ACME_DIRECTORY, default Let's Encrypt)."""
    return environ.get("TINYSERV_ACME_DIRECTORY") or "https://acme-v02.api.letsencrypt.org/directory"


def acme_email(environ=os.environ):
    """The contact address given to the ACME server (TINYSERV_ACME_EMAIL; None: none)."""
    return environ.get("TINYSERV_ACME_EMAIL") or None
