"""userfiles.py: what tinyserv reads from a user is a regular file, read up to a stated limit."""

import io
import os

import pytest

from tinyserv.common import userfiles
from tinyserv.common.errors import TinyservError


def test_a_regular_file_within_the_limit_is_read_whole(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\n")
    assert userfiles.read_bytes(str(path), 4) == b"A=1\n"
    assert userfiles.read_text(str(path), 4) == "A=1\n"


def test_a_symlink_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "real").write_text("A=1\n")
    os.symlink(tmp_path / "real", tmp_path / ".env")
    assert userfiles.read_text(str(tmp_path / ".env"), 100) == "A=1\n"


def test_a_file_over_the_limit_is_refused_naming_the_limit(tmp_path):
    path = tmp_path / ".env"
    path.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(TinyservError, match=r"^%s is larger than 1 MiB, the most tinyserv reads$" % path):
        userfiles.read_bytes(str(path), userfiles.MAX_ENV)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/"])
def test_a_device_or_a_directory_is_refused_before_anything_is_read(path):
    with pytest.raises(TinyservError, match="it is not a regular file"):
        userfiles.read_bytes(path, userfiles.MAX_ENV)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    with pytest.raises(TinyservError, match="it is not a regular file"):
        userfiles.read_bytes(fifo, userfiles.MAX_ENV)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(TinyservError, match="cannot read .*: No such file or directory"):
        userfiles.read_bytes(str(tmp_path / "nope"), 10)


def test_text_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "key.pub"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(TinyservError, match="not UTF-8 text"):
        userfiles.read_text(str(path), 10)


def test_a_stream_is_read_up_to_its_limit_and_refused_past_it():
    assert userfiles.read_stream(io.BytesIO(b"1234"), 4, "standard input") == b"1234"
    with pytest.raises(TinyservError, match="standard input is larger than 4 KiB"):
        userfiles.read_stream(io.BytesIO(b"x" * 4097), 4096, "standard input")


@pytest.mark.parametrize("limit, text", [(1024 * 1024, "1 MiB"), (64 * 1024, "64 KiB"), (16 * 1024, "16 KiB")])
def test_size_text(limit, text):
    assert userfiles.size_text(limit) == text


@pytest.mark.parametrize("text, message", [
    ("{", "app.json is not valid JSON: "),
    ("[" * 100000 + "]" * 100000, "app.json nests too deeply to be read"),
    ('{"a":' * 100000 + "1" + "}" * 100000, "app.json nests too deeply to be read"),
])
def test_json_that_is_invalid_or_too_deep_is_one_line(text, message):
    with pytest.raises(TinyservError, match="^" + message):
        userfiles.parse_json(text, "app.json")
