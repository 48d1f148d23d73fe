"""The original project's smoke scenario with sample-app/, end to end, with this machine as the server."""

import json
import os
import re

from localserver import sample_app_files, unique_name
from support import http_get, make_app


def test_the_sample_app_walkthrough_works_from_create_to_destroy(server, tmp_path):
    name = unique_name("sample")
    server.app_names.add(name)
    path = make_app(str(tmp_path / name), sample_app_files())

    created = server.tinyserv("apps:create", cwd=path)
    git_url = server.git("remote", "get-url", "tinyserv", cwd=path).stdout.strip()
    assert git_url == os.path.join(server.root, "repos", name + ".git")
    assert git_url in created.stdout
    assert name in server.tinyserv("apps", cwd=path).stdout.splitlines()

    pushed = server.git("push", "tinyserv", "main", cwd=path)
    assert "-----> Node.js app detected" in pushed.stderr + pushed.stdout
    assert "Released v2" in pushed.stderr + pushed.stdout

    ps = server.tinyserv("ps", cwd=path).stdout
    assert re.search(r"^web\.1\s+up\s", ps, re.M), ps

    port = json.loads(server.tinyserv("apps:info", "--json", cwd=path).stdout)["port"]
    url = f"http://127.0.0.1:{port}/"
    assert http_get(url) == (200, "foo is undefined\n")

    server.tinyserv("config:set", "foo=blargey", cwd=path)
    assert http_get(url) == (200, "foo is blargey\n")

    server.tinyserv("config:unset", "foo", cwd=path)
    assert http_get(url) == (200, "foo is undefined\n")

    logs = server.tinyserv("logs", cwd=path).stdout
    [web_port] = [i["port"] for i in json.loads(server.tinyserv("ps", "--json", cwd=path).stdout)["instances"]
                  if i["name"] == "web.1" and i["state"] != "draining"]
    assert (web_port != port) == server.front_door  # behind nginx, web listens on a port of its own
    assert re.search(rf"^\S+ web\.1: listening on port {web_port}$", logs, re.M), logs

    server.tinyserv("apps:destroy", "--confirm", name, cwd=path)
    assert server.app_processes(name) == []
    assert server.paths_naming(name) == []
    assert server.git("remote", cwd=path).stdout.split() == []
    assert name not in server.tinyserv("apps", cwd=path).stdout
    assert http_get(url) is None
