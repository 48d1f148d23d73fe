"""`tinyserv-remote doctor`: one screen of checks of this server, each failure with its fix.

Each check is a function of what it looks at (passed in, so tests need no real server) returning one
Check. `server:install` ends with this screen; it exits 1 when something fails (a warning is not a failure).
"""

import collections
import os
import pwd
import re
import shutil
import subprocess
import sys

from tinyserv import __version__
from tinyserv.common.errors import TinyservError

OK, WARN, FAIL = "ok", "warn", "FAIL"
Check = collections.namedtuple("Check", "level name detail fix")

# Programs apps and features need, and the Debian package that has each.
PACKAGES = {"git": "git", "node": "nodejs", "npm": "npm", "python3-venv": "python3-venv", "nginx": "nginx-light",
            "certbot": "certbot", "postgres": "postgresql", "pg_ctl": "postgresql", "psql": "postgresql-client",
            "pg_dump": "postgresql-client", "redis-server": "redis-server", "openssl": "openssl"}
RUNTIMES = [("node, npm", ["node", "npm"], "Node.js apps"), ("python3-venv", ["python3-venv"], "Python apps")]
DEFAULT_SSH_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"  # what sshd gives a session on Debian
LOW_DISK = 1024 ** 3  # warn below 1 GiB free
NO_DISK = 100 * 1024 ** 2  # fail below 100 MiB: a build would not fit


def apt_line(programs):
    """`sudo apt install ...` for the packages that have these programs, in a stable order."""
    packages = []
    for program in programs:
        package = PACKAGES.get(program, program)
        if package not in packages:
            packages.append(package)
    return "sudo apt install " + " ".join(packages)


def have(program, which=shutil.which):
    """Is program there? python3-venv is a module (ensurepip), not a program."""
    if program == "python3-venv":
        return subprocess.run([sys.executable, "-c", "import ensurepip, venv"], capture_output=True).returncode == 0
    return which(program) is not None


def missing_programs(programs, which=shutil.which):
    """The programs of the list that are not there."""
    return [p for p in programs if not have(p, which)]


def check_version(code_dir, current_dir):
    """This version, and whether it is the one `current` points at."""
    detail = "%s in %s" % (__version__, code_dir)
    if current_dir is None or os.path.realpath(current_dir) == os.path.realpath(code_dir):
        return Check(OK, "tinyserv", detail, None)
    return Check(WARN, "tinyserv", detail + ", but %s is current" % os.path.realpath(current_dir),
                 "run tinyserv-remote from ~/.tinyserv-code/current/bin (or 'tinyserv server:install' again)")


def check_python():
    """The Python running tinyserv is 3.9 or later."""
    version = "%d.%d.%d" % sys.version_info[:3]
    if sys.version_info < (3, 9):
        return Check(FAIL, "python3", "%s (%s)" % (version, sys.executable), "tinyserv needs 3.9 or later")
    return Check(OK, "python3", "%s (%s)" % (version, sys.executable), None)


def check_ssh_path(found, script, shell):
    """What a non-interactive ssh command finds as tinyserv-remote (found: its path, or None)."""
    name = "PATH over ssh"
    if found and os.path.realpath(found) == os.path.realpath(script):
        return Check(OK, name, "tinyserv-remote is %s" % found, None)
    if not os.path.basename(shell or "").endswith("bash"):
        return Check(FAIL, name, "the login shell is %s, which does not read ~/.bashrc for ssh commands" % shell,
                     "sudo chsh -s /bin/bash %s" % pwd.getpwuid(os.getuid()).pw_name)
    if found:
        return Check(WARN, name, "tinyserv-remote is %s, not this one (%s)" % (found, script),
                     "put tinyserv's lines at the top of ~/.bashrc ('tinyserv server:install' does)")
    return Check(FAIL, name, "ssh commands do not find tinyserv-remote",
                 "put tinyserv's lines at the top of ~/.bashrc, above its interactive guard "
                 "('tinyserv server:install' does)")


def ssh_sees(shell, home, user):
    """Which tinyserv-remote a non-interactive ssh command would run: the login shell started as sshd
    starts it (SSH_CLIENT set, the default PATH), so bash reads ~/.bashrc as it does for ssh."""
    env = {"HOME": home, "USER": user, "LOGNAME": user, "PATH": DEFAULT_SSH_PATH, "SSH_CLIENT": "127.0.0.1 1 22",
           "LANG": "C.UTF-8"}
    try:
        result = subprocess.run([shell or "/bin/sh", "-c", "command -v tinyserv-remote"], env=env, cwd=home,
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = result.stdout.strip().splitlines()
    return found[-1] if result.returncode == 0 and found else None


def check_root(root):
    """TINYSERV_ROOT exists (or can be made) and is writable."""
    probe = root
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK):
        return Check(OK, "TINYSERV_ROOT", "%s is writable" % root if probe == root else
                     "%s will be created in %s" % (root, probe), None)
    return Check(FAIL, "TINYSERV_ROOT", "%s is not writable by %s" % (probe, pwd.getpwuid(os.getuid()).pw_name),
                 "point TINYSERV_ROOT at a directory of this user's, or: sudo chown -R %s %s" % (
                     pwd.getpwuid(os.getuid()).pw_name, probe))


def check_secrets(settings_path, settings_mode, exposed):
    """The server's secret settings (TINYSERV_POSTGRES_URL) sit where only the deploy user and root read them.

    settings_mode: the settings file's permission bits (None: there is none); exposed: exposed_secrets'.
    """
    name = "secrets"
    if exposed:
        path, names = exposed[0]
        return Check(WARN, name, "%s sets %s, and other users can read it" % (path, ", ".join(names)),
                     "move those lines to %s (chmod 600) and delete them from %s" % (settings_path, path))
    if settings_mode is not None and settings_mode & 0o077:
        return Check(WARN, name, "%s is mode %04o: other users can read it" % (settings_path, settings_mode),
                     "chmod 600 %s" % settings_path)
    if settings_mode is None:
        return Check(OK, name, "none in a file others can read (no %s)" % settings_path, None)
    return Check(OK, name, "in %s (mode 0600)" % settings_path, None)


SHELL_FILES = (".bashrc", ".profile", ".bash_profile", ".bash_login", ".pam_environment")


def exposed_secrets(home, files=SHELL_FILES):
    """[(path, [names])]: the shell start-up files in home that set a secret setting and others may read."""
    from tinyserv.common.settings import SECRET_SETTINGS
    found = []
    for name in files:
        path = os.path.join(home, name)
        try:
            if not os.stat(path).st_mode & 0o044:
                continue
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        names = [s for s in SECRET_SETTINGS if re.search(r"^[ \t]*(export[ \t]+)?%s[ \t]*=" % s, text, re.M)]
        if names:
            found.append((path, names))
    return found


def file_mode(path):
    """A file's permission bits, or None when there is no file."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


def check_supervisor(pid, its_code, code_dir, apps, shut_down, standby):
    """The supervisor runs (when there are apps), this version of it, with a standby."""
    if pid is None:
        if shut_down:
            return Check(WARN, "supervisor", "not running: tinyserv was shut down", "tinyserv-remote startup")
        if apps:
            return Check(FAIL, "supervisor", "not running, %d app(s) not supervised" % apps, "tinyserv-remote startup")
        return Check(OK, "supervisor", "not running yet (no apps; it starts with the first)", None)
    detail = "pid %d%s" % (pid, ", standby waiting" if standby else "")
    if its_code and os.path.realpath(its_code) != os.path.realpath(code_dir):
        return Check(WARN, "supervisor", detail + ", running older code in %s" % its_code,
                     "'tinyserv server:install' hands over to this version without stopping apps")
    return Check(OK, "supervisor", detail, None)


def check_boot(systemd, unit_enabled, crontab_line):
    """Something starts the apps at boot: a systemd unit, or an @reboot line in the crontab."""
    if unit_enabled:
        return Check(OK, "boot", "systemd unit tinyserv.service enabled", None)
    if crontab_line:
        return Check(OK, "boot", "crontab: %s" % crontab_line, None)
    if systemd:
        return Check(WARN, "boot", "no tinyserv.service: apps do not start at boot",
                     "tinyserv-remote systemd-unit | sudo tee /etc/systemd/system/tinyserv.service && "
                     "sudo systemctl enable --now tinyserv")
    return Check(WARN, "boot", "no systemd and no @reboot line in the crontab: apps do not start at boot",
                 "run 'tinyserv-remote startup' at boot (crontab -e: @reboot %s startup)" % "tinyserv-remote")


def check_disk(path, usage=shutil.disk_usage):
    """Free space where the builds go."""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    total, _, free = usage(path)
    detail = "%.1f GB free on %s (%d%%)" % (free / 1e9, path, round(100 * free / total) if total else 0)
    if free < NO_DISK:
        return Check(FAIL, "disk", detail, "free some space: builds and logs need it")
    if free < LOW_DISK:
        return Check(WARN, "disk", detail, "free some space: a build with dependencies may not fit")
    return Check(OK, "disk", detail, None)


def check_ports(ports, ephemeral):
    """tinyserv's own ports ({setting: port}) against the kernel's ephemeral range ((low, high), or None), from
    which every web's internal port is drawn: one drawn there first would take an app's public port."""
    if ephemeral is None:
        return Check(OK, "ports", "the kernel's ephemeral range is unknown (not Linux)", None)
    low, high = ephemeral
    inside = ["%s=%d" % (name, port) for name, port in sorted(ports.items()) if low <= port <= high]
    if not inside:
        return Check(OK, "ports", "below the kernel's ephemeral range (%d-%d)" % (low, high), None)
    return Check(WARN, "ports", "%s in the kernel's ephemeral range (%d-%d), where webs' internal ports are drawn: "
                 "one can take an app's public port" % (", ".join(inside), low, high),
                 "choose ports below %d (net.ipv4.ip_local_port_range)" % low)


def ephemeral_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """The kernel's (low, high) ports for its own choice, or None."""
    try:
        with open(path) as f:
            low, high = (int(word) for word in f.read().split())
        return low, high
    except (OSError, ValueError):
        return None


def check_router_queue(queue):
    """The kernel's Unix datagram queue, which nginx's router log lines wait in (platform/kernel.py)."""
    from tinyserv.platform import kernel
    if queue is None:
        return Check(OK, "kernel", "%s: not there (not Linux)" % kernel.SETTING, None)
    detail = "%s is %d" % (kernel.SETTING, queue)
    if queue >= kernel.WANTED:
        return Check(OK, "kernel", detail + " (the router log's queue)", None)
    return Check(WARN, "kernel", detail + ": under load nginx drops router log lines past that",
                 "as root: " + kernel.how_to_set())


def check_programs(name, programs, level, what, which=shutil.which):
    """Programs that should be there (level when one is not)."""
    missing = missing_programs(programs, which)
    if not missing:
        return Check(OK, name, "there (%s)" % what, None)
    return Check(level, name, "%s missing (%s)" % (", ".join(missing), what), apt_line(missing))


def check_runtimes(cached, uv):
    """uv (how Python apps get the version they ask for) and the runtimes installed for apps, one line each."""
    found = [Check(OK, "uv", "%s (Python apps get the Python they ask for)" % uv, None) if uv else
             Check(WARN, "uv", "missing: Python apps get the server's python3 (or a python3.X) and pip",
                   "tinyserv server:install (it puts uv in TINYSERV_ROOT/runtimes/uv)")]
    tools = {}
    for tool, version in cached:
        tools.setdefault(tool, []).append(version)
    found.extend(Check(OK, "runtime " + tool, ", ".join(found_versions) + " (installed for apps)", None)
                 for tool, found_versions in tools.items())
    return found


def check_service(name, spec, pid, which=shutil.which):
    """A platform service a feature declared: its program is there, and it runs."""
    program = spec["argv"][0]
    found = program if os.path.isabs(program) and os.access(program, os.X_OK) else which(program)
    if not found:
        return Check(FAIL, "service " + name, "%s is not installed" % program,
                     apt_line([os.path.basename(program)]))
    if pid is None:
        return Check(FAIL, "service " + name, "%s is not running" % found,
                     "see its log; 'tinyserv-remote startup' starts the supervisor that runs it")
    return Check(OK, "service " + name, "%s, pid %d" % (found, pid), None)


def check_swarm(info, needed, registry=None, registry_answer=None):
    """The Docker engine swarm apps need: reachable, in a swarm, this node a manager, the registry answering.

    info: `docker info`'s Swarm section (None: the engine did not answer); needed: some app (or the default
    scheduler) is swarm, so a problem fails instead of warning."""
    level = FAIL if needed else WARN
    if info is None:
        return [Check(level, "swarm", "the docker engine does not answer",
                      "start dockerd, and add this user to the docker group (root-equivalent on this machine)")]
    if info.get("LocalNodeState") != "active":
        return [Check(level, "swarm", "the engine is not in a swarm (%s)" % info.get("LocalNodeState"),
                      "docker swarm init --advertise-addr ADDRESS")]
    if not info.get("ControlAvailable"):
        return [Check(level, "swarm", "this node is not a swarm manager: tinyserv creates services here",
                      "docker node promote THIS-NODE (on a manager)")]
    found = [Check(OK, "swarm", "engine reachable, swarm active, this node a manager (%s node(s))" % info.get(
        "Nodes", "?"), None)]
    if registry:
        found.append(Check(OK, "registry", "%s answers" % registry, None) if registry_answer is None else
                     Check(level, "registry", "%s does not answer: %s" % (registry, registry_answer),
                           "start it (apt install docker-registry) or fix TINYSERV_REGISTRY"))
    return found


def engine_swarm():
    """`docker info`'s Swarm section, or None when the engine does not answer."""
    import json
    from tinyserv.platform import docker
    from tinyserv.common.errors import TinyservError
    try:
        return json.loads(docker.run(["info", "--format", "{{json .Swarm}}"], timeout=20))
    except (TinyservError, ValueError):
        return None


def registry_problem(registry):
    """Why the registry does not answer its API (None: it does; 401 counts as an answer)."""
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen("http://%s/v2/" % registry, timeout=5).close()
    except urllib.error.HTTPError as e:
        return None if e.code == 401 else "HTTP %d" % e.code
    except (OSError, ValueError) as e:
        return str(getattr(e, "reason", e))
    return None


def render(checks, color=lambda text, code: text):
    """The screen: one line per check, the fix below each that is not ok."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        level = color(c.level.ljust(4), {OK: "32", WARN: "33", FAIL: "31"}[c.level])
        lines.append("%s  %s  %s" % (level, c.name.ljust(width), c.detail))
        if c.fix:
            lines.append("      %s  fix: %s" % (" " * width, c.fix))
    return "\n".join(lines)


# --- looking at this server ------------------------------------------------------------------------------


def supervisor_code(pid):
    """The code directory (…/versions/<id> or a checkout) of the running supervisor, from its command line."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            words = f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return None
    scripts = [w for w in words if w.endswith("tinyserv-remote")]
    return os.path.dirname(os.path.dirname(os.path.realpath(scripts[0]))) if scripts else None


def systemd_unit_enabled():
    """Is tinyserv.service enabled under systemd?"""
    if not shutil.which("systemctl"):
        return False
    result = subprocess.run(["systemctl", "is-enabled", "--quiet", "tinyserv"], capture_output=True)
    return result.returncode == 0


def crontab_boot_line():
    """The user's crontab line that runs `tinyserv-remote startup` at boot, if there is one."""
    if not shutil.which("crontab"):
        return None
    result = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if re.match(r"\s*@reboot\b.*tinyserv-remote\b.*\bstartup\b", line):
            return line.strip()
    return None


def checks(layout):
    """Every check, for this server."""
    from tinyserv.platform import control
    from tinyserv.platform import services
    from tinyserv import REMOTE_SCRIPT
    from tinyserv.deploy import runtimes
    from tinyserv.supervise.handover import lock_holders  # reads /proc/locks: never takes the lock
    from tinyserv.common.unpack import installed_script
    code_dir = os.path.dirname(os.path.dirname(REMOTE_SCRIPT))
    current = os.path.dirname(os.path.dirname(installed_script(REMOTE_SCRIPT)))  # its install's `current`
    user = pwd.getpwuid(os.getuid())
    found = [check_version(code_dir, current if os.path.lexists(current) else None), check_python(),
             check_ssh_path(ssh_sees(user.pw_shell, os.path.expanduser("~"), user.pw_name), REMOTE_SCRIPT,
                            user.pw_shell),
             check_root(layout.root)]
    pid = control.running(layout) if os.path.isdir(layout.run_dir) else None
    found.append(check_supervisor(pid, supervisor_code(pid) if pid else None, code_dir, len(layout.apps()),
                                  os.path.exists(layout.shutdown_marker),
                                  pid is not None and bool(lock_holders(layout.standby_lock))))
    systemd = os.path.isdir("/run/systemd/system")
    found.append(check_boot(systemd, systemd and systemd_unit_enabled(), crontab_boot_line()))
    found.append(check_disk(layout.root))
    from tinyserv.platform import kernel
    found.append(check_router_queue(kernel.dgram_queue()))
    found.append(check_ports(own_ports(), ephemeral_range()))
    from tinyserv.common.settings import settings_file
    found.append(check_secrets(settings_file(layout.root), file_mode(settings_file(layout.root)),
                               exposed_secrets(os.path.expanduser("~"))))
    found.append(check_programs("git", ["git"], FAIL, "every push"))
    for name, programs, what in RUNTIMES:
        found.append(check_programs(name, programs, WARN, what))
    found.extend(check_runtimes(*runtimes.listing(layout)))
    try:
        declared = services.declared(layout)
    except Exception as e:  # noqa: BLE001 - a damaged declaration is one failed check, not a crash
        found.append(Check(FAIL, "services", str(e), "fix or remove the file it names"))
        declared = {}
    for name, spec in declared.items():
        found.append(check_service(name, spec, services.pid(layout, name)))
    found.extend(swarm_checks(layout))
    found += check_left_out(layout)
    return found


def own_ports():
    """{setting: port} of the ports tinyserv's apps and front door are reached on (the first app port)."""
    from tinyserv.state.layout import start_port
    from tinyserv.common import settings
    return {"TINYSERV_START_PORT": start_port(), "TINYSERV_HTTP_PORT": settings.http_port(),
            "TINYSERV_HTTPS_PORT": settings.https_port()}


def swarm_checks(layout):
    """The engine's checks, when an app (or the default scheduler) is swarm or a docker client is installed."""
    from tinyserv.state import appstate
    from tinyserv.common import settings
    needed = os.environ.get("TINYSERV_SCHEDULER") == "swarm" or any(
        appstate.scheduler(layout, app) == "swarm" for app in layout.apps())
    if not needed and not have("docker"):
        return []
    registry = settings.registry()
    return check_swarm(engine_swarm(), needed, registry, registry_problem(registry) if registry else None)


def check_left_out(layout):
    """Each port nginx's config leaves out because nginx cannot listen there (the supervisor tries it again)."""
    from tinyserv.frontdoor import nginx
    try:
        lines = nginx.read_routes(nginx.Prefix(layout)).get("left_out") or []
    except (OSError, ValueError, TinyservError):  # damaged routes: the supervisor writes them anew at its next change
        return []
    return [Check(WARN, "front door", str(line), "stop the program that holds the port, or choose another port")
            for line in lines]


def doctor(layout):
    """Print the checks; exit 1 when one failed."""
    from tinyserv.common.printer import color, heading
    found = checks(layout)
    print(heading("tinyserv doctor: %s@%s" % (pwd.getpwuid(os.getuid()).pw_name, os.uname().nodename)))
    print(render(found, color))
    failed = [c.name for c in found if c.level == FAIL]
    if failed:
        from tinyserv.common.errors import TinyservError
        raise TinyservError("%d check(s) failed: %s (each fix is shown above)" % (len(failed), ", ".join(failed)))
