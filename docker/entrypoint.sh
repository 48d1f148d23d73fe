#!/bin/bash
# Container "boot": run tinyserv's boot hook as deploy, as a real boot would, then serve ssh.
# Runs under tini (PID 1), which reaps the app processes the hook leaves behind.
# ssh answers only once the hook has returned, so "ssh works" also means "startup has run".
set -u

mkdir -p /run/sshd   # /run is a tmpfs in docker-compose.yml, empty at every start

# docker-compose.swarm.yml: the host engine's socket is mounted; deploy may use it (the docker group is
# root-equivalent on the engine's machine, as the README says), and the test's own settings come first.
if [ -S /var/run/docker.sock ]; then
    gid=$(stat -c %g /var/run/docker.sock)
    getent group "$gid" >/dev/null || groupadd -g "$gid" hostdocker
    usermod -aG "$(getent group "$gid" | cut -d: -f1)" deploy
fi
if [ -n "${TINYSERV_E2E_TEST_ENV:-}" ]; then
    printf '%s\n' "$TINYSERV_E2E_TEST_ENV" > /home/deploy/.tinyserv-test-env
    chown deploy:deploy /home/deploy/.tinyserv-test-env
fi

# What systemd starts before tinyserv on a real server, once a test has set it up (tests/e2e/test_data.py).
if [ -e /etc/tinyserv-e2e/start-postgresql ]; then
    pg_ctlcluster 15 main start || echo "tinyserv-e2e: PostgreSQL did not start" >&2
fi

if ! su - deploy -c 'command -v tinyserv-remote' >/dev/null 2>&1; then
    # The bare image: `tinyserv server:install` has not put tinyserv there (yet).
    echo "tinyserv-e2e: boot: tinyserv is not installed for deploy: nothing to start"
else
    echo "tinyserv-e2e: boot: su - deploy -c 'tinyserv-remote startup'"
    if timeout 300 su - deploy -c 'tinyserv-remote startup' </dev/null; then
        echo "tinyserv-e2e: boot hook finished"
    else
        echo "tinyserv-e2e: boot hook failed with exit code $?" >&2
    fi
fi

exec /usr/sbin/sshd -D -e ${TINYSERV_E2E_SSH_PORT:+-p "$TINYSERV_E2E_SSH_PORT" -o ListenAddress=127.0.0.1}
