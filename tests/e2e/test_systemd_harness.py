"""The systemd server harness itself (groundwork for issue 16): a stock Debian server with systemd as PID 1,
reached over ssh on 127.0.0.1 as root, set up the way the README asks, and `reboot()` is a real reboot.

The reboot test comes last: the server is shared by the module.
"""

import pytest

from support import describe

PROBE_UNIT = """[Unit]
Description=tinyserv e2e: proves enabled units start at boot

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo started > /run/e2e-boot-probe'

[Install]
WantedBy=multi-user.target
"""


def root(server, command, **kwargs):
    """Run `command` as root over ssh, failing with the command, exit code and output."""
    __tracebackhide__ = True
    return server.ssh_as("root", command, **kwargs)


def lines(result):
    return result.stdout.split()


def test_pid_1_is_systemd(systemd_server):
    result = root(systemd_server, "cat /proc/1/comm; readlink /proc/1/exe")
    assert lines(result) == ["systemd", "/usr/lib/systemd/systemd"], describe(result)


def test_the_boot_finished(systemd_server):
    assert systemd_server.system_state() in ("running", "degraded"), systemd_server.diagnosis()


def test_ssh_logs_in_as_root_over_loopback(systemd_server):
    result = root(systemd_server, "id -un; echo $SSH_CONNECTION")
    user, client_ip, _client_port, server_ip, server_port = lines(result)
    assert user == "root", describe(result)
    assert server_port == "22", describe(result)
    assert systemd_server.root_remote == f"ssh://root@127.0.0.1:{systemd_server.port(22)}"


@pytest.mark.parametrize("container_port", [22, 80, 443, 5000, 5009])
def test_ports_are_published_on_loopback_only(systemd_server, container_port):
    bindings = systemd_server.container.attrs["NetworkSettings"]["Ports"][f"{container_port}/tcp"]
    assert [binding["HostIp"] for binding in bindings] == ["127.0.0.1"]


def test_root_logs_in_with_a_key_only(systemd_server):
    result = root(systemd_server, "sshd -T | grep -Ei '^(passwordauthentication|kbdinteractiveauthentication"
                                  "|permitrootlogin) '")
    assert sorted(result.stdout.lower().splitlines()) == [
        "kbdinteractiveauthentication no", "passwordauthentication no", "permitrootlogin without-password"], \
        describe(result)


def test_there_is_no_deploy_user(systemd_server):
    result = root(systemd_server, "id deploy", check=False)
    assert result.returncode == 1 and "no such user" in result.stderr, describe(result)


def test_sshd_and_postgresql_are_active(systemd_server):
    result = root(systemd_server, "systemctl is-active ssh postgresql postgresql@15-main", check=False)
    assert lines(result) == ["active", "active", "active"], describe(result)


def test_postgresql_answers(systemd_server):
    result = root(systemd_server, "runuser -u postgres -- psql -tAc 'select 41 + 1'")
    assert result.stdout.strip() == "42", describe(result)


@pytest.mark.parametrize("unit", ["nginx", "redis-server"])
def test_debians_own_nginx_and_redis_units_are_disabled_and_not_running(systemd_server, unit):
    enabled = root(systemd_server, f"systemctl is-enabled {unit}", check=False)
    assert enabled.stdout.strip() == "disabled", describe(enabled)
    active = root(systemd_server, f"systemctl is-active {unit}", check=False)
    assert active.stdout.strip() == "inactive", describe(active)


def test_no_unit_failed(systemd_server):
    result = root(systemd_server, "systemctl list-units --failed --plain --no-legend --no-pager")
    assert result.stdout.strip() == "", describe(result)


def test_reboot_is_a_real_reboot(systemd_server):
    """After reboot(): /run is empty again, systemd started anew, enabled units (ssh, PostgreSQL, one of the
    admin's own) started again, and ssh as root answers on the (re-read) published port."""
    show = "systemctl show --property=ActiveEnterTimestampMonotonic --value ssh.service"
    root(systemd_server, "echo before > /run/e2e-before-reboot")
    unit = root(systemd_server, "cat > /etc/systemd/system/e2e-boot-probe.service && "
                                "systemctl enable e2e-boot-probe.service", input=PROBE_UNIT)
    probe = root(systemd_server, "cat /run/e2e-boot-probe", check=False)
    assert probe.returncode != 0, f"the probe unit ran before any reboot\n{describe(unit)}\n{describe(probe)}"
    ssh_since = int(root(systemd_server, show).stdout)

    state = systemd_server.reboot()

    assert state in ("running", "degraded"), systemd_server.diagnosis()
    gone = root(systemd_server, "test ! -e /run/e2e-before-reboot", check=False)
    assert gone.returncode == 0, f"/run survived the reboot\n{describe(gone)}"
    again = root(systemd_server, show)
    assert int(again.stdout) > ssh_since, f"ssh.service did not start again\n{describe(again)}"
    probe = root(systemd_server, "cat /run/e2e-boot-probe", check=False)
    assert probe.stdout.strip() == "started", f"the enabled probe unit did not run at boot\n{describe(probe)}"
    active = root(systemd_server, "systemctl is-active ssh postgresql postgresql@15-main", check=False)
    assert lines(active) == ["active", "active", "active"], describe(active)
    pid1 = root(systemd_server, "cat /proc/1/comm")
    assert pid1.stdout.strip() == "systemd", describe(pid1)
