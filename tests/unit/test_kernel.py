"""The kernel setting the router log needs (platform/kernel.py) and doctor's check of it."""

from tinyserv.common.errors import TinyservError
from tinyserv.platform import kernel
from tinyserv.server import doctor


class Recorder:
    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on

    def __call__(self, argv, data=None):
        self.calls.append((argv, data))
        if self.fail_on and self.fail_on in argv:
            raise TinyservError("sysctl: permission denied on key \"net.unix.max_dgram_qlen\"\nmore")


def test_a_long_enough_queue_is_left_alone():
    run = Recorder()
    assert kernel.tune(["sudo", "-n"], run, queue=512) == "kernel: net.unix.max_dgram_qlen is 512"
    assert run.calls == []


def test_a_short_queue_is_set_now_and_at_boot_when_we_may():
    run = Recorder()
    said = kernel.tune(["sudo", "-n"], run, queue=10)
    assert run.calls == [(["sudo", "-n", "tee", "/etc/sysctl.d/60-tinyserv.conf"], "net.unix.max_dgram_qlen = 512\n"),
                         (["sudo", "-n", "sysctl", "-q", "-p", "/etc/sysctl.d/60-tinyserv.conf"], None)]
    assert said == "kernel: net.unix.max_dgram_qlen set to 512 (/etc/sysctl.d/60-tinyserv.conf, at boot too)"


def test_a_short_queue_we_may_not_set_says_how_in_one_line():
    run = Recorder()
    said = kernel.tune(None, run, queue=10)
    assert run.calls == []
    assert said == ("kernel: net.unix.max_dgram_qlen is 10 (nginx drops router log lines past that): as root, "
                    "echo net.unix.max_dgram_qlen=512 > /etc/sysctl.d/60-tinyserv.conf && "
                    "sysctl -p /etc/sysctl.d/60-tinyserv.conf")


def test_a_container_that_refuses_the_setting_is_said_not_failed():
    said = kernel.tune([], Recorder(fail_on="sysctl"), queue=10)
    assert said.startswith("kernel: net.unix.max_dgram_qlen is 10 and could not be set here (sysctl: permission")
    assert "docker run --sysctl net.unix.max_dgram_qlen=512" in said and "\n" not in said


def test_the_queue_is_read_from_proc(tmp_path):
    setting = tmp_path / "max_dgram_qlen"
    setting.write_text("10\n")
    assert kernel.dgram_queue(str(setting)) == 10
    assert kernel.dgram_queue(str(tmp_path / "absent")) is None


def test_doctor_warns_on_a_short_queue_with_the_fix():
    short = doctor.check_router_queue(10)
    assert short.level == doctor.WARN and "drops router log lines" in short.detail
    assert short.fix == "as root: " + kernel.how_to_set()
    assert doctor.check_router_queue(512).level == doctor.OK
    assert doctor.check_router_queue(None).level == doctor.OK


def test_doctor_warns_of_ports_in_the_kernels_ephemeral_range():
    ours = {"TINYSERV_START_PORT": 38000, "TINYSERV_HTTP_PORT": 80, "TINYSERV_HTTPS_PORT": 443}
    inside = doctor.check_ports(ours, (32768, 60999))
    assert inside.level == doctor.WARN
    assert inside.detail.startswith("TINYSERV_START_PORT=38000 in the kernel's ephemeral range (32768-60999)")
    assert inside.fix == "choose ports below 32768 (net.ipv4.ip_local_port_range)"
    assert doctor.check_ports(dict(ours, TINYSERV_START_PORT=5000), (32768, 60999)).level == doctor.OK
    assert doctor.check_ports(ours, None).level == doctor.OK


def test_the_ephemeral_range_is_read_from_proc(tmp_path):
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("32768\t60999\n")
    assert doctor.ephemeral_range(str(setting)) == (32768, 60999)
    assert doctor.ephemeral_range(str(tmp_path / "absent")) is None
