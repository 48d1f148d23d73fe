"""server:install's parts: the package sent, unpacking it on the server, ~/.bashrc, the doctor's checks."""

import fcntl
import io
import os
import subprocess
import sys
import tarfile

import pytest

from tinyserv.server import doctor, lifecycle, setup as serversetup
from tinyserv.supervise import handover
from tinyserv.cli import install
from tinyserv.common import unpack
from tinyserv.server.doctor import FAIL, OK, WARN, Check
from tinyserv.common.errors import TinyservError
from tinyserv.state.layout import Layout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- the package ---


def test_the_package_holds_bin_and_lib_without_caches_and_is_the_same_every_time(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib" / "tinyserv" / "__pycache__").mkdir(parents=True)
    (tree / "bin" / "tinyserv-remote").write_text("#!/usr/bin/env python3\n")
    (tree / "bin" / "tinyserv-remote").chmod(0o755)
    (tree / "lib" / "tinyserv" / "a.py").write_text("A = 1\n")
    (tree / "lib" / "tinyserv" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"x")
    (tree / "tests").mkdir()
    (tree / "tests" / "t.py").write_text("")
    data = install.package(str(tree))
    assert data == install.package(str(tree))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m.mode for m in tar.getmembers()}
    assert members == {"bin/tinyserv-remote": 0o755, "lib/tinyserv/a.py": 0o644}
    (tree / "lib" / "tinyserv" / "a.py").write_text("A = 2\n")
    assert install.version_id(install.package(str(tree))) != install.version_id(data)


def test_the_version_id_names_the_version_and_the_code():
    ident = install.version_id(b"code")
    assert ident.startswith(install.__version__ + "-") and unpack.IDENT.match(ident)


# --- unpacking on the server ---


def tar_of(files, kinds=None):
    """A gzipped tar of {name: text}; kinds maps a name to a special tar type (a symlink, say)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            if kinds and name in kinds:
                info.type, info.linkname = kinds[name], "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(text.encode())
                info.mode = 0o755 if name.startswith("bin/") else 0o644
                tar.addfile(info, io.BytesIO(text.encode()))
    return io.BytesIO(raw.getvalue())


CODE = {"bin/tinyserv-remote": "#!/bin/sh\n", "lib/tinyserv/__init__.py": "__version__ = '9'\n"}


def test_unpack_puts_a_version_in_place_compiled_and_switch_makes_it_current(tmp_path):
    path = unpack.unpack(tar_of(CODE), "9-abc", str(tmp_path))
    assert path == str(tmp_path / "versions" / "9-abc")
    assert os.access(os.path.join(path, "bin", "tinyserv-remote"), os.X_OK)
    assert os.listdir(os.path.join(path, "lib", "tinyserv", "__pycache__"))
    unpack.switch(str(tmp_path), "9-abc")
    assert os.readlink(tmp_path / "current") == os.path.join("versions", "9-abc")
    assert unpack.current(str(tmp_path)) == "9-abc"
    assert not [n for n in os.listdir(tmp_path / "versions") if n.startswith(".")]


def test_the_launchers_are_pinned_to_the_python_that_unpacked_them_without_site(tmp_path):
    code = dict(CODE, **{"bin/tinyserv-remote": "#!/usr/bin/env python3\nprint('hi')\n"})
    path = unpack.unpack(tar_of(code), "9-abc", str(tmp_path))
    with open(os.path.join(path, "bin", "tinyserv-remote")) as f:
        assert f.read() == "#!%s -S\nprint('hi')\n" % sys.executable
    assert subprocess.run([os.path.join(path, "bin", "tinyserv-remote")], capture_output=True, text=True,
                          check=True).stdout == "hi\n"


def test_unpacking_a_version_again_keeps_the_complete_one(tmp_path):
    unpack.unpack(tar_of(CODE), "9-abc", str(tmp_path))
    unpack.unpack(tar_of({"bin/x": ""}), "9-abc", str(tmp_path))
    assert os.path.exists(tmp_path / "versions" / "9-abc" / "lib" / "tinyserv" / "__init__.py")


@pytest.mark.parametrize("files, kinds, message", [
    ({"../evil": "x"}, None, "outside bin/ and lib/"),
    ({"/etc/evil": "x"}, None, "outside bin/ and lib/"),
    ({"lib/../../evil": "x"}, None, "outside bin/ and lib/"),
    ({"docs/x": "x"}, None, "outside bin/ and lib/"),
    ({"bin/link": ""}, {"bin/link": tarfile.SYMTYPE}, "neither a file nor a directory"),
    ({"bin/tinyserv-remote": ""}, None, "has no lib/ directory"),
])
def test_unpack_refuses_a_package_that_is_not_bin_and_lib_and_leaves_nothing(tmp_path, files, kinds, message):
    with pytest.raises(unpack.UnpackError, match=message):
        unpack.unpack(tar_of(files, kinds), "9-abc", str(tmp_path))
    assert os.listdir(tmp_path / "versions") == []
    assert not (tmp_path.parent / "evil").exists()


@pytest.mark.parametrize("ident", ["", "..", ".hidden", "a/b", "x" * 90, "a b"])
def test_unpack_refuses_a_version_name_that_is_not_one(tmp_path, ident):
    with pytest.raises(unpack.UnpackError, match="is not a version name"):
        unpack.unpack(tar_of(CODE), ident, str(tmp_path))


def test_unpack_refuses_what_is_not_a_gzipped_tar(tmp_path):
    with pytest.raises(unpack.UnpackError, match="could not be unpacked"):
        unpack.unpack(io.BytesIO(b"not a tar"), "9-abc", str(tmp_path))


def test_prune_keeps_the_newest_versions_and_the_current_one(tmp_path):
    for i, name in enumerate(["v1", "v2", "v3", "v4", "v5"]):
        os.makedirs(tmp_path / "versions" / name)
        os.utime(tmp_path / "versions" / name, (1000 + i, 1000 + i))
    os.makedirs(tmp_path / "versions" / ".incoming-x")
    unpack.switch(str(tmp_path), "v1")
    unpack.prune(str(tmp_path), keep=3)
    assert sorted(os.listdir(tmp_path / "versions")) == ["v1", "v3", "v4", "v5"]


def test_unpack_runs_as_python_c_and_refuses_an_old_python_in_one_line():
    with open(unpack.__file__) as f:
        program = f.read()
    result = subprocess.run([sys.executable, "-c", program.replace("MIN_PYTHON = (3, 9)", "MIN_PYTHON = (9, 9)"),
                             "x"], capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.startswith("tinyserv: the server's python3 is 3.") and "needs 9.9 or later" in result.stderr


def test_the_installed_script_is_the_current_link_for_an_installed_version(tmp_path):
    real = tmp_path / ".tinyserv-code" / "versions" / "9-abc" / "bin" / "tinyserv-remote"
    real.parent.mkdir(parents=True)
    real.write_text("")
    assert unpack.installed_script(str(real), str(tmp_path)) == str(
        tmp_path / ".tinyserv-code" / "current" / "bin" / "tinyserv-remote")
    assert unpack.installed_script("/home/me/tinyserv/bin/tinyserv-remote", str(tmp_path)) == (
        "/home/me/tinyserv/bin/tinyserv-remote")


# --- ~/.bashrc ---

DEBIAN_BASHRC = "# ~/.bashrc\n\n# If not running interactively, don't do anything\ncase $- in\n    *i*) ;;\n" \
                "      *) return;;\nesac\nHISTSIZE=1000\n"


@pytest.mark.parametrize("before", [
    "",
    DEBIAN_BASHRC,
    serversetup.environment_block() + DEBIAN_BASHRC,
    DEBIAN_BASHRC + serversetup.environment_block(),
    "export A=1\n" + serversetup.BEGIN + " old\nexport PATH=/old:$PATH\n" + serversetup.END + "\n" + DEBIAN_BASHRC,
])
def test_tinyserv_lines_end_up_once_at_the_top_and_the_rest_is_kept(before):
    after = serversetup.with_environment(before)
    assert after.startswith(serversetup.environment_block())
    assert after.count(serversetup.BEGIN) == 1
    rest = after[len(serversetup.environment_block()):]
    assert rest == before.replace(serversetup.environment_block(), "").replace(
        serversetup.BEGIN + " old\nexport PATH=/old:$PATH\n" + serversetup.END + "\n", "")
    assert serversetup.with_environment(after) == after


def test_a_block_without_its_end_is_left_as_it_was_below_a_new_one():
    broken = serversetup.BEGIN + "\nexport X=1\n" + DEBIAN_BASHRC
    assert serversetup.with_environment(broken) == serversetup.environment_block() + broken


def test_the_block_puts_the_current_version_on_path_once_for_non_interactive_bash(tmp_path):
    (tmp_path / ".bashrc").write_text(serversetup.with_environment(DEBIAN_BASHRC))
    assert serversetup.ensure_environment(str(tmp_path)) is False
    out = subprocess.run(["bash", "-c", ". ~/.bashrc; . ~/.bashrc; echo $PATH"],
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "%s/.tinyserv-code/current/bin:/usr/bin:/bin" % tmp_path


def test_ensure_environment_creates_a_missing_bashrc(tmp_path):
    assert serversetup.ensure_environment(str(tmp_path)) is True
    assert (tmp_path / ".bashrc").read_text() == serversetup.environment_block()


# --- the boot unit ---

UNIT = "[Service]\nUser=deploy\nExecStart=/usr/bin/python3 /home/deploy/.tinyserv-code/current/bin/tinyserv-remote\n"


def place(installed, as_root, user="deploy"):
    ran = []
    said = serversetup.place_unit(UNIT, installed, as_root, user, lambda argv, data=None: ran.append((argv, data)))
    return said, ran


def test_the_unit_is_written_and_enabled_as_root_when_this_user_may():
    said, ran = place(None, ["sudo", "-n"])
    assert said == "systemd unit installed and enabled: /etc/systemd/system/tinyserv.service"
    assert ran == [(["sudo", "-n", "tee", "/etc/systemd/system/tinyserv.service"], UNIT),
                   (["sudo", "-n", "systemctl", "daemon-reload"], None),
                   (["sudo", "-n", "systemctl", "enable", "--now", "tinyserv"], None)]
    assert place(UNIT.replace("python3 ", "python3.11 "), [])[1][0][0] == ["tee", "/etc/systemd/system/tinyserv.service"]


@pytest.mark.parametrize("installed, as_root, user, expected", [
    (UNIT, ["sudo", "-n"], "deploy", "is up to date"),
    (None, None, "deploy", "to start the apps at boot, as root: tinyserv-remote systemd-unit | sudo tee"),
    (UNIT.replace("User=deploy", "User=alice"), [], "deploy", "to start the apps at boot"),  # not ours to replace
])
def test_the_unit_is_left_alone_when_it_is_there_or_not_ours_to_write(installed, as_root, user, expected):
    said, ran = place(installed, as_root, user)
    assert expected in said and ran == []


def test_the_unit_runs_the_current_version_of_an_installed_tinyserv(tmp_path, monkeypatch):
    from tinyserv.platform import control
    from tinyserv.server import lifecycle
    from tinyserv.state.layout import Layout
    real = tmp_path / ".tinyserv-code" / "versions" / "9-abc" / "bin" / "tinyserv-remote"
    real.parent.mkdir(parents=True)
    real.write_text("")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(control, "REMOTE_SCRIPT", str(real))
    unit = lifecycle.unit_text(Layout(str(tmp_path / "root")))
    assert "%s/.tinyserv-code/current/bin/tinyserv-remote supervise --boot" % tmp_path in unit


# --- the doctor ---


@pytest.mark.parametrize("check, level", [
    (lambda: doctor.check_supervisor(None, None, "/c", 0, False, False), OK),
    (lambda: doctor.check_supervisor(None, None, "/c", 2, False, False), FAIL),
    (lambda: doctor.check_supervisor(None, None, "/c", 2, True, False), WARN),
    (lambda: doctor.check_supervisor(42, "/c", "/c", 2, False, True), OK),
    (lambda: doctor.check_supervisor(42, "/old", "/c", 2, False, True), WARN),
    (lambda: doctor.check_boot(True, True, None), OK),
    (lambda: doctor.check_boot(False, False, "@reboot tinyserv-remote startup"), OK),
    (lambda: doctor.check_boot(True, False, None), WARN),
    (lambda: doctor.check_boot(False, False, None), WARN),
    (lambda: doctor.check_disk("/", lambda p: (100 * 10 ** 9, 0, 50 * 10 ** 9)), OK),
    (lambda: doctor.check_disk("/", lambda p: (100 * 10 ** 9, 0, 500 * 10 ** 6)), WARN),
    (lambda: doctor.check_disk("/", lambda p: (100 * 10 ** 9, 0, 10 ** 6)), FAIL),
    (lambda: doctor.check_programs("git", ["git"], FAIL, "every push", lambda p: "/usr/bin/" + p), OK),
    (lambda: doctor.check_programs("git", ["git"], FAIL, "every push", lambda p: None), FAIL),
    (lambda: doctor.check_programs("node, npm", ["node", "npm"], WARN, "Node.js apps", lambda p: None), WARN),
    (lambda: doctor.check_service("redis", {"argv": ["redis-server"]}, 7, lambda p: "/usr/bin/" + p), OK),
    (lambda: doctor.check_service("redis", {"argv": ["redis-server"]}, None, lambda p: "/usr/bin/" + p), FAIL),
    (lambda: doctor.check_service("redis", {"argv": ["redis-server"]}, None, lambda p: None), FAIL),
    (lambda: doctor.check_ssh_path("/c/bin/tinyserv-remote", "/c/bin/tinyserv-remote", "/bin/bash"), OK),
    (lambda: doctor.check_ssh_path(None, "/c/bin/tinyserv-remote", "/bin/bash"), FAIL),
    (lambda: doctor.check_ssh_path(None, "/c/bin/tinyserv-remote", "/bin/sh"), FAIL),
    (lambda: doctor.check_ssh_path("/opt/bin/tinyserv-remote", "/c/bin/tinyserv-remote", "/bin/bash"), WARN),
])
def test_each_check_says_ok_warn_or_fail_and_how_to_fix_what_is_not_ok(check, level):
    result = check()
    assert result.level == level
    assert (result.fix is None) == (level == OK)


def test_missing_programs_come_with_the_apt_line_that_installs_them():
    check = doctor.check_programs("node, npm", ["node", "npm"], WARN, "Node.js apps", lambda p: None)
    assert check.detail == "node, npm missing (Node.js apps)" and check.fix == "sudo apt install nodejs npm"
    assert doctor.apt_line(["postgres", "pg_ctl", "nginx", "something"]) == (
        "sudo apt install postgresql nginx-light something")
    assert doctor.check_service("pg", {"argv": ["/nonexistent/lib/postgresql/bin/postgres"]}, None,
                                lambda p: None).fix == "sudo apt install postgresql"


def test_a_login_shell_that_is_not_bash_is_named_with_its_fix():
    check = doctor.check_ssh_path(None, "/c/bin/tinyserv-remote", "/bin/sh")
    assert "the login shell is /bin/sh" in check.detail and check.fix.startswith("sudo chsh -s /bin/bash ")


def test_the_screen_is_one_line_per_check_with_fixes_below():
    screen = doctor.render([Check(OK, "git", "there", None), Check(FAIL, "supervisor", "not running", "startup")])
    assert screen == ("ok    git         there\n"
                      "FAIL  supervisor  not running\n"
                      "                  fix: startup")


def test_what_ssh_sees_is_read_from_bashrc_as_a_non_interactive_ssh_command_reads_it(tmp_path):
    (tmp_path / ".bashrc").write_text('export PATH="$HOME/bin:$PATH"\n' + DEBIAN_BASHRC +
                                      'export PATH="$HOME/below:$PATH"\n')
    for directory in ("bin", "below"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "tinyserv-remote").write_text("#!/bin/sh\n")
        (tmp_path / directory / "tinyserv-remote").chmod(0o755)
    assert doctor.ssh_sees("/bin/bash", str(tmp_path), "me") == str(tmp_path / "bin" / "tinyserv-remote")
    assert doctor.ssh_sees("/bin/sh", str(tmp_path), "me") is None


# --- the handover's lock reader ---


def test_lock_holders_names_the_process_holding_an_flock_and_not_waiters(tmp_path):
    path = str(tmp_path / "lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        assert handover.lock_holders(path) == []
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert handover.lock_holders(path) == [os.getpid()]
    finally:
        os.close(fd)
    assert handover.lock_holders(path) == []
    assert handover.lock_holders(str(tmp_path / "missing")) == []


# --- root mode's unit ---


def test_the_root_mode_unit_runs_the_supervisor_as_root_for_the_deploy_user_without_a_capability(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setenv("LOGNAME", "deploy")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    unit = lifecycle.unit_text(Layout(str(tmp_path / "root")), root=True)
    assert "\nUser=root\n" in unit and "\nEnvironment=TINYSERV_DEPLOY_USER=deploy\n" in unit
    assert "AmbientCapabilities" not in unit  # root needs none; nginx, run as deploy, gets none
    single = lifecycle.unit_text(Layout(str(tmp_path / "root")))
    assert "\nUser=deploy\n" in single and "TINYSERV_DEPLOY_USER" not in single
    assert "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n" in single


def test_the_root_mode_unit_printed_by_root_is_refused_it_must_name_the_deploy_user(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(TinyservError) as caught:
        lifecycle.unit_text(Layout(str(tmp_path / "root")), root=True)
    assert "as the deploy user" in str(caught.value)
