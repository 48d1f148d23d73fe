"""Backing up a whole server into one archive, and rebuilding its apps from one on another server.

The archive is a gzip-compressed tar:

  apps/<app>/...            the app's directory: history (every release and its config), formation,
                            add-on list, data directory, the current build and its dependencies, and
                            whatever else the app keeps there (domains, certificates ...); not its logs,
                            its other builds, or the supervisor's run/ directory
  repos/<app>.git/...       the repository you push to
  releases/<app>.json       its public release file (port, version)
  addons/<app>/<name>.pgdump  pg_dump -Fc of a PostgreSQL add-on: one snapshot, taken while the app writes
  addons/<app>/<name>.rdb     a Redis add-on's BGSAVE snapshot (a stopped one's data directory is copied)
  manifest.json             last: the apps, their ports and add-ons, and the SHA-256 of every file,
                            so a truncated or damaged archive is refused before anything changes

It holds every app's config vars and add-on passwords: it is written 0600. `restore` on a
fresh server (another TINYSERV_ROOT and START_PORT are fine) brings each app back at the
same release with the same config, data, databases and, where free, ports; it refuses to
overwrite an existing app, and a failure part way undoes everything it made.
"""

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zlib

from tinyserv.addons import registry as addons
from tinyserv.state import addonstate, appstate, nofollow, releases, store
from tinyserv.common.errors import TinyservError
from tinyserv.common.printer import human
from tinyserv.common.names import APP_NAME

FORMAT = 1
MANIFEST = "manifest.json"
COMPRESS_LEVEL = 1  # most of a server's bytes are data and dependencies: speed over a few percent
CHUNK = 1024 * 1024
SECRET_NOTE = ("this archive holds every app's config vars and add-on passwords: keep it private "
               "(tinyserv writes it 0600)")
SKIPPED_DIRS = {"run", "log"}  # the supervisor's pipes and state, the app's logs
SKIPPED_FILES = {"lock", "addons.lock", "deploy.lock", "pending.json"}


def say(text):
    """A line for whoever runs the backup or restore (stderr: stdout may be the archive itself)."""
    print("tinyserv: %s" % text, file=sys.stderr, flush=True)


# --- writing -----------------------------------------------------------------------------------------


class Writer:
    """A tar stream into gzip, hashing every file it adds (the manifest lists the hashes)."""

    def __init__(self, out):
        self.gz = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0)
        self.tar = tarfile.open(fileobj=self.gz, mode="w|", format=tarfile.PAX_FORMAT)
        self.hashes = {}
        self.bytes = 0
        self.changed = []  # files that shrank while they were copied
        self.deep = []  # directories nested too deep to enter (nofollow.MAX_DEPTH)

    def add_tree(self, source, name, skip=lambda rel: False):
        """Add the directory source as name/, depth first; skip(relative path) leaves things out.

        An app's user may change its directories while we walk them (root mode): every entry is opened
        once by name in its directory's descriptor, never through a link, and archived from there.
        """
        top = nofollow.open_dir(source)
        if top is None:
            return  # deleted before we came (an old build being pruned)
        try:
            self.add(nofollow.Found("", os.fstat(top), top, None), name)
            for found in nofollow.walk(top, skip, lambda rel: self.deep.append("%s/%s" % (name, rel))):
                self.add(found, "%s/%s" % (name, found.rel))
        except BrokenPipeError:
            raise  # the archive's reader went away, not this directory: capture() says so
        except OSError as e:
            raise TinyservError("cannot back up %s: %s" % (e.filename or source, e.strerror)) from None
        finally:
            os.close(top)

    def add_path(self, path, name):
        """Add one file, directory (not its contents) or symlink; False when it vanished or is none of those."""
        found = nofollow.open_entry(path)
        if found is None:
            return False
        try:
            self.add(found, name)
        finally:
            if found.fd is not None:
                os.close(found.fd)
        return True

    def add(self, found, name):
        """Add what found is (nofollow.Found: a directory, a link, or a file read from its descriptor)."""
        st = found.info
        info = tarfile.TarInfo(name)
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        if found.link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, found.link
            self.tar.addfile(info)
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            self.tar.addfile(info)
        else:
            os.set_blocking(found.fd, True)
            with open(found.fd, "rb", closefd=False) as f:
                info.size = st.st_size
                reader = Hashing(f, st.st_size)
                self.tar.addfile(info, reader)
                if reader.padded:
                    self.changed.append(name)
            self.hashes[name] = reader.hash.hexdigest()
            self.bytes += st.st_size

    def close(self, manifest):
        """Write the manifest, last, and finish the stream."""
        manifest["files"] = self.hashes
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        self.tar.addfile(info, _BytesReader(data))
        self.tar.close()
        self.gz.close()


class _BytesReader:
    def __init__(self, data):
        self.data, self.at = data, 0

    def read(self, size=-1):
        """Up to size bytes."""
        size = len(self.data) - self.at if size < 0 else size
        chunk = self.data[self.at:self.at + size]
        self.at += len(chunk)
        return chunk


class Hashing:
    """Reads exactly size bytes from f, hashing them; a file that shrank meanwhile is padded with zeros."""

    def __init__(self, f, size):
        self.f, self.left, self.hash, self.padded = f, size, hashlib.sha256(), False

    def read(self, size=-1):
        """Up to size bytes."""
        size = self.left if size < 0 else min(size, self.left)
        chunk = self.f.read(size)
        if len(chunk) < size:
            chunk += b"\0" * (size - len(chunk))
            self.padded = True
        self.left -= len(chunk)
        self.hash.update(chunk)
        return chunk


def app_skipper(layout, app, keep_build, keep_deps, raw_addon_data):
    """What of apps/<app>/ stays out of the archive: other builds and their dependencies, run/, log/, locks,
    and a running Redis add-on's live files (its snapshot goes in instead)."""
    def skip(rel):
        """Leave rel (a path under the app's directory) out of the archive?"""
        parts = rel.split(os.sep)
        if len(parts) == 1:
            return parts[0] in SKIPPED_DIRS or parts[0] in SKIPPED_FILES or parts[0].endswith(".lock")
        if len(parts) == 2 and parts[0] == "builds":
            return parts[1] not in (keep_build, "%s.json" % keep_build) if keep_build else False
        if len(parts) == 2 and parts[0] == "deps":
            return parts[1] != keep_deps if keep_build else False
        if len(parts) == 3 and parts[0] == "addons" and parts[2] == "data":
            return parts[1] not in raw_addon_data
        return False
    return skip


def capture(layout, file=None):
    """`tinyserv-remote backup [FILE|-]`: write the archive to FILE (0600), or to stdout with '-'."""
    layout.ensure()
    started = time.monotonic()
    if file in (None, "-"):
        if file is None and sys.stdout.isatty():
            raise TinyservError("backup writes an archive: give a FILE, or '-' to write it to a pipe")
        out, target = sys.stdout.buffer, None
    else:
        target = os.path.abspath(file)
        if os.path.exists(target):
            raise TinyservError("%s exists: give a new file name" % target)
        partial, out = open_private(target)
    say(SECRET_NOTE)
    try:
        with tempfile.TemporaryDirectory(prefix=".backup-", dir=layout.root) as scratch:
            writer = Writer(out)
            manifest = {"format": FORMAT, "created_at": releases.now_iso(), "root": layout.root, "apps": {}}
            for app in layout.apps():
                manifest["apps"][app] = back_up_app(layout, app, writer, scratch)
            writer.close(manifest)
        out.flush()
        if target:
            os.fsync(out.fileno())
            out.close()
            os.rename(partial, target)
    except BrokenPipeError:
        # What read the archive ended before it did (`backup - | false`): a backup cut short is a failure,
        # never guarded()'s quiet end of output. Python's last flush of stdout goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise TinyservError("the backup failed: whatever read its archive from standard output ended before "
                            "it was written (broken pipe)") from None
    except BaseException:
        if target:
            out.close()
            store.remove(partial)
        raise
    for name in writer.changed:
        say("warning: %s shrank while it was copied (an app was writing it); it is padded with zeros" % name)
    for name in writer.deep:
        say("warning: %s is nested more than %d directories deep: what it holds is not in the archive" % (
            name, nofollow.MAX_DEPTH))
    say("backed up %d app%s (%s of files) %sin %.1f s" % (
        len(manifest["apps"]), "" if len(manifest["apps"]) == 1 else "s", human(writer.bytes),
        "to %s " % target if target else "", time.monotonic() - started))


def open_private(target):
    """(name, file): a new file beside target that only we can read, made before anything is written to it.

    Its name is fresh and it is created exclusively: a TARGET.partial someone planted (a link, a file of
    theirs in /tmp) is never written through.
    """
    try:
        fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".", suffix=".partial",
                                       dir=os.path.dirname(target))
    except OSError as e:
        raise TinyservError("cannot write %s: %s" % (target, e.strerror)) from None
    return partial, os.fdopen(fd, "wb")


def back_up_app(layout, app, writer, scratch):
    """Add one app to the archive, holding its locks so no release, config change or add-on change
    lands half way; its add-ons' dumps too. Returns its manifest entry."""
    with addonstate.changing(layout, app), store.locked(layout.app_file(app, "lock")):
        history = releases.history(layout, app)
        current = history[-1] if history else None
        build = current["build"] if current else None
        deps = appstate.build_meta(layout, app, build).get("deps") if build else None
        listed = addonstate.load(layout, app)
        snapshots, raw = {}, set()
        for addon in listed:
            dump = os.path.join(scratch, "%s-%s" % (app, addon["name"]))
            if not dump_addon(layout, app, addon, dump):
                raw.add(addon["name"])  # a stopped redis-server: its files on disk are still
                continue
            snapshots[addon["name"]] = dump
        writer.add_tree(layout.app_dir(app), "apps/" + app, app_skipper(layout, app, build, deps, raw))
        writer.add_tree(layout.repo(app), "repos/%s.git" % app)
        writer.add_path(layout.public_release(app), "releases/%s.json" % app)
        for addon in listed:
            if addon["name"] in snapshots:
                suffix = ".pgdump" if addon["kind"] == "postgresql" else ".rdb"
                writer.add_path(snapshots[addon["name"]], "addons/%s/%s%s" % (app, addon["name"], suffix))
                os.unlink(snapshots[addon["name"]])
    return {"port": releases.port(layout, app), "release": current["version"] if current else None,
            "build": build, "addons": [{"name": a["name"], "kind": a["kind"], "snapshot": a["name"] in snapshots}
                                       for a in listed]}


def dump_addon(layout, app, addon, path):
    """Write a consistent snapshot of an add-on's data to path; False for a Redis add-on that is not running."""
    from tinyserv.platform import services
    if addon["state"] != addonstate.READY:
        raise TinyservError("%s's add-on %s was never finished (its creation was interrupted): destroy it with "
                            "'tinyserv addons:destroy %s' and back up again" % (app, addon["name"], addon["name"]))
    if addon["kind"] == "redis" and services.pid(layout, addon["name"]) is None:
        return False
    try:
        addons.provider(addon["kind"]).dump(layout, app, addon, path)
    except (OSError, addons.redis.ReplyError) as e:
        raise TinyservError("cannot take a snapshot of %s's add-on %s: %s" % (app, addon["name"], e)) from None
    return True


# --- reading -------------------------------------------------------------------------------------------


def open_archive(file):
    """The archive as a binary stream ('-': standard input)."""
    if file == "-":
        return contextlib.nullcontext(sys.stdin.buffer)
    try:
        return open(file, "rb")
    except OSError as e:
        raise TinyservError("cannot read %s: %s" % (file, e.strerror)) from None


def damaged(file, why):
    """The error for an archive that is not a whole tinyserv backup."""
    return TinyservError("%s is not a whole tinyserv backup (%s): nothing was changed" % (
        "the archive" if file == "-" else file, why))


def unpack(source, staging, file):
    """Extract the archive into staging, checking every name and every file's hash; the manifest."""
    hashes, manifest = {}, None
    try:
        unzipped = gzip.GzipFile(fileobj=source, mode="rb")
        with tarfile.open(fileobj=unzipped, mode="r|") as tar:
            for member in tar:
                if manifest is not None:
                    raise damaged(file, "something follows its manifest")
                if member.name == MANIFEST and member.isfile():
                    manifest = json.loads(tar.extractfile(member).read(16 * 1024 * 1024).decode())
                    continue
                target = checked_target(staging, member.name, file)
                if member.isdir():
                    ensure_dir(staging, target, file)
                elif member.issym():
                    make_parent(staging, target, file)
                    os.symlink(member.linkname, target)
                elif member.isfile():
                    make_parent(staging, target, file)
                    hashes[member.name] = extract_file(tar.extractfile(member), target, member.mode)
                else:
                    raise damaged(file, "%s is neither a file, a directory nor a link" % member.name)
        while unzipped.read(CHUNK):  # to its end, where gzip checks its CRC: damage after the tar's end shows too
            pass
    except (EOFError, zlib.error, tarfile.TarError, gzip.BadGzipFile, OSError, ValueError, UnicodeError) as e:
        if isinstance(e, OSError) and e.filename:
            raise TinyservError("cannot unpack into %s: %s" % (staging, e.strerror)) from None
        raise damaged(file, "%s" % (str(e) or type(e).__name__)) from None
    check_manifest(manifest, hashes, file)
    return manifest


def checked_target(staging, name, file):
    """Where a member goes in staging: only under the archive's own top-level directories, never above."""
    parts = name.split("/")
    if (name.startswith("/") or any(p in ("", ".", "..") for p in parts)
            or parts[0] not in ("apps", "repos", "releases", "addons")):
        raise damaged(file, "it holds a file named %r" % name)
    return os.path.join(staging, *parts)


def ensure_dir(staging, directory, file):
    """Create directory under staging, one level at a time, never through a link the archive made."""
    path = staging
    for part in os.path.relpath(directory, staging).split(os.sep):
        path = os.path.join(path, part)
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            raise damaged(file, "%s would be written through a link or a file" % os.path.relpath(directory, staging))
        if not os.path.lexists(path):
            os.mkdir(path, 0o700)


def make_parent(staging, target, file):
    """Create target's directory (never through a link); refuse a name that comes twice."""
    ensure_dir(staging, os.path.dirname(target), file)
    if os.path.lexists(target):
        raise damaged(file, "it holds %s twice" % os.path.relpath(target, staging))


def extract_file(reader, target, mode):
    """Copy a member to target (never through a link); its SHA-256."""
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
        os.fchmod(out.fileno(), mode & 0o755 | 0o600)
    return digest.hexdigest()


MANIFEST_SHAPE = {"format": int, "root": str, "created_at": str, "files": store.mapping_of(str),
                  "apps": store.mapping_of({"port": int, "release": (int, None), "build": (str, None),
                                            "addons": [{"name": str, "kind": str, "snapshot": bool}]})}


def check_manifest(manifest, hashes, file):
    """The manifest is there (the archive is whole) and every file it lists arrived unchanged."""
    if manifest is None:
        raise damaged(file, "it ends before its manifest: truncated or damaged")
    problem = store.mismatch(manifest, MANIFEST_SHAPE, "")
    if problem:
        raise damaged(file, "its manifest is damaged: %s" % problem)
    if manifest["format"] != FORMAT:
        raise TinyservError("this backup is format %d; this tinyserv reads format %d" % (manifest["format"], FORMAT))
    for name, digest in manifest["files"].items():
        if hashes.get(name) != digest:
            raise damaged(file, "%s %s" % (name, "is missing" if name not in hashes else "does not match its hash"))
    if set(hashes) - set(manifest["files"]):
        raise damaged(file, "it holds files its manifest does not list")
    for app in manifest["apps"]:
        if not APP_NAME.match(app):
            raise damaged(file, "its manifest names an app %r" % app)


def restore(layout, file):
    """`tinyserv-remote restore FILE`: bring back every app of the archive; refuse if any exists here."""
    from tinyserv.server import restoring
    layout.ensure()
    started = time.monotonic()
    staging = tempfile.mkdtemp(prefix=".restore-", dir=layout.root)
    try:
        with open_archive(file) as source:
            manifest = unpack(source, staging, file)
        restored = restoring.Restore(layout, manifest, staging).run()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say("restored %d app%s in %.1f s: %s" % (len(restored), "" if len(restored) == 1 else "s",
                                           time.monotonic() - started,
                                           ", ".join("%s (port %d)" % item for item in sorted(restored.items()))))
