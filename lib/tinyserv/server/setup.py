"""`tinyserv-remote setup`: what `tinyserv server:install` does on the server once the new code is current.

Each step is safe to run twice, so installing again is how a server is upgraded:
  - tinyserv's lines at the top of ~/.bashrc (above Debian's interactive guard, which ssh commands never pass);
  - what apps need (git, node and npm, python3-venv), with the `apt install` line for what is missing;
  - the kernel's Unix datagram queue long enough for the router log (platform/kernel.py), when this user may;
  - uv in the runtime cache (TINYSERV_ROOT/runtimes/uv), for Python apps that ask for a version;
  - every app's git hook pointed at this version;
  - the systemd unit installed when this user may (root, or sudo without a password), else printed;
  - the supervisor handed over to this version, without stopping an app (handover.py).

Root mode (`server:install --root`, `setup --deploy-user USER` run as root): the code is root's in
/opt/tinyserv; root makes the deploy user if missing (rootinstall.py), runs the deploy user's part
(`setup --deploy-user USER` again, as that user: as_deploy_user below), then writes the root-mode unit and
(re)starts it. Root never writes into the deploy user's home itself: that user's own process does.
"""

import os
import pwd
import re
import shutil
import subprocess
import sys

from tinyserv import __version__
from tinyserv.common.errors import TinyservError
from tinyserv.common.settings import SECRET_SETTINGS, settings_file
from tinyserv.platform import kernel
from tinyserv.server import doctor
from tinyserv.state import store
from tinyserv.common.printer import Steps
from tinyserv.common.unpack import ROOT_CODE_HOME, code_home

BEGIN = "# >>> tinyserv >>>"
END = "# <<< tinyserv <<<"
UNIT_PATH = "/etc/systemd/system/tinyserv.service"
SECRET = re.compile(r"\s*(export\s+)?(%s)=" % "|".join(SECRET_SETTINGS))  # never in a 0644 file like ~/.bashrc


def environment_block():
    """The lines ssh commands need: tinyserv's current version on PATH (once, however often bash starts)."""
    from tinyserv import REMOTE_SCRIPT
    from tinyserv.common.unpack import ROOT_CODE_HOME, installed_script
    bin_dir = "$HOME/%s/current/bin" % os.path.basename(code_home())
    if installed_script(REMOTE_SCRIPT).startswith(ROOT_CODE_HOME + "/"):  # root mode: root's code
        bin_dir = os.path.join(ROOT_CODE_HOME, "current", "bin")
    return "\n".join([
        BEGIN + " written by `tinyserv server:install`; it stays above the interactive guard below,",
        "# because ssh commands (git push, tinyserv) read ~/.bashrc only down to that guard.",
        'case ":$PATH:" in *":%s:"*) ;; *) export PATH="%s:$PATH" ;; esac' % (bin_dir, bin_dir),
        END]) + "\n"


def with_environment(text):
    """~/.bashrc's text with tinyserv's block at the very top (moved there, or replaced, if it was elsewhere)."""
    lines = text.splitlines(keepends=True)
    kept, inside = [], False
    for line in lines:
        if line.startswith(BEGIN):
            inside = True
        elif inside and line.startswith(END):
            inside = False
        elif not inside:
            kept.append(line)
    if inside:  # a block without its end: keep the text rather than guess where it ended
        kept = lines
    return environment_block() + "".join(kept)


def ensure_environment(home):
    """Write tinyserv's block at the top of home/.bashrc; True when the file changed."""
    path = os.path.join(home, ".bashrc")
    try:
        with open(path) as f:
            old = f.read()
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        old, mode = "", 0o644
    new = with_environment(old)
    if new != old:
        store.write_atomic(os.path.join(os.path.realpath(path)), new, mode)
    return new != old


def what_apps_need(layout, steps):
    """Say which programs apps need are missing (and the apt line), and put uv in the runtime cache."""
    steps.step("Checking what apps need")
    missing = doctor.missing_programs(["git", "node", "npm", "python3-venv"])
    steps.detail("missing: %s" % ", ".join(missing) if missing else "git, node, npm and python3-venv are there")
    if missing:
        steps.detail("install them with: " + doctor.apt_line(missing))
    steps.step("uv (Python apps get the Python version they ask for)")
    steps.detail(ensure_uv(layout))


def ensure_uv(layout):
    """Install uv into the runtime cache unless the server has one; what happened, in one line (a failure is a
    warning: Python apps then build with pip and the server's python3)."""
    from tinyserv.common.errors import TinyservError
    from tinyserv.deploy import runtimes
    found = runtimes.uv_path(layout)
    if found:
        return "uv is there: %s" % found
    try:
        return "uv installed: %s" % runtimes.install_uv(layout)
    except TinyservError as e:
        return "%s; Python apps build with pip until it is there (run server:install again)" % e


def can_be_root():
    """The argument list prefix that runs a command as root: [] as root, sudo -n when it needs no password."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def install_unit(layout, steps, as_root):
    """Install and enable the systemd unit when systemd runs and this user may; else say how."""
    from tinyserv.server.lifecycle import unit_text
    if not os.path.isdir("/run/systemd/system"):
        steps.detail("no systemd here: start the apps at boot with 'tinyserv-remote startup' "
                     "(e.g. crontab -e: @reboot tinyserv-remote startup)")
        return
    try:
        with open(UNIT_PATH) as f:
            installed = f.read()
    except OSError:
        installed = None
    done = place_unit(unit_text(layout), installed, as_root, pwd.getpwuid(os.getuid()).pw_name, root_run)
    steps.detail(done)


def place_unit(unit, installed, as_root, user, run):
    """Write and enable the unit as root (as_root: the prefix, None when we may not) unless it is there
    already or another user's; what happened, in one line."""
    if installed == unit:
        return "systemd unit %s is up to date" % UNIT_PATH
    if as_root is None or (installed is not None and "\nUser=%s\n" % user not in installed):
        return ("to start the apps at boot, as root: tinyserv-remote systemd-unit | sudo tee %s && "
                "sudo systemctl enable --now tinyserv" % UNIT_PATH)
    run(as_root + ["tee", UNIT_PATH], unit)
    run(as_root + ["systemctl", "daemon-reload"])
    run(as_root + ["systemctl", "enable", "--now", "tinyserv"])
    return "systemd unit installed and enabled: %s" % UNIT_PATH


def root_run(argv, data=None):
    """Run a command as root (argv starts with sudo -n, or we are root); raise with its error."""
    from tinyserv.common.errors import TinyservError
    result = subprocess.run(argv, input=data, capture_output=True, text=True)
    if result.returncode != 0:
        raise TinyservError("%s failed: %s" % (" ".join(argv), (result.stderr or result.stdout).strip()))


def point_hooks(layout):
    """Rewrite every app's pre-receive hook so that pushes run this version; how many there are."""
    from tinyserv.deploy.appfiles import ensure_repo
    names = layout.apps()
    for name in names:
        ensure_repo(layout, name)
    return len(names)


def setup(layout, deploy_user=None):
    """Everything server:install does once the new code is current (see the module's docstring)."""
    if deploy_user is not None and os.geteuid() == 0:
        from tinyserv.server import rootinstall
        return rootinstall.as_root(deploy_user)
    if deploy_user is not None:
        if pwd.getpwuid(os.getuid()).pw_name != deploy_user:
            raise TinyservError("setup --deploy-user %s runs as root or as %s" % (deploy_user, deploy_user))
        return as_deploy_user(layout)
    from tinyserv.supervise.handover import handover
    steps = Steps()
    home = os.path.expanduser("~")
    layout.ensure()
    steps.step("tinyserv %s is current (%s)" % (__version__, os.path.realpath(os.path.join(code_home(), "current"))))
    changed = ensure_environment(home)
    steps.detail("~/.bashrc: tinyserv's lines %s at the top" % ("written" if changed else "already"))
    what_apps_need(layout, steps)
    as_root = can_be_root()
    steps.detail(kernel.tune(as_root, root_run))
    steps.step("Start at boot")
    install_unit(layout, steps, as_root)
    steps.step("Supervisor")
    hooks = point_hooks(layout)
    if hooks:
        steps.detail("git hooks of %d app(s) run this version" % hooks)
    point_keys(layout, steps)
    steps.detail(handover(layout))


def point_keys(layout, steps):
    """Rewrite the deploy keys' lines in authorized_keys: they run the stable `current` path, never one version's."""
    from tinyserv.server import keys
    saved = keys.load(layout)
    if saved:
        keys.write_authorized(saved)
        steps.detail("deploy keys: %d line(s) in %s run %s" % (len(saved), keys.authorized_keys(),
                                                                 keys.remote_script()))


# --- root mode: the deploy user's part of `server:install --root` -----------------------------------

def as_deploy_user(layout):
    """The deploy user's part of a root install, run by root as that user: root's authorized keys (when it has
    none), ~/.bashrc's PATH at /opt/tinyserv/current/bin, the admin settings moved out of ~/.bashrc (0644) into
    $TINYSERV_ROOT/settings.env (0600), what apps need, every app's hook and deploy key pointed at `current`."""
    steps = Steps()
    home = os.path.expanduser("~")
    layout.ensure()
    steps.detail("ssh keys: %s" % copy_keys(sys.stdin.buffer.read(), os.path.join(home, ".ssh")))
    changed = ensure_environment(home)
    steps.detail("~/.bashrc: PATH at %s/current/bin %s" % (ROOT_CODE_HOME, "written" if changed else "already"))
    moved = move_secrets(os.path.join(home, ".bashrc"), settings_file(layout.root))
    if moved:
        steps.detail("moved %s from ~/.bashrc to %s (0600: only you and root read it)" % (
            ", ".join(moved), settings_file(layout.root)))
    what_apps_need(layout, steps)
    steps.step("Apps and deploy keys")
    hooks = point_hooks(layout)
    if hooks:
        steps.detail("git hooks of %d app(s) run this version" % hooks)
    point_keys(layout, steps)
    return 0


def copy_keys(text, ssh_dir):
    """Root's authorized keys become this user's when it has none of its own; what happened."""
    path = os.path.join(ssh_dir, "authorized_keys")
    existing = read_text(path)
    if existing is not None and any(line.strip() and not line.startswith("#") for line in existing.splitlines()):
        return "%s kept as it is" % path
    if not text.strip():
        return "none: root has no authorized keys to give (add yours to %s)" % path
    from tinyserv.state.store import write_atomic
    os.makedirs(ssh_dir, mode=0o700, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    write_atomic(path, text, 0o600)
    return "root's authorized keys copied to %s" % path


def move_secrets(bashrc, settings_path):
    """Move the admin settings' lines (TINYSERV_POSTGRES_URL) from ~/.bashrc into the 0600 settings file."""
    from tinyserv.state.store import write_atomic
    text = read_text(bashrc)
    if text is None:
        return []
    lines = text.splitlines(keepends=True)
    secret = [line for line in lines if SECRET.match(line)]
    if not secret:
        return []
    kept = read_text(settings_path) or ""
    entries = [re.sub(r"^\s*export\s+", "", line).rstrip("\n") + "\n" for line in secret]
    write_atomic(settings_path, kept + ("" if not kept or kept.endswith("\n") else "\n") + "".join(entries), 0o600)
    write_atomic(os.path.realpath(bashrc), "".join(line for line in lines if not SECRET.match(line)),
                 os.stat(bashrc).st_mode & 0o777)
    return sorted({line.split("=", 1)[0].split()[-1] for line in secret})


def read_text(path):
    """A file's text, or None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
