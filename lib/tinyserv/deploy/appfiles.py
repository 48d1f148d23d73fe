"""An app's files on the server: its repository with the hook that deploys, made by apps:create; everything
it has, removed by apps:destroy (and by a restore that gives up).
"""

import os
import subprocess
import sys

from tinyserv.state import releases, store
from tinyserv.platform import control
from tinyserv.common.errors import TinyservError


def ensure_repo(layout, name):
    """A bare repository whose pre-receive hook deploys (safe to run twice)."""
    repo = layout.repo(name)
    if not os.path.isdir(repo):
        result = subprocess.run(["git", "init", "--bare", "--quiet", repo], capture_output=True, text=True)
        if result.returncode != 0:
            raise TinyservError("git init failed: %s" % result.stderr.strip())
    from tinyserv.deploy import push as deploy  # here, not at the top: `apps` starts faster without the deploy code
    hook = os.path.join(repo, "hooks", "pre-receive")
    store.write_atomic(hook, deploy.hook_script(layout, name, [sys.executable, "-S"], control.REMOTE_SCRIPT), 0o755)


def remove_app_files(layout, name):
    """Delete an app's public release file, repository and app directory, whichever exist."""
    import shutil  # here: most commands never need it
    releases.unpublish(layout, name)
    store.remove(releases.public_lock(layout, name))
    shutil.rmtree(layout.repo(name), ignore_errors=True)
    shutil.rmtree(layout.app_dir(name), ignore_errors=True)
