"""Where everything lives under $TINYSERV_ROOT on the server.

  releases/<app>.json     the app's current release and its port (a public contract)
  repos/<app>.git         the bare repository that `git push` deploys from
  apps/<app>/history.json every release, with the config it ran with
  apps/<app>/formation.json  how many instances of each process type, stopped types
  apps/<app>/builds/<id>  one build directory per deploy (last few kept)
  apps/<app>/deps/<hash>  installed dependencies, shared by builds with the same manifests
  apps/<app>/log/app.log  the app's log (rotated to app.log.1)
  apps/<app>/data/        the app's persistent data directory (TINYSERV_DATA_DIR), outside every build
  apps/<app>/addons.json  the app's add-ons; apps/<app>/addons/<name>/ what each keeps on disk
  apps/<app>/run/         the supervisor's view: state.json and per-instance pipes
  run/                    the supervisor's socket, pid file and own log
"""

import os

from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_app_name, number


def server_root(environ=os.environ):
    """The absolute TINYSERV_ROOT (default ~/.tinyserv)."""
    root = environ.get("TINYSERV_ROOT") or os.path.join(os.path.expanduser("~"), ".tinyserv")
    return os.path.abspath(os.path.expanduser(root))


def start_port(environ=os.environ):
    """The lowest port tinyserv hands out (TINYSERV_START_PORT, default 5000)."""
    value = environ.get("TINYSERV_START_PORT") or "5000"
    port = number(value, None)
    if port is None or port > 65535:
        raise TinyservError("TINYSERV_START_PORT must be a port number, not %r" % value)
    return port


class Layout:
    """Paths of one tinyserv root; creating directories is ensure_*'s job."""

    def __init__(self, root):
        self.root = root
        self.releases_dir = os.path.join(root, "releases")
        self.repos_dir = os.path.join(root, "repos")
        self.apps_dir = os.path.join(root, "apps")
        self.run_dir = os.path.join(root, "run")
        self.global_lock = os.path.join(root, "lock")
        self.supervisor_sock = os.path.join(self.run_dir, "supervisor.sock")
        self.supervisor_lock = os.path.join(self.run_dir, "supervisor.lock")
        self.standby_lock = os.path.join(self.run_dir, "standby.lock")
        self.supervisor_pid = os.path.join(self.run_dir, "supervisor.pid")
        self.supervisor_log = os.path.join(self.run_dir, "supervisor.log")
        self.shutdown_marker = os.path.join(self.run_dir, "shut-down")
        self.lock_dir = None  # root mode: the three above are in /run/tinyserv/<tag> (platform.rootsafe)

    @property
    def tag(self):
        """A short name of this root, so two roots on one machine never claim each other's processes."""
        import hashlib  # here: a waiting standby supervisor never needs it
        return hashlib.sha256(self.root.encode()).hexdigest()[:8]

    def mark(self, app, ident):
        """TINYSERV_INSTANCE of one process tree of app (an instance, a build, a trial boot)."""
        return "%s:%s:%s" % (self.tag, check_app_name(app), ident)

    def app_marks(self, app):
        """The prefix every TINYSERV_INSTANCE of app starts with."""
        return "%s:%s:" % (self.tag, check_app_name(app))

    def check(self):
        """Refuse a root that cannot be one (a file), before anything is read or written under it."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise TinyservError("TINYSERV_ROOT %s is not a directory: point it at a directory "
                                "(it is created if missing)" % self.root)
        return self

    def ensure(self):
        """Create the top-level directories (safe to run twice)."""
        for path in (self.releases_dir, self.repos_dir, self.apps_dir, self.run_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
        return self

    def public_release(self, app):
        return os.path.join(self.releases_dir, check_app_name(app) + ".json")

    def repo(self, app):
        return os.path.join(self.repos_dir, check_app_name(app) + ".git")

    def app_dir(self, app):
        return os.path.join(self.apps_dir, check_app_name(app))

    def app_file(self, app, *parts):
        return os.path.join(self.app_dir(app), *parts)

    def build_dir(self, app, build_id):
        return self.app_file(app, "builds", build_id)

    def build_meta(self, app, build_id):
        return self.app_file(app, "builds", build_id + ".json")

    def data_dir(self, app):
        """The app's persistent data directory: TINYSERV_DATA_DIR, kept across deploys, rollbacks and reboots."""
        return self.app_file(app, "data")

    def ensure_data_dir(self, app):
        """Create the app's data directory if it is missing (apps made before it existed); return its path."""
        path = self.data_dir(app)
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as e:
            raise TinyservError("cannot create %s: %s" % (path, e.strerror)) from None
        return path

    def log_file(self, app):
        return self.app_file(app, "log", "app.log")

    def state_file(self, app):
        return self.app_file(app, "run", "state.json")

    def exists(self, app):
        """An app exists while its public release file does."""
        return os.path.exists(self.public_release(app))

    def require(self, app):
        """Raise unless app exists."""
        if not self.exists(app):
            raise TinyservError("no app named %r on this server (see 'tinyserv apps')" % app)
        return app

    def apps(self):
        """Names of all apps, sorted."""
        try:
            names = os.listdir(self.releases_dir)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))
