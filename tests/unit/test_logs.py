"""logs.py: stamped lines, size-capped rotation, tail with a ps filter, follow across rotation."""

import calendar
import io
import os

import pytest

from tinyserv.state import logs
from tinyserv.state.logs import LogFile

EPOCH = calendar.timegm((2026, 11, 28, 5, 0, 0))


def clock():
    return EPOCH


def test_a_log_line_is_stamped_with_utc_time_and_its_source():
    assert logs.format_line("web.1", "hello", clock) == "2026-11-28T05:00:00Z web.1: hello\n"


@pytest.mark.parametrize("text, expected", [
    ("hello\n", "hello"),
    ("hello\r\n", "hello"),
    ("  spaced  ", "  spaced  "),
    ("", ""),
    ("⬢ unicode", "⬢ unicode"),
])
def test_a_log_line_keeps_the_text_but_not_its_line_ending(text, expected):
    assert logs.format_line("tinyserv", text, clock) == "2026-11-28T05:00:00Z tinyserv: %s\n" % expected


@pytest.mark.parametrize("environ, expected", [
    ({}, 5 * 1024 * 1024),
    ({"TINYSERV_LOG_MAX_BYTES": "1000"}, 1000),
    ({"TINYSERV_LOG_MAX_BYTES": "0"}, 5 * 1024 * 1024),
    ({"TINYSERV_LOG_MAX_BYTES": "lots"}, 5 * 1024 * 1024),
    ({"TINYSERV_LOG_MAX_BYTES": "-5"}, 5 * 1024 * 1024),
    ({"TINYSERV_LOG_MAX_BYTES": "²"}, 5 * 1024 * 1024),
])
def test_the_rotation_size_comes_from_the_environment(environ, expected):
    assert logs.max_bytes(environ) == expected


def read(path):
    with open(path) as f:
        return f.read()


def line(source, text):
    return "2026-11-28T05:00:00Z %s: %s\n" % (source, text)


def test_log_file_appends_stamped_lines_creating_its_directory(tmp_path):
    path = str(tmp_path / "log" / "app.log")
    log = LogFile(path, limit=10000, clock=clock)
    log.write("web.1", "one")
    log.write("tinyserv", "two")
    log.close()
    assert read(path) == line("web.1", "one") + line("tinyserv", "two")


def test_log_file_rotates_into_dot_1_once_it_reaches_the_limit(tmp_path):
    path = str(tmp_path / "app.log")
    size = len(line("web.1", "0"))
    log = LogFile(path, limit=3 * size, clock=clock)
    for n in range(4):
        log.write("web.1", str(n))
    log.close()
    assert read(path + ".1") == line("web.1", "0") + line("web.1", "1") + line("web.1", "2")
    assert read(path) == line("web.1", "3")


def test_log_file_keeps_only_one_rotated_file(tmp_path):
    path = str(tmp_path / "app.log")
    log = LogFile(path, limit=1, clock=clock)
    for n in range(3):
        log.write("web.1", str(n))
    log.close()
    assert sorted(os.listdir(tmp_path)) == ["app.log.1"]
    assert read(path + ".1") == line("web.1", "2")


def test_append_writes_every_line_of_a_message(tmp_path):
    path = str(tmp_path / "log" / "app.log")
    logs.append(path, "tinyserv", "Release v2\nsecond line")
    lines = read(path).splitlines()
    assert [l.split(" ", 1)[1] for l in lines] == ["tinyserv: Release v2", "tinyserv: second line"]


@pytest.mark.parametrize("ps, sources", [
    (None, ["web.1", "worker.1", "web.2", "tinyserv", "web.10", "web.1"]),
    ("", ["web.1", "worker.1", "web.2", "tinyserv", "web.10", "web.1"]),
    ("web", ["web.1", "web.2", "web.10", "web.1"]),
    ("web.1", ["web.1", "web.1"]),
    ("worker", ["worker.1"]),
    ("worker.1", ["worker.1"]),
    ("tinyserv", ["tinyserv"]),
    ("we", []),
    ("clock", []),
])
def test_tail_reads_the_rotated_and_current_file_filtered_by_ps(tmp_path, ps, sources):
    path = str(tmp_path / "app.log")
    with open(path + ".1", "w") as f:
        f.write(line("web.1", "a") + line("worker.1", "b") + line("web.2", "c"))
    with open(path, "w") as f:
        f.write(line("tinyserv", "d") + line("web.10", "e") + line("web.1", "f"))
    assert [l.split(" ")[1].rstrip(":") for l in logs.tail(path, 100, ps)] == sources


@pytest.mark.parametrize("count, texts", [
    (0, []),
    (1, ["d"]),
    (2, ["c", "d"]),
    (4, ["a", "b", "c", "d"]),
    (100, ["a", "b", "c", "d"]),
])
def test_tail_returns_the_last_count_lines_oldest_first(tmp_path, count, texts):
    path = str(tmp_path / "app.log")
    with open(path + ".1", "w") as f:
        f.write(line("web.1", "a") + line("web.1", "b"))
    with open(path, "w") as f:
        f.write(line("web.1", "c") + line("web.1", "d"))
    assert logs.tail(path, count) == [line("web.1", t) for t in texts]


def test_tail_of_a_missing_log_is_empty(tmp_path):
    assert logs.tail(str(tmp_path / "app.log"), 10) == []


class Script:
    """A stop() for follow(): runs one step per call, then says stop."""

    def __init__(self, *steps):
        self.steps = list(steps)

    def __call__(self):
        if not self.steps:
            return True
        step = self.steps.pop(0)
        if step:
            step()
        return False


def writer(path, limit=10000):
    return LogFile(path, limit=limit, clock=clock)


def test_follow_copies_lines_appended_after_it_started(tmp_path):
    path = str(tmp_path / "app.log")
    log = writer(path)
    log.write("web.1", "old")
    out = io.StringIO()
    logs.follow(path, None, out, Script(lambda: log.write("web.1", "new"), None,
                                        lambda: log.write("worker.1", "more")), interval=0)
    log.close()
    assert out.getvalue() == line("web.1", "new") + line("worker.1", "more")


def test_an_escaping_stream_escapes_each_lines_control_characters_and_keeps_its_newline():
    out = io.StringIO()
    escaping = logs.Escaping(out)
    escaping.writelines(["a \x1b[2Jb\n", "tab\tstays\n", "no newline \x07"])
    assert out.getvalue() == "a \\x1b[2Jb\ntab\tstays\nno newline \\x07"


def test_follow_through_an_escaping_stream_escapes_new_lines(tmp_path):
    path = str(tmp_path / "app.log")
    log = writer(path)
    out = io.StringIO()
    logs.follow(path, None, logs.Escaping(out), Script(lambda: log.write("web.1", "\x1b[2Jnew"), None),
                interval=0)
    log.close()
    assert out.getvalue() == line("web.1", "\\x1b[2Jnew")


def test_follow_filters_by_ps(tmp_path):
    path = str(tmp_path / "app.log")
    log = writer(path)
    out = io.StringIO()
    logs.follow(path, "web", out, Script(lambda: [log.write(s, "x") for s in ("web.1", "worker.1", "web.2")]),
                interval=0)
    log.close()
    assert out.getvalue() == line("web.1", "x") + line("web.2", "x")


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path):
    path = str(tmp_path / "app.log")
    log = writer(path)
    out = io.StringIO()
    logs.follow(path, None, out, Script(None, lambda: log.write("web.1", "first")), interval=0)
    log.close()
    assert out.getvalue() == line("web.1", "first")


def test_follow_holds_back_a_partial_line_until_it_is_finished(tmp_path):
    path = str(tmp_path / "app.log")
    open(path, "w").close()
    out = io.StringIO()
    seen = []

    def append(text):
        with open(path, "a") as f:
            f.write(text)

    logs.follow(path, None, out, Script(lambda: append("2026-11-28T05:00:00Z web.1: hal"),
                                        lambda: seen.append(out.getvalue()),
                                        lambda: append("f\n")), interval=0)
    assert seen == [""]
    assert out.getvalue() == line("web.1", "half")


def test_follow_survives_a_rotation(tmp_path):
    path = str(tmp_path / "app.log")
    size = len(line("web.1", "0"))
    log = writer(path, limit=2 * size)
    log.write("web.1", "before")
    out = io.StringIO()

    def rotate_in_between():
        log.write("web.1", "1")  # reaches the limit: app.log becomes app.log.1
        log.write("web.1", "2")  # lands in a fresh app.log

    logs.follow(path, None, out, Script(rotate_in_between, None, None, lambda: log.write("web.1", "3"), None),
                interval=0)
    log.close()
    assert out.getvalue() == line("web.1", "1") + line("web.1", "2") + line("web.1", "3")


def test_follow_copies_the_end_of_the_old_file_written_just_before_rotation(tmp_path):
    path = str(tmp_path / "app.log")
    log = writer(path, limit=10 ** 6)
    log.write("web.1", "before")
    out = io.StringIO()

    def write_rotate_write():
        log.write("web.1", "last of old")
        log.rotate()
        log.write("web.1", "first of new")

    logs.follow(path, None, out, Script(write_rotate_write, None, None, None), interval=0)
    log.close()
    assert out.getvalue() == line("web.1", "last of old") + line("web.1", "first of new")


# The supervisor keeps one LogFile open for hours while deploys and config changes
# append through their own (logs.append); either may be the one that rotates.


def test_a_writer_whose_file_another_writer_rotated_away_does_not_crash(tmp_path):
    path = str(tmp_path / "app.log")
    limit = 2 * len(line("web.1", "0"))
    supervisor = writer(path, limit)
    supervisor.write("web.1", "0")
    logs.LogFile(path, limit, clock).write("tinyserv", "Release v3")  # rotates: no app.log any more
    supervisor.write("web.1", "1")
    supervisor.close()
    assert logs.tail(path, 10) == [line("web.1", "0"), line("tinyserv", "Release v3"), line("web.1", "1")]


def test_a_writer_whose_file_another_writer_rotated_loses_no_lines(tmp_path):
    path = str(tmp_path / "app.log")
    supervisor = writer(path, limit=3 * len(line("web.1", "0")))
    supervisor.write("web.1", "0")
    deploy = logs.LogFile(path, supervisor.limit, clock)
    deploy.write("tinyserv", "Release v3")
    deploy.rotate()
    deploy.write("tinyserv", "Starting")  # the new app.log
    deploy.close()
    supervisor.write("web.1", "1")  # must land after 'Starting', in app.log, where `logs -t` reads
    supervisor.close()
    assert read(path) == line("tinyserv", "Starting") + line("web.1", "1")
    assert logs.tail(path, 10) == [line("web.1", "0"), line("tinyserv", "Release v3"),
                                   line("tinyserv", "Starting"), line("web.1", "1")]


# --- an instance's output turned into lines: a cap per line, a bounded partial line ----------------------------


def test_a_line_longer_than_10000_bytes_is_cut_there_with_a_visible_mark():
    lines = logs.Lines()
    [cut] = lines.feed(b"x" * 10001 + b"\n")
    assert logs.MAX_LINE == 10000
    assert cut == "x" * 10000 + " [tinyserv: line cut at 10000 bytes]"


def test_a_line_of_exactly_10000_bytes_is_kept_whole():
    assert logs.Lines().feed(b"x" * 10000 + b"\n") == ["x" * 10000]


def test_the_rest_of_a_cut_line_is_dropped_up_to_its_newline_and_the_next_line_is_whole():
    lines = logs.Lines(limit=10)
    assert lines.feed(b"0123456789abc") == ["0123456789 [tinyserv: line cut at 10 bytes]"]
    assert lines.feed(b"def" * 1000) == []
    assert lines.feed(b"ghi\nnext\nhal") == ["next"]
    assert lines.feed(b"f\n") == ["half"]


def test_the_unfinished_line_never_holds_more_than_the_limit_however_long_the_line():
    lines = logs.Lines()
    emitted = []
    for _ in range(16):  # 1 MiB without a newline, in pipe-sized reads
        emitted += lines.feed(b"y" * 65536)
        assert len(lines.partial) <= logs.MAX_LINE
    emitted += lines.feed(b"\nafter\n")
    assert len(emitted) == 2 and emitted[1] == "after"
    assert emitted[0].startswith("y" * 10000 + " [tinyserv")


def test_a_line_split_across_reads_is_logged_once_whole():
    lines = logs.Lines()
    assert lines.feed(b"hel") == []
    assert lines.feed(b"lo\nwor") == ["hello"]
    assert lines.flush() == ["wor"]
    assert lines.flush() == []


@pytest.mark.parametrize("text, kept", [
    ("aaaa" + "é", "aaaa"),  # 'é' is 2 bytes: only its first would fit
    ("aaa" + "⬢", "aaa"),  # 3 bytes, 2 would fit
    ("aa" + "😀", "aa"),  # 4 bytes, 3 would fit
    ("aaaaa", "aaaaa"),
    ("aaa" + "é", "aaaé"),  # fits exactly
])
def test_a_cut_never_splits_a_utf8_character(text, kept):
    lines = logs.Lines(limit=5)
    [line] = lines.feed(text.encode() + b"!\n")
    assert line == kept + " [tinyserv: line cut at 5 bytes]"


def test_invalid_utf8_in_output_is_replaced_not_fatal():
    assert logs.Lines().feed(b"bad \xff byte\n") == ["bad \ufffd byte"]


def test_a_log_file_stays_within_its_cap_plus_one_line_with_a_1_mb_line(tmp_path):
    path = str(tmp_path / "app.log")
    cap = 30000
    log = LogFile(path, limit=cap, clock=clock)
    lines = logs.Lines()
    log.write_lines("web.1", lines.feed(b"before\n"))
    for _ in range(16):
        log.write_lines("web.1", lines.feed(b"z" * 65536))
    log.write_lines("web.1", lines.feed(b"\n" + b"after\n" * 3000))
    log.close()
    longest = len(line("web.1", "z" * 10000 + " [tinyserv: line cut at 10000 bytes]"))
    for name in (path, path + ".1"):
        assert os.path.getsize(name) <= cap + longest
    assert logs.tail(path, 1) == [line("web.1", "after")]


def test_a_batch_of_lines_rotates_as_soon_as_the_cap_is_reached(tmp_path):
    path = str(tmp_path / "app.log")
    size = len(line("web.1", "0"))
    log = LogFile(path, limit=3 * size, clock=clock)
    log.write_lines("web.1", [str(n) for n in range(5)])
    log.close()
    assert read(path + ".1") == line("web.1", "0") + line("web.1", "1") + line("web.1", "2")
    assert read(path) == line("web.1", "3") + line("web.1", "4")


def test_a_batch_writes_every_line_with_one_stamp_and_its_source(tmp_path):
    path = str(tmp_path / "app.log")
    log = LogFile(path, limit=10000, clock=clock)
    log.write_lines("worker.1", ["a\r", "b", ""])
    log.write_lines("worker.1", [])
    log.close()
    assert read(path) == line("worker.1", "a") + line("worker.1", "b") + line("worker.1", "")
