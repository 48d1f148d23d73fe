"""The e2e harness itself: the server is reachable and set up the way tinyserv's README asks."""

import re

import pytest

from support import make_app, run, wait_for_http


def test_ssh_logs_in_as_deploy(server):
    assert server.ssh("id -un").stdout.strip() == "deploy"


@pytest.mark.parametrize("name, value", [
    ("TINYSERV_ROOT", "/home/deploy/tinyserv"),
    ("TINYSERV_START_PORT", "5000"),
    ("NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/ca-certificates.crt"),
])
def test_tinyserv_variables_reach_non_interactive_ssh_commands(server, name, value):
    assert server.ssh(f'echo "${name}"').stdout.strip() == value


def test_tinyserv_remote_is_on_the_path_of_ssh_commands(server):
    assert server.ssh("command -v tinyserv-remote").stdout.strip() == "/opt/tinyserv/bin/tinyserv-remote"


def test_tinyserv_remote_help_exits_zero(server):
    server.ssh("tinyserv-remote --help")


@pytest.mark.parametrize("command", ["node --version", "npm --version", "git --version", "python3 --version"])
def test_build_tools_are_installed(server, command):
    server.ssh(command)


def test_npm_reaches_the_registry_from_the_server(server):
    version = server.ssh("npm view express version", timeout=120).stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)


def test_sshd_listens_on_port_22(host):
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_tinyserv_is_installed_readable_for_deploy(host):
    assert host.file("/opt/tinyserv/lib").is_directory
    assert host.run("test -r /opt/tinyserv/bin/tinyserv-remote").rc == 0


@pytest.mark.parametrize("container_port", [22, 5000, 5029])
def test_ports_are_published_on_loopback_only(server, container_port):
    bindings = server.container.attrs["NetworkSettings"]["Ports"][f"{container_port}/tcp"]
    assert [binding["HostIp"] for binding in bindings] == ["127.0.0.1"]


def test_a_listener_on_port_5000_in_the_server_answers_at_its_url(server):
    server.ssh("setsid node -e \"require('http').createServer((q, s) => s.end('probe')).listen(5000)\" "
               "</dev/null >/tmp/probe.log 2>&1 & echo $! >/tmp/probe.pid")
    try:
        assert wait_for_http(server.url(5000), contains="probe", timeout=15) == (200, "probe")
    finally:
        server.ssh("kill $(cat /tmp/probe.pid)")


def test_git_on_this_machine_pushes_to_the_server(server, tmp_path):
    app = make_app(tmp_path / "app", {"index.js": "console.log('hi')\n"})
    server.ssh("rm -rf /tmp/probe.git && git init -q --bare /tmp/probe.git")
    run(["git", "push", "-q", f"{server.remote}/tmp/probe.git", "main"], cwd=app, env=server.env)
    assert server.ssh("git -C /tmp/probe.git log --format=%s main").stdout.strip() == "app"


def test_restart_reruns_the_boot_hook_and_keeps_home(server):
    server.ssh("echo kept > ~/restart-probe")
    boots_before = server.logs().count("tinyserv-e2e: boot:")
    server.restart()
    assert server.logs().count("tinyserv-e2e: boot:") == boots_before + 1
    assert server.ssh("cat ~/restart-probe && rm ~/restart-probe").stdout.strip() == "kept"
    assert server.ssh("id -un").stdout.strip() == "deploy"


def test_a_read_only_install_compiles_each_module_once_into_the_users_cache(server, host):
    """/opt/tinyserv is root's: the deploy user's commands keep their bytecode in ~/.cache/tinyserv instead."""
    assert host.run("test -w /opt/tinyserv/lib/tinyserv").rc != 0, "the install must be read-only for deploy"
    server.ssh("rm -rf ~/.cache/tinyserv && tinyserv-remote apps")
    cached = "/home/deploy/.cache/tinyserv/bytecode/opt/tinyserv/lib/tinyserv"
    listing = server.ssh(f"cd {cached} && find . -name '*.pyc' | sort").stdout.split()
    # sys.pycache_prefix mirrors the source tree, without __pycache__ folders (the package's own __init__ is
    # imported by the launcher before the prefix is set: it is the one module compiled on every run)
    assert "./server/remote.cpython-311.pyc" in listing and "./common/commands.cpython-311.pyc" in listing, listing
    before = server.ssh(f"find {cached} -name '*.pyc' -newer /opt/tinyserv/bin/tinyserv-remote -printf '%T@ %p\\n'"
                        " | sort").stdout
    server.ssh("tinyserv-remote apps")  # the second run imports what the first one wrote, compiling nothing
    after = server.ssh(f"find {cached} -name '*.pyc' -newer /opt/tinyserv/bin/tinyserv-remote -printf '%T@ %p\\n'"
                       " | sort").stdout
    assert after == before
