"""errors.guarded: the one boundary every CLI runs behind."""

import errno

import pytest

from tinyserv.common.errors import TinyservError, guarded


def raising(e):
    def body():
        raise e
    return body


@pytest.mark.parametrize("error, line", [
    (TinyservError("no app named 'x'"), "tinyserv: no app named 'x'\n"),
    (OSError(errno.ENOSPC, "No space left on device", "/srv/t/apps/a/history.json"),
     "tinyserv: No space left on device (/srv/t/apps/a/history.json)\n"),
    (PermissionError(errno.EACCES, "Permission denied"), "tinyserv: Permission denied\n"),
    (EOFError(), "tinyserv: no answer: standard input was closed\n"),
    (MemoryError(), "tinyserv: unexpected error: MemoryError:  (set TINYSERV_DEBUG=1 to see where)\n"),
    (ValueError("embedded null byte"),
     "tinyserv: unexpected error: ValueError: embedded null byte (set TINYSERV_DEBUG=1 to see where)\n"),
])
def test_every_failure_is_one_line_and_exit_1_without_a_traceback(capsys, monkeypatch, error, line):
    monkeypatch.delenv("TINYSERV_DEBUG", raising=False)
    assert guarded(raising(error)) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", line)


def test_details_come_above_the_one_line(capsys):
    assert guarded(raising(TinyservError("web exited with 1 at boot", ["Error: boom"]))) == 1
    assert capsys.readouterr().err == "       Error: boom\ntinyserv: web exited with 1 at boot\n"


def test_ctrl_c_is_exit_130_and_silent(capsys):
    assert guarded(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr() == ("", "")


def test_tinyserv_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("TINYSERV_DEBUG", "1")
    with pytest.raises(ValueError):
        guarded(raising(ValueError("x")))
