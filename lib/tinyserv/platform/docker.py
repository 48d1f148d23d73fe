"""The Docker engine as an external program: `docker` run with argument lists, its output parsed here.

tinyserv never links to the engine's API: it runs the `docker` client the deploy user (or root, in
root mode) can run, so the engine's access rules are the client's. Parsers are pure (text in, data
out) and raise nothing: a line they cannot read is left out.
"""

import collections
import json
import os
import re
import subprocess

from tinyserv.common.errors import TinyservError

LABEL = "tinyserv"  # every label tinyserv puts on a service, container or image starts with this
TIMEOUT = 120  # seconds an engine command that is not a build may take
HOST_ALIAS = "host.docker.internal"  # the host as a task sees it: --host/--add-host HOST_ALIAS:host-gateway
HOST_GATEWAY = "%s:host-gateway" % HOST_ALIAS

Task = collections.namedtuple("Task", "name node desired state age error ports")
Container = collections.namedtuple("Container", "app rollout type ports")


def run(args, timeout=TIMEOUT, env=None, check=True):
    """`docker ARGS...`: its stdout; raise with the engine's own last words when it fails."""
    try:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise TinyservError("the docker client is not installed on this server (apt install docker.io)") from None
    except subprocess.TimeoutExpired:
        raise TinyservError("docker %s took longer than %d s" % (args[0], timeout)) from None
    except OSError as e:
        raise TinyservError("cannot run docker: %s" % e.strerror) from None
    if check and result.returncode != 0:
        raise TinyservError("docker %s failed: %s" % (" ".join(args[:2]), last_words(result.stderr)))
    return result.stdout


def last_words(text):
    """The engine's error, in one line (its last non-empty line)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def labels(tag, app=None, rollout=None, ptype=None):
    """The labels tinyserv sets, as {name: value}: this root's tag, and the app, rollout and type when given."""
    found = {LABEL + ".root": tag}
    for key, value in (("app", app), ("rollout", rollout), ("type", ptype)):
        if value is not None:
            found["%s.%s" % (LABEL, key)] = value
    return found


def label_filters(found):
    """`--filter label=K=V` words for each label."""
    return [word for key, value in sorted(found.items()) for word in ("--filter", "label=%s=%s" % (key, value))]


PS_FORMAT = '{{.Label "tinyserv.app"}}\t{{.Label "tinyserv.rollout"}}\t{{.Label "tinyserv.type"}}\t{{.Ports}}'


def parse_containers(text):
    """`docker ps --format PS_FORMAT` lines -> [Container] (ports: the published host ports)."""
    found = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0]:
            found.append(Container(fields[0], fields[1], fields[2], published_ports(fields[3])))
    return found


def published_ports(text):
    """'0.0.0.0:49153->5000/tcp, [::]:49152->5000/tcp' -> (49153,): the IPv4 host ports, each once, in order.

    IPv6 mappings are left out: for a port it picks itself the engine (20.10) may give IPv6 another port than
    IPv4, even one an IPv4 mapping of an older task holds, and 127.0.0.1 reaches the IPv4 one.
    """
    ports = []
    for entry in (text or "").split(","):
        match = re.search(r"(\S*):(\d+)->", entry)
        if match and not match.group(1).startswith(("[", "::")) and int(match.group(2)) not in ports:
            ports.append(int(match.group(2)))
    return tuple(ports)


TASK_FORMAT = "{{.Name}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}"


def parse_tasks(text):
    """`docker service ps --format TASK_FORMAT` lines -> [Task], state lower-case and age as the engine says it."""
    tasks = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 6 or not fields[0]:
            continue
        state, age = current_state(fields[3])
        tasks.append(Task(fields[0].lstrip("\\_ ").strip(), fields[1], fields[2].lower(), state, age,
                          fields[4].strip().strip('"'), published_ports(fields[5])))
    return tasks


def load_json(text):
    """JSON the engine printed, or None when it is not (an engine that went away mid-answer)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_nodes(text):
    """`docker node inspect NODE...` JSON -> {node id: its address (Status.Addr)}."""
    found = {}
    for node in load_json(text) or []:
        if isinstance(node, dict) and node.get("ID") and (node.get("Status") or {}).get("Addr"):
            found[node["ID"]] = node["Status"]["Addr"]
    return found


def parse_remote_tasks(text, nodes, here):
    """`docker inspect TASK...` JSON -> [Container] of the running tasks on nodes other than here (this node's
    id), their ports "ADDRESS:PORT": each host-mode published port at its node's address (nodes: parse_nodes).

    One port per target port, the first: the engine lists a task's IPv4 binding before the IPv6 one, which may
    have another port (see published_ports). This node's tasks are left out: `docker ps` names their IPv4 port.
    """
    found = []
    for task in load_json(text) or []:
        if not isinstance(task, dict) or task.get("DesiredState") != "running":
            continue
        status = task.get("Status") or {}
        node = task.get("NodeID")
        if status.get("State") != "running" or node == here or node not in nodes:
            continue
        labels = ((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels") or {}
        targets, ports = set(), []
        for port in (status.get("PortStatus") or {}).get("Ports") or []:
            if port.get("PublishMode") == "host" and port.get("TargetPort") not in targets and port.get(
                    "PublishedPort"):
                targets.add(port.get("TargetPort"))
                ports.append("%s:%d" % (nodes[node], port["PublishedPort"]))
        if labels.get(LABEL + ".app"):
            found.append(Container(labels[LABEL + ".app"], labels.get(LABEL + ".rollout", ""),
                                   labels.get(LABEL + ".type", ""), tuple(ports)))
    return found


def node_ids(timeout=30):
    """The swarm's node ids (a manager's view; none when this engine is no manager)."""
    return run(["node", "ls", "-q"], timeout=timeout, check=False).split()


def several_nodes():
    """Has the swarm more nodes than this one (so tasks may run elsewhere)?"""
    return len(node_ids()) > 1


def remote_tasks(found, timeout=30):
    """[Container] of the running tasks labelled `found` ({label: value}) on the swarm's other nodes (none on a
    one-node swarm, where `docker ps` sees every task)."""
    nodes = node_ids(timeout)
    if len(nodes) < 2:
        return []
    here = run(["info", "--format", "{{.Swarm.NodeID}}"], timeout=timeout).strip()
    addresses = parse_nodes(run(["node", "inspect", *nodes], timeout=timeout))
    services = run(["service", "ls", "-q", *label_filters(found)], timeout=timeout).split()
    tasks = run(["service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", *services],
                timeout=timeout).split() if services else []
    wanted = {key.split(".", 1)[1]: value for key, value in found.items()}
    return [c for c in parse_remote_tasks(run(["inspect", *tasks], timeout=timeout), addresses, here)
            if all(getattr(c, key) == value for key, value in wanted.items() if key in ("app", "rollout", "type"))
            ] if tasks else []


def current_state(text):
    """'Running 5 minutes ago' -> ('running', '5 minutes'); 'Failed 2 seconds ago' -> ('failed', '2 seconds')."""
    words = text.split()
    if not words:
        return "unknown", ""
    age = " ".join(words[1:])
    if age.endswith(" ago"):
        age = age[:-len(" ago")]
    elif age.startswith("(") or not age:
        age = ""
    return words[0].lower(), age


AGE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400,
             "year": 365 * 86400}


def age_seconds(age):
    """'5 minutes' -> 300, 'About an hour' -> 3600, 'Less than a second' -> 0 (None: not an age)."""
    words = age.lower().replace("about ", "").split()
    if len(words) != 2 and not age.lower().startswith("less than"):
        return None
    if age.lower().startswith("less than"):
        return 0
    count = 1 if words[0] in ("a", "an") else int(words[0]) if words[0].isdigit() else None
    unit = AGE_UNITS.get(words[1].rstrip("s"))
    return None if count is None or unit is None else count * unit


def environment_words(env):
    """`--env KEY` words for env: the values travel in the docker client's environment, never its arguments."""
    return [word for key in sorted(env) for word in ("--env", key)]


def client_env(env):
    """The docker client's environment: ours (where DOCKER_HOST may be set), with the values --env KEY names."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "TINYSERV_INSTANCE"))}
    merged.update(env)
    return merged


def bridge_gateway():
    """The host's address on the engine's default bridge (where host-gateway points), or None."""
    return gateway_of(run(["network", "inspect", "bridge", "--format",
                           "{{range .IPAM.Config}}{{.Gateway}}|{{.Subnet}} {{end}}"], check=False))


def gateway_of(text):
    """The gateway from `{{.Gateway}}|{{.Subnet}}` pairs of a network's IPAM config; where the engine records only
    the subnet (it does for a default bridge it made afresh), the subnet's first address, which the engine gives
    the bridge. None if there is neither."""
    import ipaddress
    for pair in text.split():
        gateway, _, subnet = pair.partition("|")
        if gateway:
            return gateway
        try:
            network = ipaddress.ip_network(subnet)
        except ValueError:
            continue
        if network.version == 4 and network.num_addresses > 2:
            return str(network.network_address + 1)
    return None
