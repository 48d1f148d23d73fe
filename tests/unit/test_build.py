"""build.py's reading of the pushed tree: files in a build directory the app's user can write (root mode)."""

import os

import pytest

from tinyserv.deploy import build
from tinyserv.common.errors import TinyservError

from .races import SwapAfterLook

SECRET = b"web: only the deploy user may read this line"


@pytest.fixture
def pushed(tmp_path):
    """A build directory with a Procfile (and one reached through a link to a directory in the tree), and a
    file of the deploy user's outside it."""
    build_dir = tmp_path / "builds" / "b1"
    (build_dir / "conf").mkdir(parents=True)
    (build_dir / "Procfile").write_text("web: node index.js\n")
    (build_dir / "conf" / "Procfile").write_text("web: node conf.js\n")
    os.symlink("conf", build_dir / "config")
    secret = tmp_path / "deploy-only"
    secret.mkdir(mode=0o700)
    (secret / "Procfile").write_bytes(SECRET)
    return build_dir, secret


@pytest.mark.parametrize("after", [1, 2, 3, 4])
def test_a_procfile_swapped_for_a_link_while_the_build_reads_it_shows_nothing_outside_the_tree(
        pushed, monkeypatch, after):
    build_dir, secret = pushed

    def swap():
        os.unlink(build_dir / "Procfile")
        os.symlink(secret / "Procfile", build_dir / "Procfile")
    race = SwapAfterLook(monkeypatch, "Procfile", swap, after)
    try:
        read = build.read_pushed(str(build_dir), "Procfile")
    except TinyservError as e:
        read = str(e).encode()
    monkeypatch.undo()
    assert race.swapped or after > 1
    assert SECRET not in read


@pytest.mark.parametrize("after", [1, 2, 3, 4])
def test_a_directory_on_the_way_swapped_for_a_link_shows_nothing_outside_the_tree(pushed, monkeypatch, after):
    build_dir, secret = pushed

    def swap():
        os.rename(build_dir / "conf", build_dir / "conf-moved")
        os.symlink(secret, build_dir / "conf")
    race = SwapAfterLook(monkeypatch, "conf", swap, after)
    try:
        read = build.read_pushed(str(build_dir), "config/Procfile")
    except TinyservError as e:
        read = str(e).encode()
    monkeypatch.undo()
    assert race.swapped or after > 1
    assert SECRET not in read


@pytest.mark.parametrize("link, expected", [
    ("conf/Procfile", b"web: node conf.js\n"),
    ("./config/../conf/Procfile", b"web: node conf.js\n"),
    ("missing", None),
])
def test_a_pushed_file_may_be_a_link_inside_the_tree(pushed, link, expected):
    build_dir, _ = pushed
    os.symlink(link, build_dir / "app.json")
    assert build.read_pushed(str(build_dir), "app.json") == expected


@pytest.mark.parametrize("link", ["/etc/passwd", "../../deploy-only/Procfile", "config/../../b1/../../x", "app.json"])
def test_a_pushed_file_linked_outside_the_tree_or_to_itself_is_refused(pushed, link):
    build_dir, _ = pushed
    os.symlink(link, build_dir / "app.json")
    with pytest.raises(TinyservError, match="app.json points outside the pushed tree"):
        build.read_pushed(str(build_dir), "app.json")


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_a_pushed_pipe_or_directory_is_refused_at_once(pushed, make):
    build_dir, _ = pushed
    make(build_dir / "app.json")
    with pytest.raises(TinyservError, match="app.json is not a regular file"):
        build.read_pushed(str(build_dir), "app.json")
