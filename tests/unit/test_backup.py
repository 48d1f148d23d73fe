"""backup.py's archive: written with hashes and a manifest last, read back only when whole and safe."""

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile

import pytest

from tinyserv.server import backup
from tinyserv.common.errors import TinyservError

from .races import SwapAfterLook

MANIFEST = {"format": 1, "root": "/old/root", "created_at": "2026-11-28T05:00:00Z",
            "apps": {"shop": {"port": 5000, "release": 3, "build": "b1", "addons": []}}}


def tree(base, files):
    """Make files ({relative path: bytes, or ('link', target)}) under base."""
    for rel, content in files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, tuple):
            os.symlink(content[1], path)
        else:
            with open(path, "wb") as f:
                f.write(content)


def archive(tmp_path, files, skip=lambda rel: False):
    """An archive of apps/shop made by backup.Writer from files; its bytes."""
    source = tmp_path / "source"
    tree(str(source), files)
    out = io.BytesIO()
    writer = backup.Writer(out)
    writer.add_tree(str(source), "apps/shop", skip)
    writer.close(dict(MANIFEST))
    return out.getvalue()


def unpack(tmp_path, data, name="backup.tar.gz"):
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return backup.unpack(io.BytesIO(data), str(staging), name), staging


FILES = {"history.json": b'{"releases": []}', "data/notes/a.txt": b"hello\n", "data/big.bin": os.urandom(300000),
         "builds/b1/node_modules": ("link", "/old/root/apps/shop/deps/x/node_modules")}


def test_an_archive_reads_back_file_for_file_with_its_links_and_manifest(tmp_path):
    manifest, staging = unpack(tmp_path, archive(tmp_path, FILES))
    assert manifest["apps"] == MANIFEST["apps"] and manifest["root"] == "/old/root"
    for rel, content in FILES.items():
        path = staging / "apps" / "shop" / rel
        if isinstance(content, tuple):
            assert os.readlink(path) == content[1]
        else:
            assert path.read_bytes() == content
    assert manifest["files"]["apps/shop/data/notes/a.txt"] == hashlib.sha256(b"hello\n").hexdigest()


def test_the_skip_rule_leaves_things_out(tmp_path):
    manifest, staging = unpack(tmp_path, archive(tmp_path, FILES, skip=lambda rel: rel.startswith("data")))
    assert not (staging / "apps" / "shop" / "data").exists() and (staging / "apps" / "shop" / "history.json").exists()


@pytest.mark.parametrize("cut", [10, 0.5, -30])
def test_a_truncated_archive_is_refused(tmp_path, cut):
    data = archive(tmp_path, FILES)
    end = cut if isinstance(cut, int) and cut > 0 else int(len(data) * cut) if isinstance(cut, float) else cut
    with pytest.raises(TinyservError, match="backup.tar.gz is not a whole tinyserv backup .*nothing was changed"):
        unpack(tmp_path, data[:end])


def test_a_damaged_archive_is_refused(tmp_path):
    data = bytearray(archive(tmp_path, FILES))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(TinyservError, match="is not a whole tinyserv backup"):
        unpack(tmp_path, bytes(data))


def raw_archive(members, manifest=True, files=None):
    """A gzip-compressed tar made by hand: members are (name, bytes or ('link', target) or 'dir')."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        hashes = {}
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                hashes[name] = hashlib.sha256(content).hexdigest()
        if manifest:
            data = json.dumps(dict(MANIFEST, files=hashes if files is None else files)).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("members, message", [
    ([("../evil", b"x")], "it holds a file named '../evil'"),
    ([("/etc/evil", b"x")], "it holds a file named '/etc/evil'"),
    ([("apps/shop/../../evil", b"x")], "it holds a file named"),
    ([("etc/passwd", b"x")], "it holds a file named 'etc/passwd'"),
    ([("apps/shop/data/link", ("link", "/tmp")), ("apps/shop/data/link/evil", b"x")], "written through a link"),
    ([("apps/shop/a", b"x"), ("apps/shop/a", b"y")], "it holds apps/shop/a twice"),
    ([("apps/shop/f", b"x"), ("apps/shop/f/g", b"y")], "written through a link or a file"),
])
def test_an_archive_that_would_write_outside_its_place_is_refused(tmp_path, members, message):
    with pytest.raises(TinyservError, match=message.replace("(", r"\(")):
        unpack(tmp_path, raw_archive(members))
    assert not os.path.exists(tmp_path / "evil") and not os.path.exists("/tmp/evil")


@pytest.mark.parametrize("members, manifest, files, message", [
    ([("apps/shop/a", b"x")], False, None, "it ends before its manifest: truncated"),
    ([("apps/shop/a", b"x")], True, {"apps/shop/a": "0" * 64}, "apps/shop/a does not match its hash"),
    ([("apps/shop/a", b"x")], True, {"apps/shop/a": hashlib.sha256(b"x").hexdigest(), "apps/shop/b": "0"},
     "apps/shop/b is missing"),
    ([("apps/shop/a", b"x")], True, {}, "it holds files its manifest does not list"),
])
def test_an_archive_whose_manifest_does_not_vouch_for_its_files_is_refused(tmp_path, members, manifest, files,
                                                                           message):
    with pytest.raises(TinyservError, match=message):
        unpack(tmp_path, raw_archive(members, manifest, files))


def test_a_manifest_of_the_wrong_shape_is_refused(tmp_path):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        data = b'{"format": 1, "apps": []}'
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(TinyservError, match="its manifest is damaged"):
        unpack(tmp_path, out.getvalue())


def test_a_file_that_shrinks_while_it_is_copied_is_padded_and_noted(tmp_path):
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 1000)

    class Shrinking:
        def __init__(self, f):
            self.f = f

        def read(self, size):
            return self.f.read(min(size, 10))[:5]
    with open(path, "rb") as f:
        reader = backup.Hashing(Shrinking(f), 1000)
        data = b"".join(iter(lambda: reader.read(100), b""))
    assert len(data) == 1000 and reader.padded


@pytest.mark.parametrize("rel, kept", [
    ("builds/b1", True), ("builds/b1.json", True), ("builds/b0", False), ("builds/b0.json", False),
    ("deps/node-1", True), ("deps/node-0", False), ("run", False), ("log", False), ("lock", False),
    ("deploy.lock", False), ("pending.json", False), ("data", True), ("history.json", True),
    ("addons/redis-1/data", False), ("addons/redis-1/redis.conf", True), ("addons/redis-2/data", True),
    ("domains.json", True), ("certs/example.org.pem", True),
])
def test_an_apps_directory_is_backed_up_but_for_other_builds_logs_and_live_redis_files(layout, rel, kept):
    skip = backup.app_skipper(layout, "shop", "b1", "node-1", {"redis-2"})
    assert skip(rel) is not kept


# --- an app's user swapping a name for a link while the backup reads its directory (root mode) ----------

SECRET = b"only the deploy user may read this"


@pytest.fixture
def deploy_only(tmp_path):
    """A directory of the deploy user's with a secret file in it: what a planted link points at."""
    secret = tmp_path / "deploy-only"
    secret.mkdir(mode=0o700)
    (secret / "id_ed25519").write_bytes(SECRET)
    return secret


def swapping_archive(tmp_path, monkeypatch, name, swap, after):
    """The archive of FILES while swap() runs right after the backup's after-th look at name."""
    race = SwapAfterLook(monkeypatch, name, swap, after)
    data = gzip.decompress(archive(tmp_path, dict(FILES, **{"data/sub/x.txt": b"x", "data/notes/a.txt": b"m" * 100})))
    monkeypatch.undo()
    return race, data


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_data_file_swapped_for_a_link_mid_backup_puts_no_other_file_in_the_archive(
        tmp_path, monkeypatch, deploy_only, after):
    notes = tmp_path / "source" / "data" / "notes" / "a.txt"

    def swap():
        os.unlink(notes)
        os.symlink(deploy_only / "id_ed25519", notes)
    race, data = swapping_archive(tmp_path, monkeypatch, "a.txt", swap, after)
    assert race.swapped or after > 1
    assert SECRET not in data


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_data_directory_swapped_for_a_link_mid_backup_is_not_entered(tmp_path, monkeypatch, deploy_only, after):
    sub = tmp_path / "source" / "data" / "sub"

    def swap():
        os.rename(sub, str(sub) + "-moved")
        os.symlink(deploy_only, sub)
    race, data = swapping_archive(tmp_path, monkeypatch, "sub", swap, after)
    assert race.swapped or after > 1
    assert SECRET not in data and b"id_ed25519" not in data


def test_a_backup_never_writes_through_a_partial_file_someone_planted(layout, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    victim.chmod(0o600)
    target = tmp_path / "out" / "backup.tar.gz"
    target.parent.mkdir()
    os.symlink(victim, str(target) + ".partial")
    backup.capture(layout, str(target))
    assert victim.read_bytes() == b"keep me" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert gzip.decompress(target.read_bytes()) and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(os.listdir(target.parent)) == ["backup.tar.gz", "backup.tar.gz.partial"]  # the plant, untouched
