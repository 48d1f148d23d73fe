"""nofollow.py: reading directories another user can write without following a link planted there."""

import os
import socket

import pytest

from tinyserv.state import nofollow


@pytest.fixture
def top(tmp_path):
    """A tree with a file, a directory, a link to a directory outside it, a pipe and a socket."""
    (tmp_path / "tree" / "dir").mkdir(parents=True)
    (tmp_path / "tree" / "dir" / "file").write_bytes(b"in the tree")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"secret")
    os.symlink(tmp_path / "outside", tmp_path / "tree" / "link")
    os.mkfifo(tmp_path / "tree" / "pipe")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "tree" / "sock"))
    fd = nofollow.open_dir(str(tmp_path / "tree"))
    yield fd
    os.close(fd)


def test_a_walk_gives_files_directories_and_links_but_never_what_a_link_points_to(top):
    found = {f.rel: (f.link, f.fd is not None) for f in nofollow.walk(top)}
    assert found == {"dir": (None, True), "dir/file": (None, True), "link": (found["link"][0], False)}
    assert found["link"][0].endswith("/outside")


def test_a_walk_leaves_out_what_skip_names_and_enters_no_deeper_than_max_depth(top, monkeypatch):
    assert [f.rel for f in nofollow.walk(top, skip=lambda rel: rel == "dir")] == ["link"]
    monkeypatch.setattr(nofollow, "MAX_DEPTH", 1)
    deep = []
    assert [f.rel for f in nofollow.walk(top, too_deep=deep.append)] == ["dir", "link"]
    assert deep == ["dir"]


@pytest.mark.parametrize("rel, expected", [("dir/file", b"in the tree"), ("dir/../dir/./file", b"in the tree"),
                                           ("nothing", None), ("dir/file/x", None)])
def test_read_beneath_reads_inside_the_tree(top, rel, expected):
    read = nofollow.read_beneath(top, rel, 1024)
    assert (read and read[1]) == expected


@pytest.mark.parametrize("rel", ["link/secret", "../outside/secret", "dir/../../outside/secret"])
def test_read_beneath_refuses_every_way_out(top, rel):
    with pytest.raises(nofollow.Outside):
        nofollow.read_beneath(top, rel, 1024)
