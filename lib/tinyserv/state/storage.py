"""An app's persistent data directory (TINYSERV_DATA_DIR): where it is and how much it holds.

Every build is a fresh directory and old builds are pruned, so files an app writes next to its
code are gone after the next deploy. apps/<app>/data/ is outside every build: it survives
deploys, rollbacks, restarts and reboots, and goes only with `apps:destroy`.
"""

import os

from tinyserv.common.errors import TinyservError


def usage(path):
    """(bytes, files) under path: the apparent size of its regular files, links not followed."""
    total, files = 0, 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue  # vanished or unreadable while we counted: count what can be read
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
                    files += 1
            except OSError:
                continue
    return total, files


def info(layout, app):
    """What `tinyserv storage` shows: the data directory's path, size and number of files."""
    layout.require(app)
    path = layout.ensure_data_dir(app)
    if not os.path.isdir(path):
        raise TinyservError("%s is not a directory: move it away so tinyserv can make the data directory" % path)
    size, files = usage(path)
    return {"app": app, "path": path, "bytes": size, "files": files}

