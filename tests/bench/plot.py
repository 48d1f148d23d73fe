"""Plot tinyserv's own resident memory against the number of apps (bench/results/memory.png), and the cost of
each thing scale.py measures against the number of apps (bench/results/scale.png).

Reads tests/bench/results/memory*.json (written by memory.py) and scale*.json (scale.py), and needs matplotlib, which
stays out of the repository: install it into a throwaway venv, e.g.

    /usr/bin/python3 -m venv /tmp/tinyserv-bench-venv
    /tmp/tinyserv-bench-venv/bin/pip install matplotlib
    /tmp/tinyserv-bench-venv/bin/python tests/bench/plot.py
"""

import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load_all():
    """Every memory*.json, the default run (Debian's Python) first."""
    default = os.path.join(RESULTS, "memory.json")
    paths = sorted(glob.glob(os.path.join(RESULTS, "memory*.json")), key=lambda p: (p != default, p))
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def after_deploys(run):
    """(apps, RSS MB, PSS MB) of the rows measured while deploying, by app count."""
    rows = sorted((r for r in run["rows"] if "after deploys" in r["label"]), key=lambda r: r["apps"])
    return [r["apps"] for r in rows], [r["own_rss_mb"] for r in rows], [r["own_pss_mb"] for r in rows]


def python_name(machine):
    """'Python 3.11.2 (/usr/bin/python3)'; a pyenv interpreter is shortened to 'pyenv'."""
    path = machine["server_python"]
    return "%s (%s)" % (machine["server_python_version"], "pyenv" if ".pyenv" in path else path)


def main():
    runs = load_all()
    if not runs:
        raise SystemExit("no tests/bench/results/memory*.json: run bench/memory.py first")
    fig, ax = plt.subplots(figsize=(8, 5.6), dpi=110)
    colors = ["tab:green", "tab:blue", "tab:purple", "tab:orange"]
    top = runs[0]["goal_mb"]
    highest = max(range(len(runs)), key=lambda i: max(after_deploys(runs[i])[1]))
    for i, run in enumerate(runs):
        apps, rss, pss = after_deploys(run)
        name, color = python_name(run["machine"]), colors[i % len(colors)]
        ax.plot(apps, rss, marker="o", color=color, linewidth=2, label="RSS, %s" % name)
        ax.plot(apps, pss, marker="s", color=color, linestyle="--", alpha=0.7, label="PSS, %s" % name)
        for x, y in zip(apps, rss):
            ax.annotate("%.1f" % y, (x, y), textcoords="offset points", xytext=(0, 7 if i == highest else -15),
                        ha="center", fontsize=9, color=color,
                        bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
        booted = [r for r in run["rows"] if "after startup" in r["label"]]
        ax.plot([r["apps"] for r in booted], [r["own_rss_mb"] for r in booted], marker="x", markersize=11,
                color="black", linestyle="none", label="RSS after `startup` (fresh supervisor)" if i == 0 else None)
        top = max(top, max(rss))
    goal = runs[0]["goal_mb"]
    ax.axhline(goal, color="red", linestyle=":", linewidth=2, label="goal: %d MB with 50 apps" % goal)
    ax.set_xlabel("apps supervised (no-dependency node HTTP servers, deployed with git push)")
    ax.set_ylabel("tinyserv's own processes (supervisor + standby), MB")
    ax.set_ylim(0, top * 1.15)
    counts = sorted({a for r in runs for a in after_deploys(r)[0]})
    ax.set_xticks(counts)
    ax.set_xlim(0, counts[-1] * 1.06)
    m = runs[0]["machine"]
    ax.set_title("tinyserv resident memory vs number of apps\n%s cores, node %s, tinyserv %s, %s" % (
        m["nproc"], m["node"], m.get("tinyserv", {}).get("commit", "?"), m["date"][:10]), fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    out = os.path.join(RESULTS, "memory.png")
    fig.savefig(out)
    print("wrote %s" % os.path.relpath(out, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


SCALE_PANELS = [
    ("seconds", [("redeploy_push_s", "code-only redeploy"), ("config_set_s", "config:set"), ("ps_s", "ps"),
                 ("apps_s", "apps")]),
    ("seconds until every app answers", [("all_answer_after_startup_s", "after `startup`")]),
    ("% of one core", [("supervisor_idle_cpu_pct", "supervisor idle CPU")]),
    ("MB resident", [("supervisor_rss_mb", "supervisor"), ("own_rss_mb", "tinyserv's own"), ("nginx_rss_mb", "nginx")]),
]


def scale_plot():
    """bench/results/scale.png: each measure of scale.json (and the earlier runs, dashed and dotted) against N."""
    runs = [(label, json.load(open(os.path.join(RESULTS, name + ".json"))))
            for name, label in (("scale", "this version"), ("scale-d333bb7", "d333bb7"), ("scale-before", "before"))
            if os.path.exists(os.path.join(RESULTS, name + ".json"))]
    if not runs:
        return
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), dpi=110)
    colors = ["tab:green", "tab:blue", "tab:purple", "tab:orange"]
    for ax, (unit, series) in zip(axes.flat, SCALE_PANELS):
        for r, (label, run) in enumerate(runs):
            rows = sorted(run["rows"], key=lambda row: row["apps"])
            for i, (key, name) in enumerate(series):
                ax.plot([row["apps"] for row in rows], [row[key] for row in rows], marker="ox+"[min(r, 2)],
                        linestyle=("-", "--", ":")[min(r, 2)], color=colors[i % len(colors)],
                        label="%s (%s)" % (name, label))
        ax.set_xlabel("apps (python3 -S -m http.server behind nginx)")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    m = runs[0][1]["machine"]
    fig.suptitle("tinyserv's cost against the number of apps (localhost)\n%s cores, tinyserv %s, %s, load average "
                 "%.1f-%.1f" % (m["nproc"], m.get("tinyserv", {}).get("commit", "?"), m["date"][:10],
                                m.get("loadavg_at_start", 0), m.get("loadavg_at_end", 0)), fontsize=11)
    fig.tight_layout()
    out = os.path.join(RESULTS, "scale.png")
    fig.savefig(out)
    print("wrote %s" % os.path.relpath(out, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


if __name__ == "__main__":
    main()
    scale_plot()
