"""releases.py: vN history and its public projection, in a temporary root."""

import json
import os
import re

import pytest

from tinyserv.state import releases
from tinyserv.common.errors import TinyservError

APP = "myapp"


@pytest.fixture
def app_layout(layout):
    os.makedirs(layout.app_dir(APP))
    return layout


def public(layout):
    with open(layout.public_release(APP)) as f:
        return json.load(f)


def test_now_iso_formats_utc_with_a_z():
    assert releases.now_iso(lambda: 1795842000) == "2026-11-28T05:00:00Z"


def test_releases_are_numbered_from_v1(app_layout):
    first = releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    second = releases.add(app_layout, APP, "Set A config vars", {"A": "1"}, by="me")
    third = releases.add(app_layout, APP, "Deploy abc1234", {"A": "1"}, build="b1", commit="abc1234" * 5, by="me")
    assert [first["version"], second["version"], third["version"]] == [1, 2, 3]
    assert [r["version"] for r in releases.history(app_layout, APP)] == [1, 2, 3]
    assert releases.current(app_layout, APP) == third


def test_a_release_records_what_it_was_given(app_layout):
    release = releases.add(app_layout, APP, "Deploy abc", {"MSG": "hi"}, build="b1", commit="abc", by="ann",
                           app_port=5000)
    assert {k: v for k, v in release.items() if k != "created_at"} == {
        "version": 1, "description": "Deploy abc", "config": {"MSG": "hi"}, "build": "b1",
        "commit": "abc", "by": "ann"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", release["created_at"])


def test_a_release_keeps_its_own_copy_of_the_config(app_layout):
    config = {"A": "1"}
    release = releases.add(app_layout, APP, "Initial release", config, by="me", app_port=5000)
    config["A"] = "changed"
    assert release["config"] == {"A": "1"}
    assert releases.current_config(app_layout, APP) == {"A": "1"}


def test_the_public_file_has_the_current_release_its_app_and_port(app_layout):
    releases.add(app_layout, APP, "Initial release", {"SECRET": "s3cret"}, by="me", app_port=5123)
    release = releases.add(app_layout, APP, "Deploy abc", {"SECRET": "s3cret"}, build="b1", commit="abc", by="me")
    assert public(app_layout) == {
        "app": APP, "port": 5123, "version": 2, "description": "Deploy abc", "build": "b1",
        "commit": "abc", "created_at": release["created_at"]}


def test_the_public_file_never_shows_config_and_is_world_readable(app_layout):
    releases.add(app_layout, APP, "Initial release", {"SECRET": "s3cret"}, by="me", app_port=5000)
    with open(app_layout.public_release(APP)) as f:
        assert "s3cret" not in f.read()
    assert os.stat(app_layout.public_release(APP)).st_mode & 0o777 == 0o644


def test_the_port_is_kept_across_releases(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5007)
    releases.add(app_layout, APP, "Set A", {"A": "1"}, by="me")
    assert releases.port(app_layout, APP) == 5007
    assert public(app_layout)["port"] == 5007


def test_an_app_without_history_has_no_current_release(app_layout):
    assert releases.history(app_layout, APP) == []
    assert releases.current(app_layout, APP) is None
    assert releases.current_config(app_layout, APP) == {}


def test_find_returns_the_release_with_that_version(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    releases.add(app_layout, APP, "Set A", {"A": "1"}, by="me")
    assert releases.find(app_layout, APP, 1)["description"] == "Initial release"
    assert releases.find(app_layout, APP, 2)["config"] == {"A": "1"}


def test_find_refuses_a_version_that_does_not_exist(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    with pytest.raises(TinyservError, match="myapp has no release v9"):
        releases.find(app_layout, APP, 9)


def test_drop_last_forgets_the_newest_release_and_republishes_the_one_before(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    releases.add(app_layout, APP, "Deploy abc", {}, build="b1", commit="abc", by="me")
    releases.drop_last(app_layout, APP, 2)
    assert [r["version"] for r in releases.history(app_layout, APP)] == [1]
    assert public(app_layout)["version"] == 1
    assert public(app_layout)["port"] == 5000


def test_drop_last_leaves_history_alone_when_the_version_is_not_the_newest(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    releases.add(app_layout, APP, "Deploy abc", {}, build="b1", commit="abc", by="me")
    releases.drop_last(app_layout, APP, 1)
    assert [r["version"] for r in releases.history(app_layout, APP)] == [1, 2]


def test_after_drop_last_the_next_release_reuses_the_number(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    releases.add(app_layout, APP, "Deploy abc", {}, build="b1", by="me")
    releases.drop_last(app_layout, APP, 2)
    assert releases.add(app_layout, APP, "Deploy def", {}, build="b2", by="me")["version"] == 2


@pytest.mark.parametrize("config, keys", [
    ({}, []),
    ({"B": "2", "A": "secret"}, ["A", "B"]),
])
def test_summary_lists_config_keys_but_hides_values(config, keys):
    release = {"version": 3, "description": "d", "config": config, "build": None, "commit": None,
               "by": "me", "created_at": "2026-11-28T05:00:00Z"}
    shown = releases.summary(release)
    assert shown == {"version": 3, "description": "d", "build": None, "commit": None, "by": "me",
                     "created_at": "2026-11-28T05:00:00Z", "config_keys": keys}
    assert "secret" not in json.dumps(shown)
    assert release["config"] == config  # the release itself is untouched


def test_a_swarm_restart_reruns_the_current_release_on_another_rollout_without_making_a_release(app_layout):
    releases.add(app_layout, APP, "Initial release", {}, by="me", app_port=5000)
    releases.add(app_layout, APP, "Deploy abc", {}, build="b1", commit="abc", by="me",
                 swarm={"rollout": "old00001", "image": "img:b1"})
    releases.rerun(app_layout, APP, {"rollout": "new00002", "image": "img:b1"})
    assert [r["version"] for r in releases.history(app_layout, APP)] == [1, 2]
    assert releases.current(app_layout, APP)["swarm"] == {"rollout": "new00002", "image": "img:b1"}
    shown = public(app_layout)
    assert (shown["version"], shown["port"], shown["swarm"]["rollout"]) == (2, 5000, "new00002")
