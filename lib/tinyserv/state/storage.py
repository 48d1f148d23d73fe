"""An app's persistent data directory (TINYSERV_DATA_DIR): where it is and how much it holds.

Every build is a fresh directory and old builds are pruned, so files an app writes next to its
code are gone after the next deploy. apps/<app>/data/ is outside every build: it survives
deploys, rollbacks, restarts and reboots, and goes only with `apps:destroy`.
"""

import os
import stat

from tinyserv.common.errors import TinyservError
from tinyserv.state import nofollow


def usage(path):
    """(bytes, files) under path: the apparent size of its regular files, links not followed (not even one
    the app's user swaps in for a directory as we count: nofollow.walk)."""
    total, files = 0, 0
    try:
        top = nofollow.open_dir(path)
    except TinyservError:
        return total, files
    if top is None:
        return total, files
    try:
        for found in nofollow.walk(top, skip=lambda rel: False):
            if found.fd is not None and stat.S_ISREG(found.info.st_mode):
                total += found.info.st_size
                files += 1
    except OSError:
        pass  # unreadable as we counted: what was counted so far
    finally:
        os.close(top)
    return total, files


def info(layout, app):
    """What `tinyserv storage` shows: the data directory's path, size and number of files."""
    layout.require(app)
    path = layout.ensure_data_dir(app)
    if not os.path.isdir(path):
        raise TinyservError("%s is not a directory: move it away so tinyserv can make the data directory" % path)
    size, files = usage(path)
    linked = os.path.realpath(path) if os.path.islink(path) else None  # apps:destroy removes only the link
    return {"app": app, "path": path, "bytes": size, "files": files, "linked_to": linked}

