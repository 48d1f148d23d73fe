"""layout.py: where things live under the root, and which apps exist."""

import os

import pytest

from tinyserv.state import releases
from tinyserv.common.errors import TinyservError
from tinyserv.state.layout import Layout, server_root, start_port


@pytest.mark.parametrize("environ, expected", [
    ({"TINYSERV_ROOT": "/srv/tinyserv"}, "/srv/tinyserv"),
    ({"TINYSERV_ROOT": "/srv/tinyserv/"}, "/srv/tinyserv"),
    ({"TINYSERV_ROOT": "/srv/../srv/t"}, "/srv/t"),
    ({"TINYSERV_ROOT": "~/t"}, os.path.join(os.path.expanduser("~"), "t")),
    ({}, os.path.join(os.path.expanduser("~"), ".tinyserv")),
    ({"TINYSERV_ROOT": ""}, os.path.join(os.path.expanduser("~"), ".tinyserv")),
])
def test_server_root_is_absolute(environ, expected):
    assert server_root(environ) == expected


def test_a_relative_root_is_made_absolute():
    assert server_root({"TINYSERV_ROOT": "rel"}) == os.path.join(os.getcwd(), "rel")


@pytest.mark.parametrize("environ, port", [
    ({}, 5000),
    ({"TINYSERV_START_PORT": ""}, 5000),
    ({"TINYSERV_START_PORT": "8000"}, 8000),
    ({"TINYSERV_START_PORT": "65535"}, 65535),
])
def test_start_port_comes_from_the_environment(environ, port):
    assert start_port(environ) == port


@pytest.mark.parametrize("value", ["0", "65536", "-1", "http", "80.5", "²"])
def test_a_bad_start_port_is_refused(value):
    with pytest.raises(TinyservError, match="TINYSERV_START_PORT must be a port number"):
        start_port({"TINYSERV_START_PORT": value})


def test_paths_of_an_app():
    layout = Layout("/r")
    assert [layout.public_release("a"), layout.repo("a"), layout.app_dir("a"), layout.build_dir("a", "b1"),
            layout.build_meta("a", "b1"), layout.log_file("a"), layout.state_file("a")] == [
        "/r/releases/a.json", "/r/repos/a.git", "/r/apps/a", "/r/apps/a/builds/b1", "/r/apps/a/builds/b1.json",
        "/r/apps/a/log/app.log", "/r/apps/a/run/state.json"]


@pytest.mark.parametrize("name", ["../x", "a/b", "", "..", "A"])
def test_paths_refuse_names_that_are_not_app_names(name):
    with pytest.raises(TinyservError, match="invalid app name"):
        Layout("/r").app_dir(name)


def test_ensure_creates_private_directories_and_is_safe_twice(tmp_path):
    layout = Layout(str(tmp_path / "root"))
    layout.ensure()
    layout.ensure()
    assert sorted(os.listdir(layout.root)) == ["apps", "releases", "repos", "run"]
    assert os.stat(layout.apps_dir).st_mode & 0o077 == 0


def test_apps_are_the_published_releases_sorted(layout):
    for name in ("zeta", "alpha"):
        os.makedirs(layout.app_dir(name))
        releases.add(layout, name, "Initial release", {}, by="me", app_port=5000)
    open(os.path.join(layout.releases_dir, ".tmp-abc"), "w").close()
    assert layout.apps() == ["alpha", "zeta"]
    assert layout.exists("alpha") and not layout.exists("beta")


def test_apps_of_a_root_that_does_not_exist_yet_is_empty(tmp_path):
    assert Layout(str(tmp_path / "nothing")).apps() == []


def test_require_names_a_missing_app(layout):
    with pytest.raises(TinyservError, match="no app named 'beta' on this server"):
        layout.require("beta")
