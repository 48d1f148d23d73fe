"""Write tests/bench/results/README-tables.md from the JSON results, and the same tables into docs/benchmarks.md.

memory.py, deploy.py, django.py and noisy.py call this after writing their JSON; run it alone to redo the tables.
"""

import glob
import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
BENCHMARKS_PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs",
                               "benchmarks.md")


def load(name):
    path = os.path.join(RESULTS, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine_line(m):
    """'2 cores (CPU), Python 3.11.2 (/usr/bin/python3), node v20, npm 11, tinyserv abc1234, 2026-11-28'."""
    return "%s cores%s, %s (%s), node %s, npm %s, tinyserv %s, %s" % (
        m["nproc"], " (%s)" % m["cpu"] if m.get("cpu") else "", m["server_python_version"], m["server_python"],
        m["node"], m["npm"], m.get("tinyserv", {}).get("commit", "?"), m["date"][:10])


def conditions(m):
    """One line on what else was going on: which tinyserv, and the load average around the run."""
    return "Measured: tinyserv %s; load average %.1f at the start, %.1f at the end (%s cores)." % (
        m.get("tinyserv", {}).get("measured", "?"), m.get("loadavg_at_start", 0), m.get("loadavg_at_end", 0),
        m["nproc"])


def seconds(s):
    """'1.23 s (1.20-1.31)' from a stats dict."""
    return "%.2f s (%.2f–%.2f)" % (s["median"], s["min"], s["max"])


def memory_section(results):
    lines = ["### Memory of tinyserv's own processes", "",
             "What: VmRSS (from /proc/PID/status) and PSS/USS (from /proc/PID/smaps_rollup) of every tinyserv "
             "process on the server while it supervises N no-dependency node apps, each deployed with `git push` "
             "(localhost mode, temporary root). tinyserv's long-lived processes are the supervisor "
             "(`tinyserv-remote supervise`) and its standby, which only waits to take over; RSS adds up both (the "
             "pages of the Python interpreter they share are counted twice), PSS shares those pages out. The apps' "
             "own memory is shown for scale. Largest of %s samples "
             "0.5 s apart. Goal: ≤ %d MB resident with 50 apps." % (5, results[0]["goal_mb"]), "",
             "| Python running tinyserv | apps | when | tinyserv processes | RSS | PSS | USS | the apps' PSS "
             "| machine |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        m = r["machine"]
        for row in r["rows"]:
            lines.append("| %s | %d | %s | %d | %.1f MB | %.1f MB | %.1f MB | %.0f MB | %s |" % (
                m["server_python_version"], row["apps"], row["label"].split(", ", 1)[1], row["own_process_count"],
                row["own_rss_mb"], row["own_pss_mb"], row["own_uss_mb"], row["apps_pss_mb"], machine_line(m)))
    lines += [""] + ["%s: %s" % (r["machine"]["server_python_version"], conditions(r["machine"])) for r in results]
    lines += ["", "### Startup of 50 stopped apps", "",
              "What: after `tinyserv-remote shutdown`, the time from starting `tinyserv-remote startup` until every "
              "app answers HTTP on 127.0.0.1 (polled every 10 ms).", "",
              "| Python running tinyserv | apps | shutdown | first app answers | median app | every app answers "
              "| `startup` exits | machine |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        s = r["startup"]
        lines.append("| %s | %d | %.2f s | %.2f s | %.2f s | %.2f s | %.1f s | %s |" % (
            r["machine"]["server_python_version"], s["apps"], s["shutdown_s"], s["first_answer_s"],
            s["median_answer_s"], s["all_answer_s"], s["startup_command_exit_s_at_most"], machine_line(r["machine"])))
    lines += ["", "`startup` exits once every app's web has accepted connections for tinyserv's 0.3 s settle time."]
    return lines


DEPLOY_ROWS = [
    ("first", "First deploy of a fresh app (`npm ci`)"),
    ("package_change", "Deploy changing package.json (`npm ci`)"),
    ("code_only", "Code-only redeploy (dependencies reused)"),
]


def deploy_section(r):
    m = machine_line(r["machine"])
    lines = ["### Deploy times (express sample app)", "",
             "What: seconds from the start of `git push` until the new release answers HTTP with its new content "
             "(median of %d, min–max in brackets). The floor is measured in the same run: `git push` of the same "
             "commit to a plain bare repository (no hook) + a fresh checkout + `npm ci` (same warm npm cache) + "
             "`npm start` (the Procfile's command) until its first HTTP answer. Goal: deploy/floor ≤ 1.15."
             % r["repeat"],
             "", "| what | tinyserv | floor | deploy/floor | without npm ci: tinyserv / floor | machine |",
             "|---|---:|---:|---:|---:|---|"]
    for key, title in DEPLOY_ROWS:
        d = r["deploys"][key]
        floor, bare = d.get("floor"), d.get("without_npm_ci")
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            title, seconds(d["push_to_answer_s"]), seconds(floor["total_s"]) if floor else "–",
            "%.2f×" % d["ratio"] if d.get("ratio") else "–",
            "%.2f s / %.2f s" % (bare["tinyserv_s"]["median"], bare["floor_s"]["median"]) if bare else "–", m))
    rb = r["rollback"]
    gap = r["switch_gap"]
    lines.append("| `tinyserv rollback` until the old content answers | %s | – | – | – | %s |" % (
        seconds(rb["command_to_answer_s"]), m))
    lines.append("| Longest time without an answer during a code-only redeploy (GET every %d ms) "
                 "| %s | – | – | – | %s |" % (gap["interval_ms"], seconds(gap["longest_gap_s"]), m))
    lines += ["", conditions(r["machine"]) + " For code-only redeploys the floor reuses the previous checkout's "
              "node_modules, as tinyserv does. After the new release answers, the push itself still runs for "
              "%s (tinyserv's 0.3 s settle check on the new web, then pruning old builds) before `git push` "
              "returns." % ", ".join(
                  "%.2f s (%s)" % (r["deploys"][k]["push_ends_after_answer_median_s"], k.replace("_", "-"))
                  for k, _ in DEPLOY_ROWS if "push_ends_after_answer_median_s" in r["deploys"][k])]
    lines += ["", "Where a deploy's time goes (median seconds, from the push output's arrival times):", "",
              "| what | " + " | ".join(p for p in r["phase_names"]) + " |",
              "|---|" + "---:|" * len(r["phase_names"])]
    for key, title in DEPLOY_ROWS:
        phases = r["deploys"][key]["phases_median_s"]
        lines.append("| %s | %s |" % (title, " | ".join(
            "%.2f" % phases[p] if phases.get(p) is not None else "–" for p in r["phase_names"])))
    lines += ["", "Floor phases (median seconds):", "", "| what | push | checkout | npm ci | boot to first answer |",
              "|---|---:|---:|---:|---:|"]
    for key, title in DEPLOY_ROWS:
        f = r["deploys"][key].get("floor")
        if f:
            lines.append("| %s | %.2f | %.2f | %s | %.2f |" % (
                title, f["push_s"]["median"], f["checkout_s"]["median"],
                "%.2f" % f["npm_ci_s"]["median"] if f.get("npm_ci_s") else "– (reused)", f["boot_s"]["median"]))
    return lines


DJANGO_ROWS = [
    ("first_cold", "First deploy of a fresh app, empty caches"),
    ("first_warm", "First deploy of another app, warm caches"),
    ("dependency_change", "Dependency-only redeploy (requirements.txt adds six)"),
    ("code_only", "Code-only redeploy (virtualenv reused)"),
]


def django_section(r):
    """A Django app's deploys with uv against pip (issue 19), paired in one run."""
    m, installed = r["machine"], r["installed"]
    pip = installed["pip"].get("pip", "?")
    lines = ["### Django deploys: uv against pip", "",
             "What: seconds from the start of `git push` until the new release answers HTTP with its new content, "
             "for tests/sample-django (Django %s, gunicorn %s, whitenoise %s; one view, `collectstatic` into "
             "STATIC_ROOT), localhost mode with nginx in front, built on the server's %s either way. **uv**: "
             "%s in `$TINYSERV_ROOT/runtimes/uv`, so the build runs `uv venv` and `uv pip install -r "
             "requirements.txt`; **pip**: no uv on the server, so it falls back to `python3 -m venv` and pip %s. "
             "Median of %d, min–max in brackets; uv and pip ran in pairs, alternating which went first, and "
             "pip/uv is the median of the pairs' ratios." % (
                 installed["uv"].get("django", "?"), installed["uv"].get("gunicorn", "?"),
                 installed["uv"].get("whitenoise", "?"), m["server_python_version"], r["uv"].split(" (")[0], pip,
                 r["repeat"]), "",
             "| what | uv | pip | pip/uv (each pair) | of which fetching packages: uv / pip | machine |",
             "|---|---:|---:|---:|---:|---|"]
    for key, title in DJANGO_ROWS:
        d = r["deploys"][key]
        fetched = [d[tool].get("resolve_download_median_s") for tool in ("uv", "pip")]
        lines.append("| %s | %s | %s | %.2f× (%s) | %s | %s |" % (
            title, seconds(d["uv"]["push_to_answer_s"]), seconds(d["pip"]["push_to_answer_s"]),
            d["ratio_pip_over_uv"], ", ".join("%.2f" % x for x in d["pair_ratios_pip_over_uv"]),
            "%.2f s / %.2f s" % tuple(fetched) if None not in fetched else "– (reused)", machine_line(m)))
    loads = r["loadavg_at_deploys"]
    pip_cache = r.get("cache_files", {}).get("pip")
    lines += ["", "The machine is shared and was loaded: other sessions' tests and builds ran on its %s cores "
              "meanwhile (load average %.1f at the start, %.1f at the end, %.1f–%.1f when the measured pushes "
              "began), so single runs swing by seconds; the pairs put that drift on both tools alike. Install "
              "times include downloads: both tools fetch from the Python package index over the network. Caches: "
              "each tool's cache is a directory of the run's own (`UV_CACHE_DIR`, `PIP_CACHE_DIR` as config vars); "
              "a cold first deploy's app gets new, empty ones, so uv and pip both start cold and download "
              "everything; the other rows share the caches the earlier deploys filled. pip reads no configuration "
              "file (`PIP_CONFIG_FILE=/dev/null`), so it asks the same index as uv. A changed requirements.txt "
              "makes a new virtualenv from scratch (tinyserv reuses one only for unchanged manifests and Python), "
              "so the dependency-only redeploy installs every package again, from the cache, plus six (a version "
              "not yet in the cache each time: %s). In the code-only row both tools do the same work (the "
              "virtualenv is reused): the difference there is noise. \"Fetching packages\" runs from the push's "
              "\"Installing dependencies\" line to pip's \"Installing collected packages\" or uv's last "
              "\"Resolved\"/\"Prepared\" line: the installer's start-up, resolving and downloading (uv also "
              "unpacks into its cache); what follows is putting the files into the virtualenv (pip also compiles "
              "them to bytecode, which uv leaves to the first import). Each redeploy waits "
              "until the app's last push has finished what it does after `git push` returns (pruning old builds and "
              "their virtualenvs, under the app's deploy lock; up to %.1f s here), so no push is timed queued behind "
              "another's clean-up." % (
                  m["nproc"], m.get("loadavg_at_start", 0), m.get("loadavg_at_end", 0), loads["min"], loads["max"],
                  ", ".join(r["six"]), r.get("waited_for_previous_push_max_s", 0))]
    if pip_cache == 0:
        lines += ["", "pip's cache stayed empty in this run: the way from this machine to the index drops the "
                  "`Cache-Control` and `ETag` headers pip's HTTP cache needs, so pip downloaded every package "
                  "again in each deploy; uv's cache (%d files) does not depend on them. On a server that reaches the "
                  "index directly, pip's warm rows would be shorter by about its download time." % (
                      r["cache_files"]["uv"])]
    lines += ["", conditions(m), "", "Where the time goes (median seconds, from the push output's arrival times):",
              "", "| what | tool | " + " | ".join(r["phase_names"]) + " |",
              "|---|---|" + "---:|" * len(r["phase_names"])]
    for key, title in DJANGO_ROWS:
        for tool in ("uv", "pip"):
            phases = r["deploys"][key][tool]["phases_median_s"]
            lines.append("| %s | %s | %s |" % (title, tool, " | ".join(
                "%.2f" % phases[p] if phases.get(p) is not None else "–" for p in r["phase_names"])))
    lines += ["", "A virtualenv is made before the push prints \"Installing dependencies\": `uv venv` in the uv "
              "rows, `python3 -m venv` (which installs pip into it) in the pip rows. uv's collectstatic takes "
              "longer than pip's because the first run of Django's code compiles it to bytecode, which pip did "
              "while installing."]
    return lines


def frontdoor_section(r):
    """Before and after nginx, side by side from one run of frontdoor.py."""
    b, a = r["before"], r["after"]
    lines = ["### The front door: before and after nginx (one run, side by side)", "",
             "What: frontdoor.py runs tinyserv %s (\"before\": every app on its own port) and then this working tree "
             "(\"after\": nginx in front), each in a temporary root, with the same steps: deploys of the express "
             "sample app against the floor measured next to each run (the floor of a first deploy: `git push` to a "
             "bare repository + checkout + `npm ci` + `npm start` to its first answer; of a code-only redeploy: push "
             "+ checkout + one boot to the first answer), then a client GETting the app every 10 ms (a new "
             "connection each) for %d s of steady state and across %d code-only redeploys, then %d "
             "no-dependency node apps. Median of %d, min–max in brackets. Goals: code-only redeploy ≤ 1.5× its "
             "floor, first deploy ≤ 1.15×, 0 failed requests during redeploys." % (
                 r["before_commit"], 5, r["redeploys"], r["apps"], r["repeat"]), "",
             "| what | before | after | goal |", "|---|---:|---:|---:|"]

    def ratio(side, key):
        d = side[key]
        return "%s vs floor %s: **%.2f×**" % (seconds(d["push_to_answer_s"]), seconds(d["floor"]["total_s"]),
                                              d["ratio"])
    lines.append("| code-only redeploy: push → new content answers | %s | %s | ≤ 1.5× |" % (
        ratio(b, "code_only"), ratio(a, "code_only")))
    lines.append("| first deploy (npm ci) | %s | %s | ≤ 1.15× |" % (ratio(b, "first"), ratio(a, "first")))
    lines.append("| failed requests during %d code-only redeploys under load | **%d** of %d (%s per redeploy) | "
                 "**%d** of %d (%s) | 0 |" % (
                     r["redeploys"], b["load"]["during_redeploys"]["failed"], b["load"]["during_redeploys"]["requests"],
                     ", ".join(map(str, b["load"]["failed_per_redeploy"])), a["load"]["during_redeploys"]["failed"],
                     a["load"]["during_redeploys"]["requests"], ", ".join(map(str, a["load"]["failed_per_redeploy"]))))
    for what, key in (("steady state", "steady"), ("during the redeploys", "during_redeploys")):
        lines.append("| latency p50 / p99, %s | %s / %s ms | %s / %s ms | – |" % (
            what, b["load"][key]["p50_ms"], b["load"][key]["p99_ms"], a["load"][key]["p50_ms"],
            a["load"][key]["p99_ms"]))
    lines.append("| memory with %d apps: tinyserv's processes (+ nginx's), RSS | %.1f MB (%d processes) | %.1f MB + "
                 "nginx %.1f MB = %.1f MB | – |" % (
                     r["apps"], b["memory"]["tinyserv_rss_mb"], b["memory"]["tinyserv_processes"],
                     a["memory"]["tinyserv_rss_mb"], a["memory"]["nginx_rss_mb"], a["memory"]["total_rss_mb"]))
    lines.append("| the same, PSS | %.1f MB | %.1f MB + nginx %.1f MB = %.1f MB | – |" % (
        b["memory"]["tinyserv_pss_mb"], a["memory"]["tinyserv_pss_mb"], a["memory"]["nginx_pss_mb"],
        a["memory"]["total_pss_mb"]))
    lines += ["", "Before: %s" % conditions(b["machine"]), "After: %s" % conditions(a["machine"]),
              "Machine: %s." % machine_line(r["machine"])]
    lines += ["", "Where the after deploys spend their time (median seconds, from the push output's arrival "
              "times):", "", "| what | " + " | ".join(deploy_phase_names(a)) + " |",
              "|---|" + "---:|" * len(deploy_phase_names(a))]
    for key, title in (("first", "first deploy"), ("code_only", "code-only redeploy")):
        phases = a[key]["phases_median_s"]
        lines.append("| %s | %s |" % (title, " | ".join(
            "%.2f" % phases[p] if phases.get(p) is not None else "–" for p in deploy_phase_names(a))))
    return lines


def deploy_phase_names(side):
    return list(side["first"]["phases_median_s"])


def noisy_section(r):
    m = machine_line(r["machine"])
    lines = ["### A noisy neighbour: one app writing output nonstop", "",
             "What: %d quiet no-dependency node apps deployed with `git push` (localhost mode, temporary root), "
             "then the same plus one app whose worker runs `yes` (`%s`). Supervisor CPU: utime+stime from "
             "/proc/PID/stat over %.0f s, in %% of one core. Memory: VmRSS, with PSS in brackets. Crashed web: "
             "SIGKILL of another app's node process until that app answers HTTP again (polled every 10 ms; a "
             "different app each trial), next to a bare `node server.js` from start to first answer, measured "
             "in the same phase. Median of %d trials, min–max in brackets. Goal: a crashed web serves again "
             "within 1 s of a node boot, with or without the noisy app." % (
                 r["apps"], r["noisy_procfile"].strip().splitlines()[-1], r["window_s"], r["trials"]), "",
             "| apps | supervisor CPU | supervisor memory | standby memory | crashed web serves again "
             "| bare node boot | difference | `tinyserv ps` | machine |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for key, title in (("quiet", "%d quiet" % r["apps"]), ("noisy", "%d quiet + 1 writing nonstop" % r["apps"])):
        p = r[key]
        lines.append("| %s | %.1f %% | %.1f MB (%.1f) | %.1f MB (%.1f) | %s | %s | %+.2f s | %.2f s | %s |" % (
            title, p["cpu_percent"], p["supervisor"]["rss_mb"], p["supervisor"]["pss_mb"], p["standby"]["rss_mb"],
            p["standby"]["pss_mb"], seconds(p["restart_s"]), seconds(p["node_boot_s"]),
            p["restart_minus_boot_s"], p["ps_s"]["median"], m))
    log = r["noisy"]["log"]
    lines += ["", "Difference: crashed web minus bare node boot (the goal: at most +1 s); both are one node boot, and a "
              "negative one means the restart was the quicker of the two in this run."]
    if r.get("takeover_s"):
        lines += ["", "With the noisy app still running, SIGKILL of the supervisor until its standby answers on the "
                  "control socket: %s." % seconds(r["takeover_s"])]
    lines += ["", "%s While the CPU was measured, the noisy app's log grew by %.0f KiB/s (the budget: 1 MiB/s of "
              "output per instance, lines charged 32 bytes more); its log files at the end: %s (cap %.0f MiB, plus "
              "at most one line)." % (
                  conditions(r["machine"]), r["noisy"].get("noisy_log_bytes_per_s", 0) / 1024,
                  ", ".join("%s %.2f MB" % (n, b / 1e6) for n, b in sorted(log["sizes"].items())),
                  r["log_max_bytes"] / 1024 / 1024)]
    return lines


CLI_ROWS = [
    ("ssh_true", "a fresh `ssh host true` (no shared connection)"),
    ("first", "the first `tinyserv ps` (opens the shared connection)"),
    ("repeated", "a repeated `tinyserv ps` (through it)"),
    ("no_reuse", "`tinyserv ps` with `TINYSERV_SSH_REUSE=0` (a fresh connection each time)"),
    ("shared_ssh_true", "`ssh host true` through the shared connection"),
    ("shared_remote_ps", "`tinyserv-remote ps APP` alone, through it (the server's part)"),
]


def cli_section(r):
    """CLI latency: tinyserv ps, first and repeated, against a fresh ssh host true."""
    m, s = r["machine"], r["stats_ms"]
    base = s["ssh_true"]["median"]
    lines = ["### CLI latency over ssh", "",
             "What: seconds from start to exit of each command, run from this machine against the e2e container's "
             "sshd on loopback (a server installed with `tinyserv server:install`, one deployed no-dependency node "
             "app), %d rounds, interleaved; median, min–max in brackets. The client runs under %s. The ratio is the "
             "median of each round's own ratio (the commands of a round ran within a second, under the same load). "
             "Goal: a repeated `tinyserv ps` faster than a fresh `ssh host true`, the first one at most 1.3× it." % (
                 r["rounds"], r.get("client_python", "?")), "",
             "| what | time | × a fresh `ssh host true` | machine |", "|---|---:|---:|---|"]
    ratios = r.get("ratio_per_round") or {k: s[k]["median"] / base for k in s}
    for key, label in CLI_ROWS:
        lines.append("| %s | %.0f ms (%.0f–%.0f) | %.2f× | %s |" % (
            label, s[key]["median"], s[key]["min"], s[key]["max"], ratios[key], machine_line(m)))
    lines += ["", "On the server, `tinyserv-remote ps` spends %.1f ms importing its modules (python3 -X importtime, "
              "median of 5); a bare `python3 -c pass` takes %.1f ms there (started from Python: fork and exec "
              "included). ssh: %s. %s" % (
                  r["server"]["imports_ms"], r["server"]["python_c_pass_ms"], r.get("ssh", "?"), conditions(m))]
    return lines


def data_section(r):
    """Backup and restore of a whole server; the supervisor's memory with cron jobs and Redis add-ons."""
    lines = []
    b = r.get("backup")
    if b:
        lines += ["### Backup and restore of a whole server", "",
                  "What: %d no-dependency apps deployed with `git push` (localhost mode), each with %d MB in its "
                  "data directory (%s), backed up with `tinyserv-remote backup FILE` while they run, then restored "
                  "with `tinyserv-remote restore FILE` into a second root with another START_PORT; every file is "
                  "compared byte for byte afterwards." % (b["apps"], b["mb_per_app"], b["data"]), "",
                  "| apps | data | backup | archive | restore (until it returns: apps up) | machine |",
                  "|---:|---:|---:|---:|---:|---|",
                  "| %d | %d MB | %.1f s | %.0f MB | %.1f s | %s |" % (
                      b["apps"], b["data_mb"], b["backup_s"], b["archive_mb"], b["restore_s"],
                      machine_line(r["machine"])), "", conditions(r["machine"]), ""]
    m = r.get("memory")
    if m:
        base, loaded = m["baseline"], m["with_cron_and_redis"]
        lines += ["### The supervisor with cron jobs and Redis add-ons", "",
                  "What: the supervisor's largest VmRSS and PSS, sampled every 0.5 s, with %d Python apps (the e2e "
                  "image, Debian's redis-server), then with a cron job every minute in each app and a Redis add-on "
                  "for each, sampled across a minute boundary while the %d jobs ran (%d runs seen in the logs). "
                  "The redis-servers are separate processes, shown for scale." % (
                      m["apps"], m["apps"], loaded["cron_runs_seen"]), "",
                  "| apps | running | supervisor RSS | supervisor PSS | redis-servers | their RSS (sum) "
                  "| their PSS (sum) | machine |",
                  "|---:|---|---:|---:|---:|---:|---:|---|",
                  "| %d | apps only | %.1f MB | %.1f MB | – | – | – | %s |" % (
                      m["apps"], base["rss"], base["pss"], machine_line(m["machine"])),
                  "| %d | + %d cron jobs, %d Redis add-ons | %.1f MB | %.1f MB | %d | %.1f MB | %.1f MB | %s |" % (
                      m["apps"], m["apps"], loaded["redis_servers"], loaded["rss"], loaded["pss"],
                      loaded["redis_servers"], loaded["redis_rss"], loaded["redis_pss"], machine_line(m["machine"])),
                  "", conditions(m["machine"])]
    return lines


SCALE_COLUMNS = [("redeploy_push_s", "code-only redeploy (push)", "%.2f s"), ("config_set_s", "`config:set`", "%.2f s"),
                 ("ps_s", "`ps`", "%.2f s"), ("apps_s", "`apps`", "%.2f s"),
                 ("supervisor_idle_cpu_pct", "supervisor idle CPU", "%.2f %%"),
                 ("supervisor_rss_mb", "supervisor RSS", "%.1f MB"), ("own_rss_mb", "tinyserv's own RSS", "%.1f MB"),
                 ("nginx_rss_mb", "nginx RSS", "%.1f MB"), ("all_answer_after_startup_s", "all answer after `startup`",
                                                           "%.1f s"),
                 ("median_app_answers_after_startup_s", "median app answers after `startup`", "%.1f s")]


# scale.py's runs, newest first: this code, the run of the day before (5c396de), the code before issue 20.
SCALE_RUNS = (("scale", "this version"), ("scale-d333bb7", "d333bb7"), ("scale-5c396de", "5c396de"),
              ("scale-before", "before"))


def scale_section(runs):
    """Cost against the number of apps: one row per N, for each run (the code measured, and the one before)."""
    first = runs[0][1]
    lines = ["### Cost as the number of apps grows", "",
             "What: N small generic apps (%s) on localhost, added with `git push`; at each N: a code-only redeploy of "
             "one app (until the push returns), `config:set`, `ps` and `apps` of one app (until each returns), the "
             "supervisor's CPU while idle (utime+stime from /proc/PID/stat over %.0f s, %% of one core) and RSS, "
             "tinyserv's own RSS (supervisor + standby), nginx's RSS (master + workers), and the seconds from "
             "`tinyserv-remote startup` (after `shutdown`) until every app answers at its domain (this version: every "
             "app watched at once, the slowest one's first answer; the runs before: one watcher going round the apps "
             "in turn) and until half of them do. One run each; "
             "timings of a loaded machine are noisy, CPU time less so." % (first["app"], first["idle_s"]), "",
             "| tinyserv | N | " + " | ".join(label for _, label, _ in SCALE_COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(SCALE_COLUMNS)]
    for label, r in runs:
        for row in r["rows"]:
            lines.append("| %s | %d | " % (label, row["apps"]) + " | ".join(
                fmt % row[key] if row.get(key) is not None else "–" for key, _, fmt in SCALE_COLUMNS) + " |")
    for label, r in runs:
        lines += ["", "%s: %s %s" % (label, machine_line(r["machine"]), conditions(r["machine"]))]
    return lines


def swarm_section(r):
    """The same app local and on a one-node swarm: deploys, failed requests through redeploys, a killed web."""
    f, c, k = r["first"], r["code_only"], r["crash"]
    lines = ["### The same app on the local scheduler and on a one-node Docker Swarm", "",
             "What: the express sample app (tests/sample-app) on the two schedulers of one tinyserv (%s; the generated "
             "Dockerfile starts from %s, the e2e suite's Debian base with Debian's nodejs; Docker %s). Push start "
             "→ the new content answers through nginx, local and swarm runs interleaved, median with min–max. The "
             "code-only redeploys ran under a GET every %d ms through nginx to each app (anything but a 200 is a "
             "failed request). A killed web: `docker kill` of a web task's container (SIGKILL of the local web's "
             "node process for comparison) under the same GETs; serving again = the first answer after the last "
             "failed request." % (r["setup"], r["base_image"], r["docker"], c["local"]["load"]["interval_ms"]), "",
             "| what | local | swarm | swarm / local |", "|---|---:|---:|---:|"]
    for key, title in (("first", "first deploy of a fresh app (`npm ci` on both sides), %d runs" % r["repeat"]),
                       ("code_only", "code-only redeploy (dependencies reused), %d runs" % r["redeploys"])):
        d = r[key]
        lines.append("| %s | %s | %s | %s (each pair: %s) |" % (
            title, seconds(d["local"]["push_to_answer_s"]), seconds(d["swarm"]["push_to_answer_s"]),
            "%.2f×" % d["ratio_of_medians"], ", ".join("%.2f" % x for x in d["pair_ratios"])))
    lines.append("| failed requests through %d code-only redeploys (goal 0) | **%d** of %d | **%d** of %d | – |" % (
        r["redeploys"], c["local"]["load"]["failed"], c["local"]["load"]["requests"], c["swarm"]["load"]["failed"],
        c["swarm"]["load"]["requests"]))

    def crash(d):
        again = seconds(d["serving_again_s"]) if d["serving_again_s"] else "–"
        return "%s; failed requests %s" % (again, ", ".join(map(str, d["failed_requests"])))
    lines.append("| web=1 killed → serving again (%d kills) | %s | %s | – |" % (
        len(k["swarm_web1"]["runs"]), crash(k["local_web1"]), crash(k["swarm_web1"])))
    lines.append("| web=2, one task killed: failed requests (the replacement task runs after) | – | **%s** (%s) | – |" % (
        ", ".join(map(str, k["swarm_web2"]["failed_requests"])), seconds(k["swarm_web2"]["replaced_s"])))
    lines += ["", "The local web's wait grows from kill to kill: the supervisor restarts a web that crashes again soon "
              "after a backoff (0, 2, 4 s ...). Swarm restarts a task after its restart delay (1 s), then the "
              "supervisor's watcher sees the new task's port and nginx is reloaded; with web=2 nginx passes the "
              "requests that meet the dead task to the other one meanwhile."]
    loads = [x["load"][0] for d in (f, c) for side in ("local", "swarm") for x in d[side]["runs"]]
    lines += ["", "%s During the runs the 1-minute load average was %.1f–%.1f: other benchmarks and tests shared the "
              "2 cores, so the seconds move from run to run; the failed-request counts do not depend on it." % (
                  conditions(r["machine"]), min(loads), max(loads)),
              "", "Machine: %s. Re-run: `python3 tests/bench/swarm.py` (needs `python3 tests/e2e/images.py` once for "
              "the base image)." % machine_line(r["machine"])]
    return lines


SSH_START, SSH_END = "<!-- bench-ssh:start -->", "<!-- bench-ssh:end -->"


def verdict(value, goal):
    """'met' or 'over': said plainly next to every number that has a goal."""
    return "met" if value <= goal else "**over**"


def ssh_section(r, local):
    """Deploys over real ssh to the e2e server image, against their floors, and under a GET every 10 ms."""
    m, d, u = r["machine"], r["deploys"], r["under_load"]
    stages = [("first_start", "first deploys"), ("code_only_start", "code-only"), ("load_start", "under load"),
              ("end", "end")]
    loads = ", ".join("%s %.1f" % (label, r["loadavg"][k]) for k, label in stages if k in r["loadavg"])
    server = "%s cores (%s); client %s; server %s, node %s, npm %s; tinyserv %s; %s" % (
        m["nproc"], m.get("cpu", "?"), r.get("client_python", "?"), r.get("server_python", "?"),
        r.get("server_node", "?"), r.get("server_npm", "?"), m.get("tinyserv", {}).get("commit", "?"), m["date"][:10])
    lines = ["### Deploys over ssh (the e2e server image)", "",
             "What: ssh_deploy.py pushes the express sample app from this machine over real ssh (%s; the client "
             "under %s, pushes through the ssh connection tinyserv shares) to %s, its ssh and apps' ports published "
             "on 127.0.0.1. Each deploy is timed from push start until the new release answers at the app's "
             "published port (through nginx), next to its floor in interleaved pairs: a `git push` over the same "
             "connection to a plain bare repository on the server whose post-receive hook checks the commit out "
             "(git archive | tar), runs `npm ci` when package.json or the lockfile changed since its last install "
             "(else links that install's node_modules), starts `npm start` on a published port and waits until it "
             "answers; the floor is push start until that first answer, seen from here. Median, min–max in "
             "brackets; the ratio is of the medians, each pair's own ratio in the next column. Goals: code-only "
             "redeploy ≤ 1.3× its floor, first deploy ≤ 1.1×, 0 failed requests under a GET every 10 ms." % (
                 r.get("ssh", "?"), r.get("client_python", "?"), r["server"]), "",
             "| what | tinyserv | floor | ratio | each pair | goal |", "|---|---:|---:|---:|---|---|"]
    for key, label, goal in (("first", "first deploy of a fresh app (npm ci, warm npm cache), %d runs" % r[
            "first_repeat"], 1.1), ("code_only", "code-only redeploy, %d runs" % r["repeat"], 1.3)):
        x = d[key]
        lines.append("| %s | %s | %s | %.2f× | %s | ≤ %.1f×: %s |" % (
            label, seconds(x["push_to_answer_s"]), seconds(x["floor"]["total_s"]), x["ratio"],
            ", ".join("%.2f" % v for v in x["pair_ratios"]), goal, verdict(x["ratio"], goal)))
    during, steady = u["during_redeploys"], u["steady"]
    lines.append("| failed requests, GET every 10 ms during %d code-only redeploys (until 1 s after each push) | "
                 "%d of %d | – | – | %s per redeploy | 0: %s |" % (
                     u["redeploys"], during["failed"], during["requests"], u["failed_per_redeploy"],
                     "met" if during["failed"] == 0 else "**over**"))
    lines.append("| latency p50 / p99 during them (steady state before: %.1f / %.1f ms) | %.1f / %.1f ms | – | – "
                 "| – | – |" % (steady["p50_ms"], steady["p99_ms"], during["p50_ms"], during["p99_ms"]))
    phases, first = d["code_only"]["phases_median_s"], d["first"]
    spent = "; ".join("%s %.2f s" % (k, phases[k]) for k in r.get("phase_names", phases) if phases.get(k) is not None)
    lines += ["", "Machine: %s." % server, "",
              "Where a code-only redeploy's time goes (medians, from the push's stamped lines): %s. First deploys: "
              "npm ci %.2f s inside tinyserv, %.2f s in the floor; without it, tinyserv %.2f s against the floor's "
              "%.2f s." % (spent, first["without_npm_ci"]["tinyserv_npm_ci_s"]["median"],
                           first["floor"]["npm_ci_s"]["median"], first["without_npm_ci"]["tinyserv_s"]["median"],
                           first["without_npm_ci"]["floor_s"]["median"])]
    if "server_npm_version_s" in r:
        lines[-1] += (" On the server, `npm --version` takes %.2f s and `node --version` %.2f s (median of 5, run "
                      "there between the deploys)." % (r["server_npm_version_s"], r["server_node_version_s"]))
    if local:
        ld = local["deploys"]
        lines += ["", "On localhost (deploy.py, %s, no ssh, the floor a local push): code-only %.2f× (%.2f s against "
                  "%.2f s), first deploy %.2f× (%.2f s against %.2f s). Over ssh: code-only %.2f s against a floor "
                  "of %.2f s." % (
                      local["machine"]["date"][:10], ld["code_only"]["ratio"],
                      ld["code_only"]["push_to_answer_s"]["median"], ld["code_only"]["floor"]["total_s"]["median"],
                      ld["first"]["ratio"], ld["first"]["push_to_answer_s"]["median"],
                      ld["first"]["floor"]["total_s"]["median"], d["code_only"]["push_to_answer_s"]["median"],
                      d["code_only"]["floor"]["total_s"]["median"])]
    lines += ["", "Load average (1 min) at each stage: %s. %s" % (loads, conditions(m))]
    return lines


def readonly_section(r):
    """Commands from a read-only install (bytecode cached per user) against a compiled install."""
    lines = ["### A read-only install against a compiled one", "",
             "What: readonly_install.py copies bin/ and lib/ into a root-owned directory with no bytecode (`chmod -R "
             "a-w`) and into a throwaway user's home, compiled with `python3 -m compileall`, deploys one generic app "
             "as that user (localhost, TINYSERV_REMOTE unset), then runs each command as that user from either copy, "
             "as whole processes in alternating pairs, %d pairs after one warm-up each (%s). *warm*: the per-user "
             "bytecode cache (~/.cache/tinyserv) kept, as for every run after a user's first; *cold*: emptied "
             "before each read-only run, as a user's first run, and every run before the cache existed. Median, "
             "min–max in brackets; the ratio is the median of each pair's. Goal: within 1.05× from the second run "
             "on (warm)." % (r["runs"], r.get("python", "?")), "",
             "| command | cache | read-only | compiled | ratio | goal | machine |", "|---|---|---:|---:|---:|---|---|"]
    ms = lambda s: "%.0f ms (%.0f–%.0f)" % (1000 * s["median"], 1000 * s["min"], 1000 * s["max"])  # noqa: E731
    for name, words in (("apps", "`tinyserv-remote apps`"), ("ps", "`tinyserv-remote ps APP`")):
        for kind in ("warm", "cold"):
            x = r["commands"][name][kind]
            goal = "≤ 1.05×: %s" % verdict(x["ratio_median_of_pairs"], 1.05) if kind == "warm" else "–"
            lines.append("| %s | %s | %s | %s | %.3f× | %s | %s |" % (
                words, kind, ms(x["readonly_s"]), ms(x["compiled_s"]), x["ratio_median_of_pairs"], goal,
                machine_line(r["machine"])))
    lines += ["", conditions(r["machine"])]
    second = r.get("second_timer")
    if second:
        lines += ["", "Timed again with a second timer, %s (load average %.1f–%.1f):" % (
            second["what"], min(second["loadavg"]), max(second["loadavg"])), "",
            "| command | cache | pairs | read-only wall | compiled wall | ratio, wall | ratio, CPU | goal |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
        span = lambda v, f: (f + " (" + f + "–" + f + ")") % (v[1], v[0], v[2])  # noqa: E731
        for name, words in (("apps", "`tinyserv-remote apps`"), ("ps", "`tinyserv-remote ps APP`")):
            for kind in ("warm", "cold"):
                x = second[kind][name]
                goal = "≤ 1.05×: %s" % verdict(x["A_over_B_wall"][1], 1.05) if kind == "warm" else "–"
                lines.append("| %s | %s | %d | %s s | %s s | %.3f× | %.3f× | %s |" % (
                    words, kind, x["pairs"], span(x["A_wall_s"], "%.3f"), span(x["B_wall_s"], "%.3f"),
                    x["A_over_B_wall"][1], x["A_over_B_cpu"][1], goal))
    return lines


def main():
    paths = sorted(glob.glob(os.path.join(RESULTS, "memory*.json")),
                   key=lambda p: (os.path.basename(p) != "memory.json", p))
    memory = [load(os.path.basename(p)[:-5]) for p in paths]
    deploy = load("deploy")
    noisy = load("noisy")
    cli = load("cli_latency")
    data = load("data")
    frontdoor = load("frontdoor")
    scale = [(label, load(name)) for name, label in SCALE_RUNS if load(name)]
    django = load("django")
    lines = ["<!-- Generated by tests/bench/tables.py from tests/bench/results/*.json; re-run the benchmarks to update. -->", ""]
    if frontdoor:
        lines += frontdoor_section(frontdoor) + [""]
    if scale:
        lines += scale_section(scale) + [""]
    if memory:
        lines += memory_section([m for m in memory if m]) + [""]
    if deploy:
        lines += deploy_section(deploy) + [""]
    if django:
        lines += django_section(django) + [""]
    if noisy:
        lines += noisy_section(noisy) + [""]
    if cli:
        lines += cli_section(cli) + [""]
    if data:
        lines += data_section(data) + [""]
    lines += ["Re-run: `python3 tests/bench/frontdoor.py`, `python3 tests/bench/memory.py`, "
              "`python3 tests/bench/deploy.py`, `python3 tests/bench/django.py`, "
              "`python3 tests/bench/noisy.py`, `python3 tests/bench/data.py`, `python3 tests/bench/scale.py`, "
              "`.tox/e2e/bin/python tests/bench/cli_latency.py`, then "
              "`/tmp/tinyserv-bench-venv/bin/python tests/bench/plot.py` (see tests/bench/README.md).", ""]
    text = "\n".join(lines)
    swarm = load("swarm")
    # The swarm and ssh tables have markers of their own on the page (their sections sit apart from the others).
    swarm_text = "\n".join(swarm_section(swarm) + [""]) if swarm else ""
    ssh, readonly = load("ssh_deploy"), load("readonly_install")
    ssh_lines = (ssh_section(ssh, deploy) + [""] if ssh else []) + (readonly_section(readonly) + [""] if readonly
                                                                      else [])
    ssh_lines += ["Re-run: `python3 tests/bench/ssh_deploy.py` (Docker and the docker SDK), "
                  "`python3 tests/bench/readonly_install.py` (as root), then `python3 tests/bench/tables.py`.", ""]
    ssh_text = "\n".join(["<!-- Generated by tests/bench/tables.py from tests/bench/results/ssh_deploy.json and "
                          "readonly_install.json. -->", ""] + ssh_lines) if ssh else ""
    with open(os.path.join(RESULTS, "README-tables.md"), "w") as f:
        f.write(text + "".join("\n" + part for part in (swarm_text, ssh_text) if part))
    update_benchmarks_page(text.replace("### ", "## "))
    if swarm_text:
        update_benchmarks_page(swarm_text.replace("### ", "## "), "<!-- bench-swarm:start -->",
                               "<!-- bench-swarm:end -->")
    if ssh_text:
        update_benchmarks_page(ssh_text.replace("### ", "## "), SSH_START, SSH_END)


def update_benchmarks_page(tables, start="<!-- bench:start -->", end="<!-- bench:end -->"):
    """Put the tables between the markers in docs/benchmarks.md (the page's own ## sections)."""
    with open(BENCHMARKS_PAGE, encoding="utf-8") as f:
        text = f.read()
    if start not in text or end not in text:
        # Said rather than skipped: a page that lost its markers would otherwise keep stale tables unnoticed.
        raise SystemExit("tables.py: %s has no %s ... %s markers; the tables are only in %s" % (
            BENCHMARKS_PAGE, start, end, os.path.join(RESULTS, "README-tables.md")))
    head, rest = text.split(start, 1)
    with open(BENCHMARKS_PAGE, "w", encoding="utf-8") as f:
        f.write(head + start + "\n" + tables + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    main()
