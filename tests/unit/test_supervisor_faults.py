"""The supervisor under ordinary faults, driven by tick() with the fake System of test_supervisor.py:
thousands of pipes, noisy and over-long output, damaged files of one app, processes that cannot be
spawned, and daemons that left their instance's process group."""

import errno
import json
import os
import resource
import signal
import socket

import pytest

from tinyserv.common import processes
from tinyserv.state import logs, store
from tinyserv.supervise import supervisor
from tinyserv.supervise.instances import is_instance_mark
from tinyserv.supervise.loop import Server
from tinyserv.supervise.ondisk import BROKEN_RETRY
from tinyserv.supervise.output import LINE_COST, NOTICE_EVERY, OUTPUT_BUDGET, READ_CHUNK, Budget
from tinyserv.supervise.restarts import KILL_WAIT

from .test_supervisor import APP, PORT, inst, log_text, make_app, scale, states

OTHER = "other"


def worker_app(layout, app=APP, port=PORT, workers=1):
    make_app(layout, procfile={"worker": "w"}, formation={"quantity": {"worker": workers}, "stopped": []},
             app=app, port=port)


def state_json(layout, app=APP):
    return store.read_json(layout.state_file(app))


# --- thousands of instances ------------------------------------------------------------------------------


@pytest.fixture
def many_files():
    """Room for 1100 pipes and more in this process (the supervisor raises its own limit the same way)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        if hard != resource.RLIM_INFINITY and hard < 4096:
            pytest.skip("the hard limit on open files (%d) is too low for this test" % hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def ask(sock_path, message):
    """Send one request (it waits in the socket until the server's loop turns); return the connection."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(sock_path)
    client.sendall((json.dumps(message) + "\n").encode())
    return client


def test_the_loop_reads_output_and_answers_requests_with_1100_instances_past_fd_1024(sup, fake, layout, many_files):
    worker_app(layout, workers=1100)
    fake.output = b"hello\n"
    sup.sync()
    assert len(sup.streams) == 1100 and max(sup.streams) > 1024  # select() refused descriptors past 1023
    server = Server(sup, os.path.join(layout.run_dir, "supervisor.sock"))
    server.listen()
    try:
        client = ask(server.sock_path, {"cmd": "ping"})
        for _ in range(3):  # output, then end of file of each pipe
            server.once()
        assert json.loads(client.makefile().readline())["ok"] is True
        client.close()
    finally:
        server.close()
    assert log_text(layout).count(": hello\n") == 1100
    assert "worker.1100: hello" in log_text(layout)


def test_the_supervisor_raises_its_open_files_limit_and_children_get_the_original_back(tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(1024, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    saved = processes._nofile_at_start
    processes._nofile_at_start = None
    try:
        assert supervisor.procs.raise_fd_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        read, write = os.pipe()
        pid = supervisor.procs.spawn(["/bin/sh", "-c", "ulimit -n"], str(tmp_path), {"PATH": "/bin"}, write)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 100) == b"%d\n" % lowered
        os.close(read)
    finally:
        processes._nofile_at_start = saved
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- fair and bounded reading ------------------------------------------------------------------------------------


def test_one_turn_reads_at_most_64_kib_of_one_instance(sup, fake, layout):
    worker_app(layout)
    fake.output = (b"x" * 99 + b"\n") * 3000  # 300 kB waiting in the pipe
    sup.sync()
    sup.read_output(inst(sup, "worker.1")["reader"])
    assert log_text(layout).count("worker.1: xxx") == READ_CHUNK // 100
    assert READ_CHUNK == 64 * 1024


def test_an_instance_over_its_output_budget_is_not_read_until_the_next_second(sup, fake, layout):
    worker_app(layout)
    fake.output = b"y\n" * 400000  # 800 kB of one-letter lines: far more than a second's budget
    sup.sync()
    fd = inst(sup, "worker.1")["reader"]
    sup.read_output(fd)  # 64 KiB = 32768 lines, which cost 64 KiB + 32 bytes each: over budget
    assert 64 * 1024 + LINE_COST * 32768 > OUTPUT_BUDGET
    assert fd in sup.paused and fd not in sup.selector.get_map()
    fake.now += 0.9
    sup.resume_due(fake.now)
    assert fd in sup.paused
    fake.now += 0.1
    sup.resume_due(fake.now)
    assert fd not in sup.paused and fd in sup.selector.get_map()
    assert log_text(layout).count("worker.1: y\n") == 32768


def test_throttling_is_said_in_the_app_log_at_most_once_a_minute(sup, fake, layout):
    worker_app(layout)
    fake.output = b"y\n" * 400000
    sup.sync()
    fd = inst(sup, "worker.1")["reader"]
    notice = "tinyserv: Error L10 (output rate limit): worker.1 logs more than 1024 KiB/s"
    for _ in range(3):
        sup.read_output(fd)
        fake.now += 1
        sup.resume_due(fake.now)
    assert log_text(layout).count(notice) == 1
    fake.now += NOTICE_EVERY
    sup.resume_due(fake.now)
    sup.read_output(fd)
    assert log_text(layout).count(notice) == 2


def test_a_throttled_instance_delays_the_next_loop_turn_only_until_its_window_ends(sup, fake, layout):
    worker_app(layout)
    fake.output = b"y\n" * 400000
    sup.sync()
    sup.read_output(inst(sup, "worker.1")["reader"])
    fake.now += 0.7
    assert sup.poll_interval() == pytest.approx(0.3)


@pytest.mark.parametrize("reads, cost, allowance", [
    ([], 0, OUTPUT_BUDGET),
    ([1000], 0, OUTPUT_BUDGET - 1000),
    ([OUTPUT_BUDGET], 0, 0),
    ([OUTPUT_BUDGET + 5], 0, 0),
    ([OUTPUT_BUDGET], 1.0, OUTPUT_BUDGET),  # a new window
    ([500], 0.999, OUTPUT_BUDGET - 500),
])
def test_the_budget_allows_so_many_bytes_per_window(reads, cost, allowance):
    budget = Budget()
    budget.allowance(100.0)
    for n in reads:
        budget.spend(n)
    assert budget.allowance(100.0 + cost) == allowance


def test_an_over_long_line_is_cut_and_never_held_whole(sup, fake, layout):
    worker_app(layout)
    fake.output = b"z" * 500000  # no newline
    sup.sync()
    fd = inst(sup, "worker.1")["reader"]
    for _ in range(8):
        sup.read_output(fd)
        assert len(sup.streams[fd].lines.partial) <= logs.MAX_LINE
    assert ("worker.1: " + "z" * 10000 + " [tinyserv: line cut at 10000 bytes]\n") in log_text(layout)


def test_what_a_stopped_instance_left_in_its_pipe_is_logged_within_the_budget_and_the_rest_counted(
        sup, fake, layout):
    worker_app(layout)
    fake.output = b"y\n" * 400000
    sup.sync()
    scale(layout, worker=0)
    sup.sync(APP)
    sup.tick()
    assert states(sup) == {}
    text = log_text(layout)
    assert text.count("worker.1: y\n") == 32768  # one read: that was the second's budget
    assert "tinyserv: Error L10 (output buffer overflow): %d bytes of worker.1's output dropped" % (
        800000 - READ_CHUNK) in text


# --- one app's damaged files ---------------------------------------------------------------------------------


def empty(layout, app, name):
    with open(layout.app_file(app, *name.split("/")), "w"):
        pass


@pytest.mark.parametrize("damaged", ["formation.json", "history.json", "builds/b1.json"])
def test_an_app_with_a_damaged_file_is_marked_broken_and_the_others_start(sup, fake, layout, damaged):
    make_app(layout)
    make_app(layout, app=OTHER, port=PORT + 1)
    empty(layout, APP, damaged)
    sup.adopt()
    sup.sync()
    sup.save_dirty()
    assert states(sup, OTHER) == {"web.1": "starting", "worker.1": "up"}
    assert states(sup) == {}
    broken = state_json(layout)["broken"]
    assert damaged.split("/")[-1] in broken and "is damaged" in broken
    assert state_json(layout, OTHER)["broken"] is None
    assert "tinyserv: cannot supervise this app: %s" % broken in log_text(layout)


def test_a_damaged_state_json_starts_the_app_afresh_and_kills_what_it_listed(sup, fake, layout):
    make_app(layout)
    make_app(layout, app=OTHER, port=PORT + 1)
    orphan = fake.daemon(layout.mark(APP, "web.1@1"))  # the old web.1, now unrecorded
    empty(layout, APP, "run/state.json")
    sup.adopt()
    sup.sync()
    sup.save_dirty()
    assert (orphan, signal.SIGKILL) in fake.pid_signals
    assert states(sup) == states(sup, OTHER) == {"web.1": "starting", "worker.1": "up"}
    assert state_json(layout)["broken"] is None
    assert "cannot adopt this app's processes" in log_text(layout)


def test_a_repaired_app_is_supervised_again_and_its_broken_note_cleared(sup, fake, layout):
    make_app(layout)
    good = store.read_json(layout.app_file(APP, "formation.json"))
    empty(layout, APP, "formation.json")
    sup.sync()
    sup.tick()
    assert state_json(layout)["broken"]
    store.write_json(layout.app_file(APP, "formation.json"), good)
    fake.now += BROKEN_RETRY
    sup.tick()
    assert states(sup) == {"web.1": "starting", "worker.1": "up"}
    assert state_json(layout)["broken"] is None


def test_a_sync_request_for_a_broken_app_is_refused_with_the_reason_and_others_are_not(sup, layout):
    make_app(layout)
    make_app(layout, app=OTHER, port=PORT + 1)
    empty(layout, APP, "history.json")
    server = Server(sup, "unused.sock")
    refused = server.handle({"cmd": "sync", "app": APP})
    assert refused["ok"] is False and "history.json is damaged" in refused["error"]
    assert server.handle({"cmd": "sync", "app": OTHER})["ok"] is True
    assert server.handle({"cmd": "sync"})["ok"] is True


def test_a_broken_app_keeps_its_running_instances_and_its_crashes_wait(sup, fake, layout):
    make_app(layout)
    sup.sync()
    worker = inst(sup, "worker.1")["pid"]
    empty(layout, APP, "history.json")
    fake.exit(worker, 1)
    sup.tick()  # the restart needs the release: it cannot be read
    assert inst(sup, "worker.1")["state"] == "crashed"
    assert inst(sup, "web.1")["state"] == "starting"
    assert inst(sup, "worker.1")["next_try"] == fake.now + BROKEN_RETRY


# --- processes that cannot be spawned ------------------------------------------------------------------------


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.EMFILE, "Too many open files"), "[Errno 24] Too many open files"),
    (OSError(errno.E2BIG, "cannot start /bin/sh: Argument list too long"),
     "[Errno 7] cannot start /bin/sh: Argument list too long"),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), "[Errno 12] Cannot allocate memory"),
    (ValueError("embedded null byte"), "embedded null byte"),
])
def test_an_instance_that_cannot_be_spawned_is_crashed_with_its_reason_and_backoff(sup, fake, layout,
                                                                                    error, reason):
    worker_app(layout)
    fake.spawn_error = error
    sup.sync()
    assert inst(sup, "worker.1")["state"] == "crashed"
    assert "tinyserv: worker.1 could not be started: %s" % reason in log_text(layout)
    assert "tinyserv: worker.1 could not be started, restarting now" in log_text(layout)
    sup.tick()  # the first retry is at once, the next one after 2 s
    assert (inst(sup, "worker.1")["state"], inst(sup, "worker.1")["next_try"]) == ("crashed", fake.now + 2)
    fake.spawn_error = None
    fake.now += 2
    sup.tick()
    assert (inst(sup, "worker.1")["state"], inst(sup, "worker.1")["restarts"]) == ("up", 2)
    assert fake.signals == [], "a process never started has no group to signal"


def test_a_spawn_failure_leaves_no_pipe_open_behind(sup, fake, layout):
    worker_app(layout)
    fake.spawn_error = OSError(errno.ENOMEM, "Cannot allocate memory")
    sup.sync()
    for _ in range(5):
        fake.now += 300
        sup.tick()
    assert len(sup.streams) <= 1
    assert len([n for n in os.listdir(layout.app_file(APP, "run")) if n.endswith(".fifo")]) <= 1


# --- processes that left the instance's group ------------------------------------------------------------------


def test_stopping_an_instance_sigterms_its_daemons_too_and_waits_for_them(sup, fake, layout):
    worker_app(layout)
    sup.sync()
    worker = inst(sup, "worker.1")
    daemon = fake.daemon(worker["mark"])
    fake.ignore_sigterm = True
    scale(layout, worker=0)
    sup.sync(APP)
    assert fake.sent(signal.SIGTERM) == [worker["pid"]]
    assert (daemon, signal.SIGTERM) in fake.pid_signals
    fake.running.pop(worker["pid"])  # the main process ends; the daemon ignores SIGTERM
    sup.tick()
    assert states(sup) == {"worker.1": "stopping"}
    fake.now += 30
    sup.tick()
    assert (daemon, signal.SIGKILL) in fake.pid_signals
    sup.tick()
    assert states(sup) == {}


def test_stopping_many_instances_scans_proc_once(sup, fake, layout):
    worker_app(layout, workers=20)
    sup.sync()
    before = fake.scans
    scale(layout, worker=0)
    sup.sync(APP)
    sup.tick()
    assert fake.scans == before + 1
    assert states(sup) == {}


def test_a_crashed_instance_has_its_daemons_killed_before_it_restarts(sup, fake, layout):
    worker_app(layout)
    sup.sync()
    worker = inst(sup, "worker.1")
    daemon = fake.daemon(worker["mark"])
    other = fake.daemon(layout.mark(APP, "build.b1"))
    fake.exit(worker["pid"], 1)
    sup.tick()
    assert (daemon, signal.SIGKILL) in fake.pid_signals
    assert fake.alive(other), "only the instance's own mark is killed"
    assert inst(sup, "worker.1")["state"] == "up" and inst(sup, "worker.1")["pid"] != worker["pid"]


def test_a_crashed_instance_whose_daemon_survives_sigkill_restarts_after_5_s(sup, fake, layout):
    worker_app(layout)
    sup.sync()
    worker = inst(sup, "worker.1")
    daemon = fake.daemon(worker["mark"])
    fake.signal_pids = lambda pids, sig: None  # stuck in the kernel
    fake.exit(worker["pid"], 1)
    sup.tick()
    assert inst(sup, "worker.1")["state"] == "crashed"
    fake.now += KILL_WAIT
    sup.tick()
    assert inst(sup, "worker.1")["state"] == "up"
    assert fake.alive(daemon)


def test_an_adopted_instance_keeps_its_mark_and_its_daemons_are_stopped_with_it(sup, fake, layout):
    worker_app(layout)
    mark = layout.mark(APP, "worker.1@5")
    saved = {"name": "worker.1", "type": "worker", "version": 2, "command": "w", "pid": 501, "pgid": 501,
             "starttime": 5010, "state": "up", "fifo": None, "mark": mark}
    store.write_json(layout.state_file(APP), {"instances": [saved]})
    fake.running[501] = 5010
    fake.marks[501] = mark
    daemon = fake.daemon(mark)
    sup.adopt()
    sup.sync()
    assert inst(sup, "worker.1")["mark"] == mark and fake.alive(daemon), "adoption kills nothing it keeps"
    scale(layout, worker=0)
    sup.sync(APP)
    assert (daemon, signal.SIGTERM) in fake.pid_signals
    sup.tick()
    assert states(sup) == {} and not fake.alive(daemon)


def test_adoption_kills_instances_no_state_file_lists_but_not_builds(sup, fake, layout):
    worker_app(layout)
    store.write_json(layout.state_file(APP), {"instances": []})
    unrecorded = fake.daemon(layout.mark(APP, "worker.1@7"))
    build = fake.daemon(layout.mark(APP, "build.b3"))
    sup.adopt()
    assert not fake.alive(unrecorded)
    assert fake.alive(build)


def test_adoption_spares_a_web_a_running_push_boot_checks_and_kills_one_whose_push_is_gone(sup, fake, layout):
    worker_app(layout)
    store.write_json(layout.state_file(APP), {"instances": []})
    push = fake.daemon("the deployer")
    checked = fake.daemon(layout.mark(APP, "web.1@7~%d.%d" % (push, fake.running[push])))
    gone = fake.daemon("a deployer killed with SIGKILL")
    orphan = fake.daemon(layout.mark(APP, "web.1@8~%d.%d" % (gone, fake.running[gone])))
    fake.exit(gone, 137)
    sup.adopt()
    assert fake.alive(checked), "the push hands it over, or stops it, itself"
    assert not fake.alive(orphan)


def test_a_kept_web_s_mark_names_the_change_it_belongs_to(layout):
    from tinyserv.platform import boot
    mark = boot.kept_mark(layout, APP, os.getpid())
    assert is_instance_mark(mark) and mark.startswith(layout.app_marks(APP) + "web.1@")
    assert boot.owner_of(mark) == (os.getpid(), processes.starttime(os.getpid()))
    assert boot.owner_of(layout.mark(APP, "web.1@7")) is None
    assert boot.owner_of(layout.mark(APP, "trial.7~1.2")) is None


def test_a_ping_answers_without_a_look_at_every_instance_and_a_sync_looks(sup, fake, layout):
    worker_app(layout, workers=3)
    sup.sync()
    server = Server(sup, os.path.join(layout.run_dir, "supervisor.sock"))
    server.listen()
    looks = []
    real_tick = sup.tick
    sup.tick = lambda events=True: looks.append(events) or real_tick(events)
    try:
        for _ in range(3):  # the workers' output, then their pipes' ends: those are events
            client = ask(server.sock_path, {"cmd": "ping"})
            server.once()
            client.close()
        for message, events in (({"cmd": "ping"}, False), ({"cmd": "sync"}, True)):
            looks.clear()
            server.next_tick = fake.now + 60  # no timer due: only the request can make the loop tick
            client = ask(server.sock_path, message)
            server.once()
            assert json.loads(client.makefile().readline())["ok"] is True
            client.close()
            assert looks == ([True] if events else []), (message, looks)
    finally:
        server.close()
