"""Deploy keys: ssh keys that may push and run tinyserv commands, and nothing else.

$TINYSERV_ROOT/keys.json lists them. Each has a line at the top of ~/.ssh/authorized_keys
(TINYSERV_AUTHORIZED_KEYS names another file) that forces every ssh session of that key
through `tinyserv-remote ssh-serve --key NAME` (door.py) with `restrict`. Lines tinyserv did not
write are never touched; tinyserv's come first because sshd uses the first line that matches a
key. The file is rewritten atomically.

A key may be limited to some apps (--apps) and to pushing (--push-only). A key with neither is
a full key: it may also create apps and manage keys. Without any keys:add, ssh is as before.
"""

import base64
import os
import re
import shlex
import subprocess
import sys

from tinyserv.state import store
from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_app_name
from tinyserv.state.releases import now_iso
from tinyserv.state.store import mapping_of

KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
KEYS = {"keys": mapping_of({"key": str, "apps": ([str], None), "push_only": bool, "added": str,
                            "fingerprint": str})}
MARK = "tinyserv-remote ssh-serve --key "  # in every line tinyserv writes, whatever the install's path


def keys_file(layout):
    return os.path.join(layout.root, "keys.json")


def authorized_keys(environ=os.environ):
    """The authorized_keys file tinyserv keeps its lines in."""
    return environ.get("TINYSERV_AUTHORIZED_KEYS") or os.path.join(os.path.expanduser("~"), ".ssh",
                                                                    "authorized_keys")


def check_key_name(name):
    if not isinstance(name, str) or not KEY_NAME.match(name):
        raise TinyservError("invalid key name %r: use letters, digits and . _ @ -, at most 64 characters" % (name,))
    return name


def parse_public_key(text):
    """'TYPE BASE64 [comment]' from one line of a .pub file; anything else (options, two keys) is refused."""
    if not isinstance(text, str) or "\0" in text or len(text) > 16384:
        raise TinyservError("that is not an ssh public key")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise TinyservError("give exactly one ssh public key (one line of a .pub file), not %d lines" % len(lines))
    words = lines[0].split()
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise TinyservError("that is not an ssh public key: expected a line like 'ssh-ed25519 AAAA... you@laptop' "
                            "(key types: %s)" % ", ".join(KEY_TYPES[:3]))
    try:
        blob = base64.b64decode(words[1], validate=True)
    except ValueError:
        raise TinyservError("that ssh public key is damaged (its key data is not base64)") from None
    if blob[4:4 + len(words[0])] != words[0].encode():
        raise TinyservError("that ssh public key is damaged (its key data is not a %s key)" % words[0])
    comment = re.sub(r"[^A-Za-z0-9._@:+-]", "", " ".join(words[2:]))[:100]
    return " ".join([words[0], words[1]] + ([comment] if comment else []))


def fingerprint(key):
    """SHA256:... of a public key, as ssh-keygen shows it."""
    try:
        result = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=key + "\n", capture_output=True, text=True)
    except OSError:
        raise TinyservError("ssh-keygen is not installed on the server (apt install openssh-client)") from None
    if result.returncode != 0 or len(result.stdout.split()) < 2:
        raise TinyservError("ssh-keygen does not accept that key: %s" % (result.stderr.strip() or "unknown error"))
    return result.stdout.split()[1]


def load(layout):
    return store.load(keys_file(layout), KEYS, {"keys": {}})["keys"]


def find(layout, name):
    """The deploy key name (raise when there is none)."""
    key = load(layout).get(check_key_name(name))
    if key is None:
        raise TinyservError("there is no deploy key named %r (see 'tinyserv keys')" % name)
    return key


def add(layout, name, key, apps=None, push_only=False):
    """keys:add NAME [--apps a,b] [--push-only] with the public key on stdin."""
    check_key_name(name)
    key = parse_public_key(key)
    allowed = None
    if apps is not None:
        allowed = sorted({check_app_name(a) for a in apps.split(",") if a})
        if not allowed:
            raise TinyservError("--apps needs app names, e.g. --apps shop,blog")
    layout.ensure()
    with store.locked(os.path.join(layout.root, "keys.lock")):
        saved = load(layout)
        if name in saved:
            raise TinyservError("a deploy key named %r exists already: keys:remove it first" % name)
        blob = key.split()[1]
        for other, entry in saved.items():
            if entry["key"].split()[1] == blob:
                raise TinyservError("that key is already the deploy key %r" % other)
        saved[name] = {"key": key, "apps": allowed, "push_only": bool(push_only), "added": now_iso(),
                       "fingerprint": fingerprint(key)}
        store.write_json(keys_file(layout), {"keys": saved})
        write_authorized(saved)
    return shown(name, saved[name], single_user(layout))


def listing(layout):
    """keys: every deploy key, without the key itself."""
    single = single_user(layout)
    return [shown(name, entry, single) for name, entry in sorted(load(layout).items())]


def remove(layout, name):
    """keys:remove NAME: the key can no longer log in at all."""
    check_key_name(name)
    with store.locked(os.path.join(layout.root, "keys.lock")):
        saved = load(layout)
        if saved.pop(name, None) is None:
            raise TinyservError("there is no deploy key named %r (see 'tinyserv keys')" % name)
        write_authorized(saved)  # first: the key is locked out even if keys.json cannot be written
        store.write_json(keys_file(layout), {"keys": saved})
    return {"removed": name}


def single_user(layout):
    """Is this server in single-user mode, where every build, release command and `run` is the deploy user?"""
    from tinyserv.platform.privileged import deploy_user
    return deploy_user(layout) is None


def shown(name, entry, single=False):
    """A key as `keys` shows it; single: in single-user mode, where a key that may push runs code as the deploy
    user (its build), so --apps and --push-only limit tinyserv's commands, not what that user may do."""
    return {"name": name, "apps": entry["apps"], "push_only": entry["push_only"], "added": entry["added"],
            "fingerprint": entry["fingerprint"], "full": entry["apps"] is None and not entry["push_only"],
            "acts_as_deploy_user": single or (entry["apps"] is None and not entry["push_only"])}


def remote_script():
    """The tinyserv-remote a deploy key's line runs: the install's stable `current` path, which every upgrade
    moves on and no pruning removes (a checkout's own script when tinyserv runs from a checkout)."""
    from tinyserv import REMOTE_SCRIPT
    from tinyserv.common.unpack import installed_script
    return installed_script(REMOTE_SCRIPT)


def line(name, entry, python=sys.executable):
    """The authorized_keys line of a deploy key: a forced command, and `restrict` (a pty only for `run`)."""
    command = " ".join(shlex.quote(w) for w in (python, remote_script())) + " ssh-serve --key " + name
    options = 'command="%s",restrict' % command.replace("\\", "\\\\").replace('"', '\\"')
    if not entry["push_only"]:
        options += ",pty"
    return "%s %s" % (options, entry["key"])


def write_authorized(saved, environ=os.environ):
    """Rewrite authorized_keys: tinyserv's lines first, every other line as it was."""
    path = authorized_keys(environ)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            others = [l for l in f.read().splitlines() if MARK not in l]
    except FileNotFoundError:
        others = []
    except OSError as e:
        raise TinyservError("cannot read %s: %s" % (path, e.strerror)) from None
    ours = [line(name, entry) for name, entry in sorted(saved.items())]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    text = "\n".join(ours + others) + "\n"
    store.write_atomic(path, text.encode("utf-8", "surrogateescape"), 0o600)
