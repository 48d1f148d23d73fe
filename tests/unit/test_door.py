"""door.py, the ssh door: which git command a deploy key may run on which repository."""

import os

import pytest

from tinyserv.server import door
from tinyserv.state import store
from tinyserv.common.errors import TinyservError

FULL = {"apps": None, "push_only": False}
LIMITED = {"apps": ["shop"], "push_only": False}
PUSH_ONLY = {"apps": ["shop"], "push_only": True}


@pytest.fixture
def shop(layout, monkeypatch):
    """Apps named shop and blog, and git's exec caught: [(program, argv)]."""
    for app in ("shop", "blog"):
        store.write_json(layout.public_release(app), {"app": app})  # an app exists while this file does
    execs = []
    monkeypatch.setattr(os, "execvp", lambda program, argv: execs.append((program, argv)))
    return execs


@pytest.mark.parametrize("entry, git", [
    (FULL, "git-receive-pack"), (FULL, "git-upload-pack"),
    (LIMITED, "git-receive-pack"), (LIMITED, "git-upload-pack"),
    (PUSH_ONLY, "git-receive-pack"),
])
def test_a_key_runs_git_on_the_repository_of_an_app_it_may_touch(layout, shop, entry, git):
    door.serve_git(layout, entry, [git, layout.repo("shop")])
    assert shop == [(git, [git, layout.repo("shop")])]


def test_a_push_only_key_may_not_fetch_or_clone(layout, shop):
    with pytest.raises(TinyservError, match="may only push.*not fetch or clone"):
        door.serve_git(layout, PUSH_ONLY, ["git-upload-pack", layout.repo("shop")])
    assert shop == []


def test_a_limited_key_may_not_touch_another_app_s_repository(layout, shop):
    with pytest.raises(TinyservError, match="not blog"):
        door.serve_git(layout, LIMITED, ["git-receive-pack", layout.repo("blog")])
    assert shop == []
