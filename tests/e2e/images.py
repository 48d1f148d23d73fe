"""Docker images for the e2e tests: the Debian base and the servers built on it (docker/Dockerfile's stages).

Run as a script (`python3 tests/e2e/images.py`) to build them all ahead of a test run.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import docker
import docker.errors

BASE_IMAGE = "debian:bookworm"
SERVER_IMAGE = "tinyserv-e2e:latest"
BARE_IMAGE = "tinyserv-e2e-bare:latest"  # the Dockerfile's `bare` stage: a Debian server without tinyserv
SYSTEMD_IMAGE = "tinyserv-e2e-systemd:latest"  # its `systemd` stage: systemd as PID 1, root's ssh key, no deploy user
# The tag that keeps each stage's layers in the build cache (see build_server_image).
STAGE_IMAGES = {"server": SERVER_IMAGE, "bare": BARE_IMAGE, "systemd": SYSTEMD_IMAGE}
SUITE = "bookworm"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def log(message):
    """Print a progress line that pytest shows with -s and in failure reports."""
    print(f"[e2e images] {message}", file=sys.stderr, flush=True)


def ensure_base_image(client, tag=BASE_IMAGE):
    """Make sure `tag` exists locally: reuse it, pull it, or bootstrap it from the host's Debian mirror."""
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        log(f"pulling {tag}")
        client.images.pull(tag)
        return tag
    except docker.errors.APIError as error:
        log(f"cannot pull {tag} ({error.explanation}); bootstrapping it with debootstrap")
    bootstrap_image(tag, host_debian_mirror())
    return tag


def host_debian_mirror():
    """Return the URI the host's apt uses for the main archive of SUITE (never hard-coded in the repo)."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in re.split(r"\n\s*\n", f.read()):
                fields = deb822_fields(stanza)
                if "deb" in fields.get("types", "").split() and SUITE in fields.get("suites", "").split():
                    return fields["uris"].split()[0]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    words = re.sub(r"\[.*?\]", "", line).split()
                    if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                        return words[1]
    raise RuntimeError(f"no apt source for Debian {SUITE} on this host: cannot debootstrap {BASE_IMAGE}")


def deb822_fields(stanza):
    """Parse one deb822 stanza into {lower-case field: value} (continuation lines joined)."""
    fields, key = {}, None
    for line in stanza.splitlines():
        if line.startswith("#"):
            continue
        if line[:1].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def bootstrap_image(tag, mirror):
    """debootstrap a minbase rootfs from `mirror` and `docker import` it as `tag`."""
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap), and the base image cannot be pulled")
    rootfs = tempfile.mkdtemp(prefix="tinyserv-rootfs-", dir="/var/tmp")
    started = time.monotonic()
    try:
        log(f"debootstrap --variant=minbase {SUITE} {rootfs} <host mirror>")
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, rootfs, mirror],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed with exit code {result.returncode}:\n{result.stdout[-4000:]}")
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", tag],
                                  stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"importing the rootfs as {tag} failed: {imported.stderr}")
        log(f"made {tag} in {time.monotonic() - started:.0f} s")
    finally:
        remove_rootfs(rootfs)


def remove_rootfs(rootfs):
    """Delete a debootstrap directory, unmounting anything a failed run left mounted inside it first."""
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f]
    for mount in sorted((m for m in mounts if m.startswith(rootfs + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(rootfs, ignore_errors=True)


def build_server_image(client, authorized_keys, tag=SERVER_IMAGE, base=BASE_IMAGE, target="server"):
    """Build a stage of docker/Dockerfile with the repo's bin/ and lib/ and the given authorized_keys
    (target="server": tinyserv installed; "bare": the stage without tinyserv; "systemd": systemd as PID 1).

    It is also tagged with the stage's STAGE_IMAGES tag: that tag keeps its layers (the slow package installs)
    in the build cache after a run removes its own tag.
    """
    target = target or "server"
    keep = STAGE_IMAGES[target]
    old_id = image_id(client, keep)
    context = tempfile.mkdtemp(prefix="tinyserv-context-")
    started = time.monotonic()
    try:
        assemble_context(context, authorized_keys)
        log(f"building {tag} on {base}")
        lines = []
        for chunk in client.api.build(path=context, tag=tag, buildargs={"BASE_IMAGE": base}, target=target,
                                      rm=True, forcerm=True, decode=True):
            lines.append(chunk.get("stream", ""))
            if "error" in chunk:
                raise RuntimeError(f"building {tag} failed: {chunk['error']}\n{''.join(lines)[-6000:]}")
        log(f"built {tag} in {time.monotonic() - started:.0f} s")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    if tag != keep:
        client.images.get(tag).tag(keep)
    remove_replaced_image(client, old_id, image_id(client, keep))
    return tag


def assemble_context(context, authorized_keys):
    """Fill a build context: Dockerfile and its files, host CA bundle, authorized_keys, the repo's bin/ and lib/."""
    for name in os.listdir(os.path.join(REPO, "docker")):
        shutil.copy(os.path.join(REPO, "docker", name), context)
    ca_bundle = os.path.join(context, "ca-certificates.crt")
    if os.path.exists(HOST_CA_BUNDLE):
        shutil.copy(HOST_CA_BUNDLE, ca_bundle)
    else:
        open(ca_bundle, "w").close()
    with open(os.path.join(context, "authorized_keys"), "w") as f:
        f.write(authorized_keys)
    for part in ("bin", "lib"):
        source = os.path.join(REPO, part)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(context, part),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            os.mkdir(os.path.join(context, part))


def image_id(client, tag):
    """Return the id of image `tag`, or None."""
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def remove_replaced_image(client, old_id, new_id):
    """Remove the image a rebuild untagged, so every run does not leave one behind: only once no tag names it
    (another worker's run tag may: removing it by id would take that tag with it) and no container uses it."""
    if old_id and old_id != new_id:
        try:
            if not client.images.get(old_id).tags:
                client.images.remove(old_id)
        except docker.errors.APIError:  # ImageNotFound too
            pass


SWARM_BASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "swarm-bases")
SWARM_BASES = {"generic": "tinyserv-swarm-generic:bookworm", "python": "tinyserv-swarm-python:bookworm",
               "node": "tinyserv-swarm-node:bookworm"}


def ensure_swarm_bases(client):
    """The runtime base images a swarm app's generated Dockerfile starts from (tests/e2e/test_swarm.py), built from
    the Debian base when missing and kept tagged for later runs: no image registry is reachable."""
    ensure_base_image(client)
    missing = [name for name, tag in SWARM_BASES.items() if image_id(client, tag) is None]
    if missing:
        context = tempfile.mkdtemp(prefix="tinyserv-swarm-bases-")
        try:
            shutil.copy(os.path.join(SWARM_BASES_DIR, "Dockerfile"), context)
            bundle = os.path.join(context, "ca-certificates.crt")
            if os.path.exists(HOST_CA_BUNDLE):
                shutil.copy(HOST_CA_BUNDLE, bundle)
            else:
                open(bundle, "w").close()
            for name in missing:
                started = time.monotonic()
                log(f"building {SWARM_BASES[name]}")
                built = subprocess.run(["docker", "build", "-q", "--target", name, "--build-arg",
                                        "BASE_IMAGE=" + BASE_IMAGE, "-t", SWARM_BASES[name], context],
                                       capture_output=True, text=True, timeout=1800)
                if built.returncode:
                    raise RuntimeError(f"building {SWARM_BASES[name]} failed: {built.stderr[-4000:]}")
                log(f"built {SWARM_BASES[name]} in {time.monotonic() - started:.0f} s")
        finally:
            shutil.rmtree(context, ignore_errors=True)
    return SWARM_BASES


if __name__ == "__main__":
    docker_client = docker.from_env()
    ensure_base_image(docker_client)
    ensure_swarm_bases(docker_client)
    build_server_image(docker_client, "")
    build_server_image(docker_client, "", tag=SYSTEMD_IMAGE, target="systemd")
