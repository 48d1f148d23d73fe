"""`tinyserv-remote setup`: what `tinyserv server:install` does on the server once the new code is current.

Each step is safe to run twice, so installing again is how a server is upgraded:
  - tinyserv's lines at the top of ~/.bashrc (above Debian's interactive guard, which ssh commands never pass);
  - what apps need (git, node and npm, python3-venv), with the `apt install` line for what is missing;
  - uv in the runtime cache (TINYSERV_ROOT/runtimes/uv), for Python apps that ask for a version;
  - every app's git hook pointed at this version;
  - the systemd unit installed when this user may (root, or sudo without a password), else printed;
  - the supervisor handed over to this version, without stopping an app (handover.py).
"""

import os
import pwd
import shutil
import subprocess

from tinyserv import __version__
from tinyserv.server import doctor
from tinyserv.state import store
from tinyserv.common.printer import Steps
from tinyserv.common.unpack import code_home

BEGIN = "# >>> tinyserv >>>"
END = "# <<< tinyserv <<<"
UNIT_PATH = "/etc/systemd/system/tinyserv.service"


def environment_block():
    """The lines ssh commands need: tinyserv's current version on PATH (once, however often bash starts)."""
    bin_dir = "$HOME/%s/current/bin" % os.path.basename(code_home())
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


def install_unit(layout, steps):
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
    done = place_unit(unit_text(layout), installed, can_be_root(), pwd.getpwuid(os.getuid()).pw_name, root_run)
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


def setup(layout):
    """Everything server:install does once the new code is current (see the module's docstring)."""
    from tinyserv.supervise.handover import handover
    steps = Steps()
    home = os.path.expanduser("~")
    layout.ensure()
    steps.step("tinyserv %s is current (%s)" % (__version__, os.path.realpath(os.path.join(code_home(), "current"))))
    changed = ensure_environment(home)
    steps.detail("~/.bashrc: tinyserv's lines %s at the top" % ("written" if changed else "already"))
    steps.step("Checking what apps need")
    missing = doctor.missing_programs(["git", "node", "npm", "python3-venv"])
    steps.detail("missing: %s" % ", ".join(missing) if missing else "git, node, npm and python3-venv are there")
    if missing:
        steps.detail("install them with: " + doctor.apt_line(missing))
    steps.step("uv (Python apps get the Python version they ask for)")
    steps.detail(ensure_uv(layout))
    steps.step("Start at boot")
    install_unit(layout, steps)
    steps.step("Supervisor")
    hooks = point_hooks(layout)
    if hooks:
        steps.detail("git hooks of %d app(s) run this version" % hooks)
    steps.detail(handover(layout))
