"""store.py: atomic writes, JSON reads with defaults, and locks."""

import json
import os
import subprocess
import sys

import pytest

from tinyserv.state import store
from tinyserv.common.errors import TinyservError

VALUES = [
    {},
    {"releases": [{"version": 1, "config": {"MSG": "it's \"x\"\n⬢"}}]},
    [1, 2.5, None, True, "s"],
    "just a string",
]


@pytest.mark.parametrize("value", VALUES)
def test_json_written_is_read_back_equal(tmp_path, value):
    path = str(tmp_path / "state.json")
    store.write_json(path, value)
    assert store.read_json(path) == value


def test_json_is_written_pretty_with_sorted_keys_and_a_final_newline(tmp_path):
    path = str(tmp_path / "x.json")
    store.write_json(path, {"b": 1, "a": [2]})
    with open(path) as f:
        assert f.read() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'


def test_a_write_leaves_only_the_file_behind(tmp_path):
    path = str(tmp_path / "x.json")
    store.write_json(path, {"a": 1})
    store.write_json(path, {"a": 2})
    assert os.listdir(tmp_path) == ["x.json"]


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755])
def test_the_file_gets_the_requested_mode(tmp_path, mode):
    path = str(tmp_path / "x")
    store.write_atomic(path, "data", mode)
    assert os.stat(path).st_mode & 0o777 == mode


def test_the_default_mode_is_private(tmp_path):
    path = str(tmp_path / "x.json")
    store.write_json(path, {})
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_rewrite_replaces_the_file_instead_of_editing_it(tmp_path):
    path = str(tmp_path / "x.json")
    store.write_json(path, {"a": 1})
    with open(path) as reader:  # a reader that opened the old file still sees it whole
        store.write_json(path, {"a": 2})
        assert json.load(reader) == {"a": 1}
    assert store.read_json(path) == {"a": 2}


def test_bytes_are_written_as_they_are(tmp_path):
    path = str(tmp_path / "x")
    store.write_atomic(path, b"\x00\xffraw")
    with open(path, "rb") as f:
        assert f.read() == b"\x00\xffraw"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = str(tmp_path / "x")
    store.write_atomic(path, "old")
    with pytest.raises(TypeError):
        store.write_atomic(path, 12345)  # not bytes: fails half way through
    assert os.listdir(tmp_path) == ["x"]
    with open(path) as f:
        assert f.read() == "old"


@pytest.mark.parametrize("default", [None, {}, {"releases": []}])
def test_a_missing_file_reads_as_the_default(tmp_path, default):
    assert store.read_json(str(tmp_path / "missing.json"), default) == default


@pytest.mark.parametrize("text", ["", "{", "{'a': 1}", "not json", "\xff"])
def test_invalid_json_raises_the_project_error_naming_the_file(tmp_path, text):
    path = tmp_path / "broken.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(TinyservError, match="broken.json is damaged \\(not valid JSON"):
        store.read_json(str(path))


def test_a_lock_excludes_a_second_holder(tmp_path):
    path = str(tmp_path / "lock")
    with store.locked(path):
        with pytest.raises(TinyservError, match="timed out waiting for a lock on .*lock"):
            with store.locked(path, timeout=0.1):
                pass


def test_a_lock_is_free_again_once_released(tmp_path):
    path = str(tmp_path / "lock")
    with store.locked(path):
        pass
    with store.locked(path, timeout=0):
        pass


def test_a_lock_says_once_that_it_waits(tmp_path):
    path = str(tmp_path / "lock")
    calls = []
    with store.locked(path):
        with pytest.raises(TinyservError):
            with store.locked(path, timeout=0.1, waiting=lambda: calls.append(1)):
                pass
    assert calls == [1]


def test_a_free_lock_does_not_say_it_waits(tmp_path):
    calls = []
    with store.locked(str(tmp_path / "lock"), waiting=lambda: calls.append(1)):
        pass
    assert calls == []


def test_a_lock_held_by_another_process_excludes_us(tmp_path):
    path = str(tmp_path / "lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(TinyservError, match="timed out waiting for a lock"):
            with store.locked(path, timeout=0.1):
                pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()
    with store.locked(path, timeout=1):
        pass


def test_a_lock_file_is_created_private(tmp_path):
    path = str(tmp_path / "lock")
    with store.locked(path):
        pass
    assert os.stat(path).st_mode & 0o777 == 0o600


SHAPE = {"version": int, "name": str, "config": store.mapping_of(str), "build": (str, None), "?ref": str,
         "items": [{"n": int}], "?apps": ([str], None)}
GOOD = {"version": 3, "name": "x", "config": {"A": "1"}, "build": None, "items": [{"n": 1}]}


@pytest.mark.parametrize("value, problem", [
    ([], "expected an object"),
    ({**GOOD, "version": "3"}, "expected a whole number at version, found text"),
    ({**GOOD, "version": True}, "expected a whole number at version, found true/false"),
    ({k: v for k, v in GOOD.items() if k != "name"}, "name is missing"),
    ({**GOOD, "config": {"A": 1}}, "expected text at A, found a whole number at config"),
    ({**GOOD, "build": 5}, "expected text or null at build"),
    ({**GOOD, "ref": None}, "expected text at ref, found null"),
    ({**GOOD, "items": {}}, "expected a list at items"),
    ({**GOOD, "items": [{"n": 1}, {"n": "2"}]}, "expected a whole number at items[1].n"),
    ({**GOOD, "apps": "shop"}, "expected a list at apps"),
    ({**GOOD, "apps": ["shop", 2]}, "expected text at apps[1]"),
])
def test_load_names_the_file_and_what_is_wrong_with_its_shape(tmp_path, value, problem):
    path = tmp_path / "state.json"
    store.write_json(str(path), value)
    with pytest.raises(TinyservError) as error:
        store.load(str(path), SHAPE)
    assert str(error.value).startswith(str(path) + " is damaged (")
    assert problem in str(error.value)


def test_load_returns_a_file_of_the_right_shape_and_the_default_when_it_is_missing(tmp_path):
    path = tmp_path / "state.json"
    assert store.load(str(path), SHAPE, "default") == "default"
    store.write_json(str(path), {**GOOD, "ref": "refs/heads/main", "apps": None})
    assert store.load(str(path), SHAPE)["ref"] == "refs/heads/main"
    store.write_json(str(path), {**GOOD, "apps": ["shop"]})
    assert store.load(str(path), SHAPE)["apps"] == ["shop"]


def test_load_without_a_default_calls_a_missing_file_an_error(tmp_path):
    with pytest.raises(TinyservError, match="state.json is missing"):
        store.load(str(tmp_path / "state.json"), SHAPE)


def test_a_write_that_fails_is_one_project_error_naming_the_file(tmp_path):
    with pytest.raises(TinyservError, match="cannot write .*/no-such-dir/x.json: No such file or directory"):
        store.write_json(str(tmp_path / "no-such-dir" / "x.json"), {})


def test_a_temp_file_swapped_for_a_link_never_changes_the_mode_of_what_it_points_to(tmp_path, monkeypatch):
    # An app's user may write the directory (a dependency directory in root mode): it swaps our temp file.
    from .races import SwapAfterLook
    victim = tmp_path / "keys.json"
    victim.write_text("{}")
    victim.chmod(0o600)
    shared = tmp_path / "shared"
    shared.mkdir()
    planted = []

    def swap():
        [tmp] = [n for n in os.listdir(shared) if n.startswith(".tmp-")]
        os.unlink(shared / tmp)
        os.symlink(victim, shared / tmp)
        planted.append(tmp)
    SwapAfterLook(monkeypatch, lambda name: name.startswith(".tmp-"), swap)
    store.write_atomic(str(shared / ".complete"), "", 0o644)
    monkeypatch.undo()
    assert planted
    assert os.stat(victim).st_mode & 0o777 == 0o600 and victim.read_text() == "{}"


def test_only_files_that_outlive_their_processes_are_synced_to_disk(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    store.write_json(str(tmp_path / "release.json"), {"port": 5000})
    assert len(synced) == 1
    store.write_json(str(tmp_path / "state.json"), {"instances": []}, durable=False)
    assert len(synced) == 1 and store.read_json(str(tmp_path / "state.json")) == {"instances": []}
