"""An attacker who swaps a name for a symlink at one exact moment: right after tinyserv's n-th look at it.

A "look" is any call that finds a file by name (os.lstat, os.stat, os.open, os.readlink, os.listdir,
os.scandir). Code that checks a path and then uses it again leaks what the swapped-in link points to;
code that opens the name once (O_NOFOLLOW) and keeps to the descriptor does not, whenever the swap comes.
"""

import os

LOOKS = ("lstat", "stat", "open", "readlink", "listdir", "scandir")


class SwapAfterLook:
    """Calls swap() once, right after the after-th look at a name that matches (a name, or a test on it)."""

    def __init__(self, monkeypatch, name, swap, after=1):
        self.matches = name if callable(name) else (lambda base: base == name)
        self.swap, self.after = swap, after
        self.looks, self.swapped, self.busy = 0, False, False
        for function in LOOKS:
            monkeypatch.setattr(os, function, self.watching(getattr(os, function)))

    def watching(self, real):
        def look(path=".", *args, **kwargs):
            result = real(path, *args, **kwargs)
            if not self.busy and isinstance(path, (str, os.PathLike)) and self.matches(os.path.basename(path)):
                self.looks += 1
                if self.looks == self.after:
                    self.busy = True  # the swap's own calls are not looks
                    try:
                        self.swap()
                    finally:
                        self.busy = False
                    self.swapped = True
            return result
        return look
