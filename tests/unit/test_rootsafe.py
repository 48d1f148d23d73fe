"""platform/rootsafe.py: root runs only code root alone can write, and never follows a planted symlink."""

import os
import stat

import pytest

from tinyserv.common.errors import TinyservError
from tinyserv.platform import rootsafe
from tinyserv.state.layout import Layout


class Info:
    def __init__(self, uid=0, mode=stat.S_IFDIR | 0o755):
        self.st_uid, self.st_mode = uid, mode


@pytest.mark.parametrize("info, problem", [
    (Info(), None),
    (Info(mode=stat.S_IFREG | 0o644), None),
    (Info(uid=1000), "belongs to uid 1000"),
    (Info(mode=stat.S_IFREG | 0o664), "writable by others than root"),
    (Info(mode=stat.S_IFDIR | 0o777), "writable by others than root"),
    (Info(mode=stat.S_IFDIR | 0o1777), None),  # /tmp: sticky, others cannot move root's entries
    (Info(mode=stat.S_IFLNK | 0o777), None),   # a symlink's own mode means nothing; its owner does
])
def test_an_entry_is_safe_only_when_root_alone_can_change_it(info, problem):
    found = rootsafe.unsafe_entry("/x", info)
    assert (found is None) if problem is None else (problem in found)


def test_code_with_one_file_another_user_owns_is_refused_naming_it():
    infos = {"/opt/tinyserv/v1/bin/tinyserv-remote": Info(uid=1000, mode=stat.S_IFREG | 0o755)}

    def walk(top):
        yield top, ["bin"], []
        yield top + "/bin", [], ["tinyserv-remote"]
    with pytest.raises(TinyservError, match="/opt/tinyserv/v1/bin/tinyserv-remote belongs to uid 1000"):
        rootsafe.check_code("/opt/tinyserv/v1", lstat=lambda p: infos.get(p, Info()), walk=walk)


def test_code_in_a_directory_others_may_write_is_refused():
    infos = {"/home/deploy": Info(uid=1000)}
    with pytest.raises(TinyservError, match="root mode runs only code that root alone can write, and /home/deploy"):
        rootsafe.check_code("/home/deploy/code", lstat=lambda p: infos.get(p, Info()), walk=lambda top: iter(()))


def test_root_mode_puts_the_supervisors_locks_where_only_root_writes(tmp_path):
    layout = rootsafe.place_locks(Layout(str(tmp_path)), {"TINYSERV_DEPLOY_USER": "deploy"})
    assert os.path.dirname(layout.supervisor_lock) == "/run/tinyserv/" + layout.tag
    assert os.path.dirname(layout.standby_lock) == os.path.dirname(layout.supervisor_pid) == layout.lock_dir


def test_single_user_mode_keeps_the_locks_in_run(tmp_path):
    layout = rootsafe.place_locks(Layout(str(tmp_path)), {})
    assert layout.supervisor_lock == os.path.join(str(tmp_path), "run", "supervisor.lock")
    assert layout.lock_dir is None


def test_ensure_dir_makes_and_gives_a_directory(tmp_path):
    path = str(tmp_path / "apps" / "one")
    os.mkdir(tmp_path / "apps")
    rootsafe.ensure_dir(path, os.getuid(), os.getgid(), 0o2750)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o2750


def test_ensure_dir_refuses_a_symlink_planted_at_the_path_and_leaves_its_target_alone(tmp_path):
    target = tmp_path / "other"
    target.mkdir(mode=0o755)
    (tmp_path / "apps").mkdir()
    os.symlink(target, tmp_path / "apps" / "evil")
    with pytest.raises(TinyservError, match="a symlink is never followed"):
        rootsafe.ensure_dir(str(tmp_path / "apps" / "evil"), os.getuid(), os.getgid(), 0o700)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o755


def test_ensure_dir_refuses_a_symlink_anywhere_above_the_path(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "apps")
    with pytest.raises(TinyservError, match="not a directory reached without symlinks"):
        rootsafe.ensure_dir(str(tmp_path / "apps" / "one"), os.getuid(), os.getgid(), 0o700)
    assert not (tmp_path / "real" / "one").exists()
