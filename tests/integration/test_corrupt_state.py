"""One app's damaged state file is that app's problem only: it is reported with the file's name, the rest goes on."""

import json
import os

import pytest

from support import describe, http_get, node_app

DAMAGED = [
    # (file of the damaged app, relative to $TINYSERV_ROOT; {app} and {build} are filled in)
    "releases/{app}.json",
    "apps/{app}/history.json",
    "apps/{app}/formation.json",
    "apps/{app}/builds/{build}.json",
    "apps/{app}/run/state.json",
]


@pytest.fixture(scope="module")
def two_apps(module_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("corrupt")
    damaged = module_server.new_app(base, node_app("damaged"), prefix="damaged")
    healthy = module_server.new_app(base, node_app("healthy"), prefix="healthy")
    for app in (damaged, healthy):
        module_server.push(app)
    return damaged, healthy


@pytest.mark.parametrize("contents", ["", '{"releases": "none", "quantity": []}'])
@pytest.mark.parametrize("template", DAMAGED)
def test_a_damaged_state_file_is_named_and_the_other_apps_go_on(module_server, two_apps, template, contents):
    server = module_server
    damaged, healthy = two_apps
    build = server.releases(damaged)[0]["build"]
    path = os.path.join(server.root, template.format(app=damaged.name, build=build))
    with open(path, "rb") as f:
        saved = f.read()
    try:
        with open(path, "w") as f:
            f.write(contents)
        listing = server.tinyserv("apps", "--json", cwd=server.root)
        apps = {a["name"]: a for a in json.loads(listing.stdout)}
        assert set(apps) >= {damaged.name, healthy.name}, describe(listing)
        assert apps[healthy.name]["state"] == "up", describe(listing)
        if apps[damaged.name]["state"] == "broken":
            assert path in apps[damaged.name]["error"] and "damaged" in apps[damaged.name]["error"], describe(listing)
        plain = server.tinyserv("apps", cwd=server.root)
        assert healthy.name in plain.stdout, describe(plain)
        ps = server.tinyserv("ps", "-a", damaged.name, cwd=server.root, check=False)
        assert "Traceback" not in ps.stderr, describe(ps)
        if ps.returncode != 0:
            assert ps.stderr.count("\n") == 1 and path in ps.stderr, describe(ps)
        assert server.tinyserv("ps", "-a", healthy.name, cwd=server.root).returncode == 0
        server.tinyserv("config:set", "-a", healthy.name, "TOUCHED=%d" % len(contents), cwd=server.root)
        assert http_get(server.url(healthy)) == (200, "healthy")
    finally:
        with open(path, "wb") as f:
            f.write(saved)
