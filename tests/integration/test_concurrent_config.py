"""Two config changes made at the same moment both land, each in a release of its own."""

import subprocess
import time

from localserver import TINYSERV
from support import describe, http_get, node_app


BOOT_TIMEOUT = 15  # how long a config:set may wait for web; a hang shows as a warning after this


def test_two_config_sets_started_together_both_land(server, tmp_path):
    app = server.new_app(tmp_path, node_app("concurrent"), prefix="concurrent")
    server.tinyserv("config:set", f"TINYSERV_BOOT_TIMEOUT={BOOT_TIMEOUT}", cwd=app.path)
    server.push(app)
    before = server.releases(app)

    started = time.monotonic()
    procs = [subprocess.Popen([TINYSERV, "config:set", f"{key}=value of {key}"], cwd=app.path, env=server.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key in ("FIRST", "SECOND")]
    outputs = [p.communicate(timeout=120) for p in procs]
    results = [subprocess.CompletedProcess(p.args, p.returncode, *out) for p, out in zip(procs, outputs)]
    took = time.monotonic() - started

    for result in results:
        assert result.returncode == 0, describe(result)
    assert server.config(app) == {"FIRST": "value of FIRST", "SECOND": "value of SECOND",
                                  "TINYSERV_BOOT_TIMEOUT": str(BOOT_TIMEOUT)}
    after = server.releases(app)
    assert len(after) == len(before) + 2
    assert sorted(r["description"] for r in after[:2]) == ["Set FIRST config vars", "Set SECOND config vars"]
    assert after[0]["config_keys"] == ["FIRST", "SECOND", "TINYSERV_BOOT_TIMEOUT"]
    assert http_get(server.url(app)) == (200, "concurrent")
    # Neither command may wait for (or warn about) a release the other one replaced.
    for result in results:
        assert result.stderr == "", describe(result)
    assert took < BOOT_TIMEOUT, f"the two config:set took {took:.1f} s"
