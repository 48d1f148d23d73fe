"""procs.spawn and pipes against real processes: failures to start reach the caller, pipes grow."""

import errno
import fcntl
import os

import pytest

from tinyserv.platform import procs


def test_a_command_that_cannot_be_executed_is_an_error_in_the_caller(tmp_path):
    read, write = os.pipe()
    try:
        with pytest.raises(OSError) as caught:
            procs.spawn([str(tmp_path / "missing")], str(tmp_path), {"PATH": "/bin"}, write)
        assert caught.value.errno == errno.ENOENT and "cannot start" in str(caught.value)
    finally:
        os.close(read), os.close(write)


def test_an_environment_too_big_for_exec_is_e2big_in_the_caller(tmp_path):
    read, write = os.pipe()
    try:
        with pytest.raises(OSError) as caught:
            procs.spawn(["/bin/sh", "-c", "true"], str(tmp_path), {"BIG": "x" * 200000}, write)
        assert caught.value.errno == errno.E2BIG
    finally:
        os.close(read), os.close(write)


def test_a_working_directory_that_is_gone_is_an_error_in_the_caller(tmp_path):
    read, write = os.pipe()
    try:
        with pytest.raises(OSError) as caught:
            procs.spawn(["/bin/true"], str(tmp_path / "gone"), {}, write)
        assert caught.value.errno == errno.ENOENT
    finally:
        os.close(read), os.close(write)


@pytest.mark.parametrize("env", [{"A": "x\0y"}, {"A\0": "x"}, {"A=B": "x"}])
def test_an_environment_that_exec_cannot_pass_is_a_value_error_before_any_fork(tmp_path, env):
    with pytest.raises(ValueError, match="cannot be passed"):
        procs.spawn(["/bin/true"], str(tmp_path), env, 1)


def test_a_spawned_process_writes_into_the_given_descriptor_and_reads_nothing(tmp_path):
    read, write = os.pipe()
    pid = procs.spawn(["/bin/sh", "-c", "cat; echo done $X"], str(tmp_path), {"X": "1", "PATH": "/bin"}, write)
    os.close(write)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.read(read, 100) == b"done 1\n"
    os.close(read)


def test_a_pipe_is_enlarged_to_the_size_asked_within_the_system_maximum():
    read, write = os.pipe()
    try:
        assert procs.enlarge_pipe(read, 1024 * 1024)
        assert fcntl.fcntl(read, procs.F_SETPIPE_SZ + 1) == min(1024 * 1024, procs.pipe_max_size())  # F_GETPIPE_SZ
    finally:
        os.close(read), os.close(write)


def test_enlarging_something_that_is_not_a_pipe_fails_quietly(tmp_path):
    with open(tmp_path / "file", "w") as f:
        assert procs.enlarge_pipe(f.fileno(), 1024 * 1024) is False


@pytest.mark.parametrize("pgid", [0, 1])
def test_group_0_and_1_are_never_anyone_s_instance(pgid):
    assert procs.group_members(pgid) == []
