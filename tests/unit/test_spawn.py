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


# Simple commands (the shell holds no pipe meanwhile), and the signals read last by the process itself (exec grep
# /proc/self): while it forks a command, dash blocks every signal for a moment, which a look from outside can catch.
PORTRAIT = ('pwd; ls /proc/$$/fd; echo .; ulimit -n; cut -d" " -f6 /proc/$$/stat; '
            'exec grep -E "^(SigIgn|SigBlk)" /proc/self/status')


@pytest.mark.parametrize("way", ["posix_spawn", "fork"])
def test_both_ways_of_starting_a_process_give_it_the_same_start(tmp_path, monkeypatch, way):
    """A process started with posix_spawn (nothing to do in the child) and one forked to become another user
    (here: a setup that does nothing) start alike: in the working directory, a session of their own, stdin from
    /dev/null, none of our descriptors, no signal ignored or blocked, the open-files limit we were started with."""
    import resource
    import signal

    from tinyserv.common import processes
    start_limit = (1024, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    monkeypatch.setattr(processes, "_nofile_at_start", start_limit)  # as raise_fd_limit() leaves the supervisor
    monkeypatch.setattr(processes, "_inherited_checked", False)  # as in a process that starts now
    ours = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(ours, True)  # as one it was started with (a shell's, say): never the child's
    read, write = os.pipe()
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pid = processes.spawn(["sh", "-c", PORTRAIT], str(tmp_path), {"PATH": "/usr/bin:/bin"}, write,
                              setup=None if way == "posix_spawn" else (lambda: None))
        os.close(write)
        assert os.waitpid(pid, 0)[1] == 0
        lines = os.read(read, 4096).decode().splitlines()
    finally:
        signal.signal(signal.SIGHUP, old)
        os.close(ours), os.close(read)
    end = lines.index(".")
    fds, rest = sorted(map(int, lines[1:end])), lines[end + 1:]
    ignored = int(rest[3].split()[1], 16) & (2 ** 31 - 1)  # not glibc's own two (32, 33): programs cannot see them
    assert [lines[0], fds, rest[0], rest[1], rest[2], ignored] == [
        str(tmp_path), [0, 1, 2], "1024", str(pid), "SigBlk:\t0000000000000000", 0], lines


def test_posix_spawn_finds_the_program_in_the_child_s_path_like_exec_does(tmp_path):
    tool = tmp_path / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho found\n")
    tool.chmod(0o755)
    read, write = os.pipe()
    pid = procs.spawn(["mytool"], str(tmp_path), {"PATH": str(tool.parent)}, write)
    os.close(write)
    assert os.waitpid(pid, 0)[1] == 0 and os.read(read, 100) == b"found\n"
    os.close(read)
