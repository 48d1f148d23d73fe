"""The README's Quick start and the walkthrough (docs/walkthrough.md), run exactly as written, as a new user would
on one machine.

Every ```sh block between the walkthrough markers runs, in order, in one bash with
`set -e`, in a fresh HOME where ~/tinyserv is this checkout. Only the ```console
blocks (sample output, interactive commands) are not run.
"""

import os
import re
import signal
import socket
import subprocess

import pytest

from support import describe, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(REPO, "README.md")
WALKTHROUGH = os.path.join(REPO, "docs", "walkthrough.md")


def walkthrough_blocks(text):
    """The ```sh blocks between <!-- walkthrough:start --> and <!-- walkthrough:end -->."""
    section = text.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def quickstart_command(text):
    """The first ```sh block of the Quick start section: one command deploying the sample app."""
    section = text.split("## Quick start", 1)[1]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)[0]


def port_is_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def new_user(tmp_path):
    """A HOME with this checkout at ~/tinyserv, git configured, no tinyserv variables set."""
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(REPO, home / "tinyserv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYSERV_")}
    env.update(HOME=str(home), GIT_AUTHOR_NAME="New User", GIT_AUTHOR_EMAIL="new@example.com",
               GIT_COMMITTER_NAME="New User", GIT_COMMITTER_EMAIL="new@example.com")
    assert port_is_free(5000), "the walkthrough expects port 5000 (the first app's) to be free on this machine"
    assert port_is_free(8080), "the walkthrough expects port 8080 (nginx's for domains) to be free on this machine"
    try:
        yield home, env
    finally:
        # Whatever happened, stop everything the walkthrough started under this HOME.
        subprocess.run([os.path.join(REPO, "bin", "tinyserv-remote"), "shutdown"], env=env,
                       capture_output=True, timeout=120)
        leftover = processes_under(str(home))
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert not leftover, "processes left running: %s" % [describe_pid(p) for p in leftover]


def describe_pid(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return "%d %s" % (pid, f.read().replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        return "%d (gone)" % pid


def processes_under(directory):
    """Pids running in directory or below it (apps run in their build directory, the supervisor in the root)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                cwd = os.readlink("/proc/%s/cwd" % name)
            except OSError:
                continue
            if cwd == directory or cwd.startswith(directory + "/"):
                found.append(int(name))
    return found


def test_the_walkthrough_works_exactly_as_written(new_user):
    home, env = new_user
    with open(WALKTHROUGH, encoding="utf-8") as f:
        blocks = walkthrough_blocks(f.read())
    assert len(blocks) >= 10, "the walkthrough markers or its ```sh blocks went missing"
    script = "set -ex\ncd ~\n" + "\n".join(blocks)
    result = subprocess.run(["bash", "-c", script], cwd=home, env=env, capture_output=True, text=True,
                            timeout=600, stdin=subprocess.DEVNULL)
    out = result.stdout
    assert result.returncode == 0, describe(result)
    # What a reader is told they will see, in the order they see it.
    expected = [
        "usage: tinyserv",                                  # Set up
        "Creating ⬢ myapp... done",                         # Deploy the app
        "foo is undefined",
        "router: at=info method=GET path=\"/\"",            # View logs
        "web: npm start",                                   # Define a Procfile
        "web.2    up",                                      # Scale the app
        "foo is undefined",
        "No web processes running",
        "foo is undefined",
        '"express"',                                        # Declare app dependencies
        "foo is set in .env",                               # Run the app locally
        "this one-off process would listen on port ",       # Start a console
        "foo is blargey",                                   # Define config vars
        "foo is undefined",
        "Rollback to v",                                    # Releases and rollback
        "foo is blargey",
        "the push was rejected",                            # A push that fails
        "foo is blargey",
        "Adding www.myapp.test to ⬢ myapp... done",          # Add a domain
        "foo is blargey",
        "No such app",
        "www.myapp.test",
        "Enabling maintenance mode for ⬢ myapp... done",    # Maintenance mode
        "Maintenance mode",
        "foo is blargey",
        "[+] http-session-affinity",                        # Keep a client on one instance
        "kept across deploys",                              # Keep data
        "Size:",
        "scheduler.1  * * * * *",                           # Schedule jobs
        "Backing up every app on localhost",                # Back up the server
        "Destroying ⬢ myapp... done: its data directory",   # Clean up
        "You have no apps.",
    ]
    position = 0
    for text in expected:
        found = out.find(text, position)
        assert found >= 0, "expected %r after position %d\n%s" % (text, position, describe(result))
        position = found + len(text)
    pushes = result.stderr  # git prints the remote's output on stderr
    assert pushes.count("-----> Released v") == 3, describe(result)  # the first deploy, cool faces, the cron job
    assert "Installing dependencies (npm ci)" in pushes.split("Add cool faces")[-1], describe(result)
    rejected = [line for line in pushes.splitlines() if "Push rejected" in line]  # first: CI shows the start
    assert "Push rejected: web exited with 1 at boot" in pushes, "%s\n%s" % (rejected, describe(result))


def test_the_quick_start_command_deploys_the_sample_app(new_user):
    home, env = new_user
    with open(README, encoding="utf-8") as f:
        command = quickstart_command(f.read())
    result = run(["bash", "-c", command], cwd=REPO, env=env, timeout=300)
    assert result.stdout.rstrip().endswith("foo is undefined"), describe(result)
    run([os.path.join(REPO, "bin", "tinyserv"), "apps:destroy", "--confirm", "quickstart"], env=env)
