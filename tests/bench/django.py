"""How long a Django app's deploys take with uv and with pip (issue 19), side by side in one run.

The app is tests/sample-django (Django 5.2, gunicorn, whitenoise, one view, collectstatic into STATIC_ROOT),
deployed with `git push` in localhost mode (temporary root, nginx in front where it is installed), on the
server's python3 either way. "uv": a uv in $TINYSERV_ROOT/runtimes/uv (where `server:install` puts it), so
the build runs `uv venv` and `uv pip install -r requirements.txt`; "pip": no uv anywhere on the build's PATH
(runtimes.uv_path finds none), so the build falls back to `python3 -m venv` and pip. The uv link is put in
place or taken away before each push; the dependency-reuse key includes whether uv built the virtualenv.

Measured, push start -> the new release answers HTTP with its new content:
  (a) first deploy of a fresh app whose uv and pip caches are new and empty (everything is downloaded);
  (b) first deploy of a fresh app with the caches the earlier deploys filled (a server's next Django app);
  (c) a dependency-only redeploy: requirements.txt pins one more small package (six, a version not yet in
      the cache each time), so a new virtualenv is made and filled;
  (d) a code-only redeploy: the virtualenv is reused.
Each is repeated (--repeat, default 3) in uv/pip pairs, alternating which goes first so drift in the
machine's load falls on both; medians with min/max and the pairs' pip/uv ratios go to
tests/bench/results/django.json.

Each tool's cache is a directory of this run's own (UV_CACHE_DIR, PIP_CACHE_DIR as config vars), never the
deploy user's ~/.cache that other work on the machine shares: one for the cold first deploys' apps each, one
shared by the others. pip reads no configuration file
(PIP_CONFIG_FILE=/dev/null): it asks the package index uv asks, and no local mirror a machine may configure.

    python3 tests/bench/django.py                      # about 5-10 minutes: downloads from the package index
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import deploy  # noqa: E402
from common import BenchError, TinyservRoot  # noqa: E402
from tinyserv.state import store  # noqa: E402  (common put lib/ on sys.path)

SAMPLE = os.path.join(common.REPO, "tests", "sample-django")
URLS_PY = """from django.http import HttpResponse
from django.urls import path

# The benchmark's token, so it can tell releases apart.
urlpatterns = [path("", lambda request: HttpResponse("release %s"))]
"""
TOOLS = ("uv", "pip")
SIX = ["1.17.0", "1.16.0", "1.15.0", "1.14.0", "1.13.0", "1.12.0", "1.11.0", "1.10.0"]  # one new each redeploy
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's: what uv uses too (UV_SYSTEM_CERTS)
PACKAGES = ["django", "gunicorn", "whitenoise", "asgiref", "sqlparse", "packaging", "pip", "six"]

# The Python build's step lines, in order; each phase ends at its marker (deploy.phases). A virtualenv is made
# before "Installing dependencies" is printed, so it falls in the second phase.
MARKERS = [
    ("Building ", "git push -> hook starts"),
    (("Installing dependencies", "Reusing virtualenv"), "extract, find python, make the virtualenv"),
    ("Running collectstatic", "install dependencies"),
    ("Discovering process types", "collectstatic"),
    ("Checking that web boots", "Procfile, build metadata"),
    ("web answered on port", "boot check (trial boot, settle, stop)"),
    ("Launching ", "record the release"),
]

ROWS = [
    ("first_cold", "first deploy, empty caches"),
    ("first_warm", "first deploy of another app, caches warm"),
    ("dependency_change", "dependency-only redeploy (adds six)"),
    ("code_only", "code-only redeploy (virtualenv reused)"),
]


def sample_files(token, six=None):
    """tests/sample-django's files, its view answering `token`, requirements.txt pinning six when given."""
    files = {}
    for directory, _, names in os.walk(SAMPLE):
        for name in names:
            path = os.path.join(directory, name)
            with open(path) as f:
                files[os.path.relpath(path, SAMPLE)] = f.read()
    files[os.path.join("mysite", "urls.py")] = URLS_PY % token
    if six:
        files["requirements.txt"] += "six==%s\n" % six
    return files


def install_uv(ts):
    """uv from the Python package index into a virtualenv of this run's own; (its path, its version)."""
    venv = os.path.join(ts.tmp, "uv-tool")
    common.run([common.SERVER_PYTHON, "-m", "venv", venv])
    common.run([os.path.join(venv, "bin", "pip"), "install", "--disable-pip-version-check", "-q", "uv"],
               timeout=600)
    uv = os.path.join(venv, "bin", "uv")
    return uv, common.run([uv, "--version"]).stdout.strip()


class Server:
    """The temporary root, with or without uv for the next push, and the tools' caches."""

    def __init__(self, ts, uv):
        self.ts = ts
        self.uv = uv
        self.link = os.path.join(ts.root, "runtimes", "uv", "bin", "uv")  # runtimes.uv_path looks here first
        self.caches = os.path.join(ts.tmp, "cache")  # shared/uv, shared/pip; an empty pair per cold app

    def use(self, tool):
        """Make the next build find uv (tool "uv") or none (tool "pip")."""
        if tool == "uv" and not os.path.islink(self.link):
            os.makedirs(os.path.dirname(self.link), exist_ok=True)
            os.symlink(self.uv, self.link)
        elif tool == "pip" and os.path.lexists(self.link):
            os.unlink(self.link)

    def config(self, cache):
        """Config vars for an app: uv's and pip's caches under cache/; pip without configuration files."""
        cache = os.path.join(self.caches, cache)
        pairs = ["UV_CACHE_DIR=" + os.path.join(cache, "uv"), "PIP_CACHE_DIR=" + os.path.join(cache, "pip"),
                 "PIP_CONFIG_FILE=" + os.devnull]
        if os.path.exists(CA_BUNDLE):  # the bundle /etc/pip.conf names on machines whose TLS is intercepted
            pairs.append("PIP_CERT=" + CA_BUNDLE)
        return pairs

    def create(self, name, files, cache="shared"):
        """A repository in the work directory and an app for it, its caches under cache/; the repository's path.

        A new, empty cache is given rather than an old one emptied: deleting uv's cache or a virtualenv
        (thousands of files) takes 10-20 s on this machine's disk.
        """
        path = os.path.join(self.ts.work, name)
        common.make_repo(path, files, self.ts.env)
        self.ts.client("apps:create", name, cwd=path)
        self.ts.client("config:set", "-a", name, *self.config(cache), cwd=path, timeout=120)
        return path

    def wait_for_previous_push(self, app, timeout=300):
        """Seconds until the app's last push has done what it goes on doing after `git push` returns
        (pruning old builds and their virtualenvs, under the deploy lock), so that each push is timed on its
        own rather than queued behind the last one's clean-up."""
        lock = os.path.join(self.ts.root, "apps", app, "deploy.lock")
        started = time.monotonic()
        while store.lock_held(lock):
            if time.monotonic() - started > timeout:
                raise BenchError("the last push of %s still held %s after %d s" % (app, lock, timeout))
            time.sleep(0.05)
        return round(time.monotonic() - started, 3)

    def deploy(self, tool, path, app, token):
        """Push with or without uv; deploy.tinyserv_deploy's run dict, with the load average at the start."""
        waited = self.wait_for_previous_push(app)
        self.use(tool)
        load = os.getloadavg()[0]
        run = deploy.tinyserv_deploy(self.ts, path, app, "release " + token, markers=MARKERS)
        expected = "uv pip install" if tool == "uv" else "pip install"
        said = [line for _, line in run["push_output"] if "Installing dependencies" in line]
        if said and not all(expected in line and (tool == "uv" or "uv " not in line) for line in said):
            raise BenchError("a %s deploy of %s installed with something else: %s" % (tool, app, said))
        run["loadavg"] = load
        run["waited_for_previous_push_s"] = waited
        run["resolve_download_s"] = resolve_download_s(run["push_output"])
        return run


def resolve_download_s(lines):
    """Seconds from "Installing dependencies" until the installer has every package (pip: its "Installing
    collected packages" line; uv: its last "Resolved" or "Prepared" line); None when the virtualenv was reused.

    Both include the installer's own start-up; what follows is unpacking into the virtualenv (and pip's
    compiling to bytecode)."""
    start = next((t for t, line in lines if "Installing dependencies" in line), None)
    fetched = [t for t, line in lines if any(k in line for k in (
        "Installing collected packages", "       Resolved ", "       Prepared "))]
    return round(fetched[-1] - start, 3) if start is not None and fetched else None


def pairs(repeat):
    """The order of each pair: uv first in odd pairs, pip first in even ones."""
    return [TOOLS if i % 2 else TOOLS[::-1] for i in range(1, repeat + 1)]


def first_deploys(server, repeat, cold):
    """(a) or (b): a fresh app per deploy, destroyed after; with caches of its own (new, empty) when cold."""
    runs = {tool: [] for tool in TOOLS}
    kind = "cold" if cold else "warm"
    for i, order in enumerate(pairs(repeat), 1):
        for tool in order:
            name = token = "%s-%s-%d" % (kind, tool, i)
            path = server.create(name, sample_files(token), cache=name if cold else "shared")
            runs[tool].append(server.deploy(tool, path, name, token))
            server.ts.client("apps:destroy", name, "--confirm", name, cwd=path)
    return runs


def redeploys(server, repos, repeat, kind):
    """(c) or (d) on the long-lived apps `uv` and `pip`: six pinned anew each time, or only the token changed."""
    runs = {tool: [] for tool in TOOLS}
    for i, order in enumerate(pairs(repeat), 1):
        six = SIX[i - 1] if kind == "dependency" else SIX[repeat - 1]
        for tool in order:
            token = "%s-%s-%d" % (kind, tool, i)
            common.commit_files(repos[tool], sample_files(token, six=six), server.ts.env, token)
            runs[tool].append(server.deploy(tool, repos[tool], tool, token))
    return runs


def summarize(runs):
    """Per tool deploy.summarize; the pip/uv ratio of each pair and their median."""
    out = {tool: deploy.summarize(runs[tool]) for tool in TOOLS}
    for tool in TOOLS:
        fetched = [r["resolve_download_s"] for r in runs[tool]]
        out[tool]["resolve_download_median_s"] = (round(common.median(fetched), 3) if None not in fetched
                                                  else None)
    ratios = [round(p["answer_s"] / u["answer_s"], 2) for u, p in zip(runs["uv"], runs["pip"])]
    out["pair_ratios_pip_over_uv"] = ratios
    out["ratio_pip_over_uv"] = round(common.median(ratios), 2)
    return out


def show(title, summary):
    u, p = summary["uv"]["push_to_answer_s"], summary["pip"]["push_to_answer_s"]
    print("  %-44s uv %.2f s (%.2f-%.2f)   pip %.2f s (%.2f-%.2f)   pip/uv %.2f %s" % (
        title, u["median"], u["min"], u["max"], p["median"], p["min"], p["max"], summary["ratio_pip_over_uv"],
        summary["pair_ratios_pip_over_uv"]))
    for tool in TOOLS:
        shown = ["%s %.2f" % (k, v) for k, v in summary[tool]["phases_median_s"].items() if v is not None]
        print("      %-3s phases: %s" % (tool, ", ".join(shown)))


def installed_versions(ts, app):
    """{package: version} of what the app's virtualenv holds (pip's too, where pip made it)."""
    deps = os.path.join(ts.root, "apps", app, "deps")
    keys = os.listdir(deps)
    if len(keys) != 1:
        raise BenchError("expected one virtualenv for %s, found %s" % (app, keys))
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))")
    found = json.loads(common.run([os.path.join(deps, keys[0], "venv", "bin", "python"), "-c", code]).stdout)
    return {name: found[name] for name in sorted(found) if name in PACKAGES}


def files_under(top):
    """How many files a cache holds (pip's stays empty where the way to the index drops caching headers)."""
    return sum(len(names) for _, _, names in os.walk(top))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, choices=range(1, len(SIX) + 1), metavar="N (1-%d)" % len(SIX))
    p.add_argument("--python", default=common.SERVER_PYTHON, help="the python3 put first on PATH for tinyserv")
    p.add_argument("--commit", help="measure this commit's bin/ and lib/ (exported to the temporary dir) "
                   "instead of the working tree")
    p.add_argument("--start-port", type=int, default=31500)
    args = p.parse_args(argv)
    common.interrupt_on_sigterm()
    began = time.monotonic()
    result = {"benchmark": "django", "app": "tests/sample-django (Django, gunicorn, whitenoise)",
              "repeat": args.repeat, "machine": common.machine(args.python, args.commit), "six": SIX[:args.repeat],
              "phase_names": [name for _, name in MARKERS] + [deploy.SWITCH], "rows": dict(ROWS), "deploys": {}}
    print("tinyserv Django benchmark: uv against pip, %d pairs per row, %s (%s), load %.1f" % (
        args.repeat, args.python, result["machine"]["server_python_version"], result["machine"]["loadavg_at_start"]))
    with TinyservRoot(python=args.python, commit=args.commit, start_port=args.start_port, ports_needed=20,
                      prefix="tinyserv-bench-django-") as ts:
        print("  temporary root %s, ports from %d" % (ts.root, ts.start_port))
        uv, result["uv"] = install_uv(ts)
        print("  %s installed for this run" % result["uv"])
        server = Server(ts, uv)
        # Warm-up, not measured: starts the supervisor (and nginx), fills both caches; these two apps then
        # take the redeploys.
        repos = {}
        for tool in TOOLS:
            repos[tool] = server.create(tool, sample_files("warmup-" + tool))
            server.deploy(tool, repos[tool], tool, "warmup-" + tool)
        result["installed"] = {tool: installed_versions(ts, tool) for tool in TOOLS}
        print("  installed: %s" % result["installed"])

        steps = [("first_cold", lambda: first_deploys(server, args.repeat, cold=True)),
                 ("first_warm", lambda: first_deploys(server, args.repeat, cold=False)),
                 ("dependency_change", lambda: redeploys(server, repos, args.repeat, "dependency")),
                 ("code_only", lambda: redeploys(server, repos, args.repeat, "code"))]
        for key, measure in steps:
            result["deploys"][key] = summarize(measure())
            show(dict(ROWS)[key], result["deploys"][key])
        result["cache_files"] = {tool: files_under(os.path.join(server.caches, "shared", tool)) for tool in TOOLS}
        measured = [r for d in result["deploys"].values() for tool in TOOLS for r in d[tool]["runs"]]
        loads = [r["loadavg"] for r in measured]
        result["loadavg_at_deploys"] = {"min": min(loads), "median": common.median(loads), "max": max(loads)}
        result["waited_for_previous_push_max_s"] = max(r["waited_for_previous_push_s"] for r in measured)
    return common.finish("django", result, began)


if __name__ == "__main__":
    common.run_main(main)
