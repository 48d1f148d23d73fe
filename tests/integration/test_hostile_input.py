"""Hostile input, round 2 (issue 17 items 7, 8, 9, 11, 15, 16): each case gets one clear line, and a command
that fails changes nothing."""

import json
import os
import subprocess

import pytest

from localserver import TINYSERV, TINYSERV_REMOTE, local_server, node_app
from support import describe, run, wait_for_http


def assert_one_line(result, *words):
    """Refused: exit 1, one line on stderr starting 'tinyserv: ' and naming words, no traceback."""
    __tracebackhide__ = True
    shown = describe(result)
    assert result.returncode == 1, shown
    assert "Traceback" not in result.stdout + result.stderr and "unexpected error" not in result.stderr, shown
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("tinyserv: "), shown
    for word in words:
        assert word in lines[-1], shown


# --- 7: a backup whose output could not be written fails ---------------------------------------------------------


def test_a_backup_into_a_pipe_whose_reader_ends_fails_in_one_line(server, tmp_path):
    app = server.new_app(tmp_path, node_app("x"), prefix="bk")
    with open(os.path.join(server.root, "apps", app.name, "data", "big"), "wb") as f:
        f.write(os.urandom(2 * 1024 * 1024))  # more than a pipe holds, and gzip cannot shrink it
    result = run(["bash", "-c", '"$0" backup - | false; echo "exit=${PIPESTATUS[0]}" >&2', TINYSERV_REMOTE],
                 env=server.env, check=False)
    shown = describe(result)
    assert result.stderr.strip().splitlines()[-1] == "exit=1", shown
    assert "tinyserv: the backup failed" in result.stderr and "broken pipe" in result.stderr, shown
    assert "Traceback" not in result.stderr, shown


# --- 8: a restore never gives a domain a second app ----------------------------------------------------------------


def test_a_restore_whose_app_claims_a_domain_another_app_holds_here_is_refused_and_changes_nothing(server, tmp_path):
    app = server.new_app(tmp_path, node_app("from the archive"), prefix="dom")
    server.push(app)
    server.tinyserv("domains:add", "shop.test", cwd=app.path)
    archive = str(tmp_path / "server.tar.gz")
    server.remote("backup", archive)
    with local_server(tmp_path / "second" / "root") as second:
        holder = second.new_app(tmp_path / "second", node_app("already here"), prefix="holder")
        second.tinyserv("domains:add", "shop.test", cwd=holder.path)
        before = second.snapshot()
        refused = second.remote("restore", archive, check=False)
        assert_one_line(refused, "shop.test", holder.name, app.name, "nothing was changed")
        assert second.snapshot() == before
        assert not os.path.exists(os.path.join(second.root, "apps", app.name))
