"""Helpers shared by every test layer: running commands, polling, HTTP, making app repositories."""

import http.client
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request


def run(args, *, cwd=None, env=None, input=None, check=True, timeout=120):
    """Run `args` (a list) and return the CompletedProcess with text output; on failure show everything."""
    __tracebackhide__ = True
    try:
        result = subprocess.run(args, cwd=cwd, env=env, input=input, capture_output=True, text=True,
                                timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"timed out after {timeout} s: {shlex.join(map(str, args))}\n"
                             f"--- stdout ---\n{_text(error.stdout)}\n--- stderr ---\n{_text(error.stderr)}") from None
    if check and result.returncode != 0:
        raise AssertionError(describe(result))
    return result


def describe(result):
    """Return a CompletedProcess as text: command, exit code, stdout and stderr."""
    return (f"command: {shlex.join(map(str, result.args))}\nexit code: {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")


def _text(output):
    """Decode what TimeoutExpired captured (bytes, str or None)."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def wait_until(predicate, timeout, interval=0.1, message="condition"):
    """Call `predicate` until it returns something truthy and return that; fail after `timeout` seconds."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def http_get(url, timeout=2):
    """GET `url` and return (status, body text), or None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def http_answer(port, path="/", host=None, headers=None, timeout=10):
    """(status, body, headers) of GET path on 127.0.0.1:port, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}, **({"Host": host} if host else {})))
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace"), dict(response.getheaders())
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


class Loader:
    """GETs 127.0.0.1:port every 10 ms in a thread, counting answers that are not 200 (and what they were)."""

    def __init__(self, port):
        self.port = port
        self.ok = 0
        self.failed = []
        self.bodies = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopped.is_set():
            answer = http_answer(self.port)
            if answer and answer[0] == 200:
                self.ok += 1
                self.bodies.add(answer[1].split()[0])
            else:
                self.failed.append(answer and answer[:2])
            self.stopped.wait(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(30)


def wait_for_http(url, contains=None, timeout=30):
    """Poll `url` until it answers (with `contains` in the body, if given); return (status, body)."""
    def answered():
        response = http_get(url)
        if response and (contains is None or contains in response[1]):
            return response
        return None
    what = f"{url} to answer" + (f" with {contains!r}" if contains is not None else "")
    return wait_until(answered, timeout, interval=0.2, message=what)


def make_app(path, files):
    """Create a git repository at `path` on branch main holding `files` ({name: text}), committed; return path."""
    os.makedirs(path, exist_ok=True)
    run(["git", "init", "-q", "-b", "main"], cwd=path)
    run(["git", "config", "user.name", "Tinyserv Tests"], cwd=path)
    run(["git", "config", "user.email", "tests@tinyserv.invalid"], cwd=path)
    for name, text in files.items():
        file_path = os.path.join(path, name)
        os.makedirs(os.path.dirname(file_path), exist_ok=True)
        with open(file_path, "w") as f:
            f.write(text)
    run(["git", "add", "-A"], cwd=path)
    run(["git", "commit", "-q", "-m", "app"], cwd=path)
    return path


def default_signals():
    """In a child: SIGINT and SIGHUP do what they do for a command started from a terminal, even when whoever
    runs the tests ignores them (nohup, a background job of a script) and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


class Running:
    """A command started in a session of its own, its output (stdout and stderr) read as it comes.

    For tests that act in the middle of a command: wait_for(text), then signal or kill it, then finish().
    """

    def __init__(self, args, *, cwd=None, env=None):
        self.args = args
        self.read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=write_fd,
                                     stderr=write_fd, start_new_session=True, preexec_fn=default_signals)
        os.close(write_fd)
        self.output = ""

    def _read(self, timeout):
        ready, _, _ = select.select([self.read_fd], [], [], timeout)
        if ready:
            self.output += os.read(self.read_fd, 65536).decode(errors="replace")

    def wait_for(self, text, timeout=90):
        """Read the output until text appears in it; fail (showing the output) if it ends or times out first."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while text not in self.output:
            ended = self.proc.poll() is not None
            if ended or time.monotonic() > deadline:
                self._read(0)
                if text in self.output:
                    break
                raise AssertionError(f"{shlex.join(map(str, self.args))} did not print {text!r} "
                                     f"({'exit code %s' % self.proc.returncode if ended else 'timed out'}):\n"
                                     f"{self.output}")
            self._read(0.05)

    def signal_group(self, sig):
        """What a terminal does on Ctrl-C (SIGINT) or a hang-up (SIGHUP): signal the whole process group."""
        os.killpg(self.proc.pid, sig)

    def finish(self, timeout=120):
        """The exit code, once the command has ended (reading what it still prints)."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{shlex.join(map(str, self.args))} did not end:\n{self.output}")
            self._read(0.05)
        self._read(0)
        os.close(self.read_fd)
        return self.proc.returncode


def port_is_free(port):
    """Can we bind port on every interface (what tinyserv's own allocation checks)?"""
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def package_json(dependencies=None):
    """A package.json for a Node.js app; without dependencies `npm install` needs no registry."""
    return json.dumps({"name": "tinyserv-test-app", "version": "1.0.0", "private": True,
                       "dependencies": dependencies or {}}, indent=2) + "\n"


def node_source(body):
    """The one Node.js app every layer pushes: it answers every request with `body` (a JavaScript expression)
    as text/plain and logs its port."""
    return ('require("http").createServer((req, res) => { res.setHeader("Content-Type", "text/plain"); '
            'res.end(%s); })\n'
            '  .listen(process.env.PORT, () => console.log("listening on port " + process.env.PORT));\n' % body)


def node_app(message, procfile=None, extra=None, main="server.js"):
    """Files of a node app without dependencies whose web answers `message` and logs its port."""
    files = {"package.json": package_json(), "Procfile": procfile or "web: node %s\n" % main,
             main: node_source(json.dumps(message))}
    files.update(extra or {})
    return files

