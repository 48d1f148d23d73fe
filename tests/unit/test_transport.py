"""transport.py: the one quoting function, TINYSERV_REMOTE, ssh argument lists and errors."""

import os
import pathlib
import shlex
import shutil
import stat
import subprocess
import tempfile

import pytest

from tinyserv.cli import transport
from tinyserv.common.errors import TinyservError
from tinyserv.cli.transport import Remote, command_line, parse_remote, remote_error

NASTY_WORDS = [
    "plain",
    "two words",
    "",
    " leading and trailing ",
    "it's",
    '"double"',
    "'single' and \"double\"",
    "$HOME",
    "${PATH}",
    "$(id)",
    "`id`",
    "back\\slash\\",
    "\\n",
    "line one\nline two",
    "\n",
    "tab\there",
    "héllo ⬢ 日本",
    "a;b && c || d | e",
    "*",
    "~",
    "#not a comment",
    "-n",
    "--",
    "!",
    "{a,b}",
    "a=b",
    "<in >out 2>&1",
]


def echo_through_bash(words):
    """What bash receives as separate arguments when it runs command_line(words)."""
    result = subprocess.run(["bash", "-c", "printf '%s\\0' " + command_line(words)],
                            capture_output=True, check=True)
    return result.stdout.decode("utf-8").split("\0")[:-1]


@pytest.mark.parametrize("word", NASTY_WORDS)
def test_command_line_brings_each_word_through_bash_unchanged(word):
    assert echo_through_bash(["before", word, "after"]) == ["before", word, "after"]


def test_command_line_brings_all_words_through_bash_together():
    assert echo_through_bash(NASTY_WORDS) == NASTY_WORDS


def test_command_line_turns_numbers_into_words():
    assert command_line(["logs", "-n", 5]) == "logs -n 5"


@pytest.mark.parametrize("spec, expected", [
    (None, (None, None)),
    ("", (None, None)),
    ("localhost", (None, None)),
    ("host", ("host", None)),
    ("user@host", ("user@host", None)),
    ("deploy@example.com", ("deploy@example.com", None)),
    ("ssh://host", ("host", None)),
    ("ssh://user@host", ("user@host", None)),
    ("ssh://user@host:2222", ("user@host", 2222)),
    ("ssh://user@host:2222/", ("user@host", 2222)),
    ("ssh://host:22", ("host", 22)),
])
def test_parse_remote_understands_every_documented_form(spec, expected):
    assert parse_remote(spec) == expected


@pytest.mark.parametrize("spec", [
    "ssh://",
    "ssh://user@host/path",
    "ssh://host:2222/x",
    "ssh://host:abc",
    "ssh://host:99999",
    "-oProxyCommand=touch /tmp/pwned",
    "user@host name",
    "user@host\n",
    " host",
])
def test_parse_remote_refuses_bad_specs_with_one_error(spec):
    with pytest.raises(TinyservError, match="TINYSERV_REMOTE"):
        parse_remote(spec)


def test_remote_is_local_without_tinyserv_remote():
    assert Remote({}).local and Remote({"TINYSERV_REMOTE": "localhost"}).local
    assert not Remote({"TINYSERV_REMOTE": "user@host"}).local


def test_a_local_remote_runs_tinyserv_remote_with_bash():
    argv = Remote({}).argv(["config:set", "myapp", "it's"])
    assert argv[:2] == ["bash", "-c"]
    assert shlex.split(argv[2]) == [transport.LOCAL_REMOTE, "config:set", "myapp", "it's"]
    assert transport.LOCAL_REMOTE.endswith(os.path.join("bin", "tinyserv-remote"))


@pytest.mark.parametrize("environ, tty, expected", [
    ({"TINYSERV_SSH_REUSE": "0", "TINYSERV_REMOTE": "deploy@host"}, False,
     ["ssh", "--", "deploy@host", "tinyserv-remote logs myapp -n 5"]),
    ({"TINYSERV_SSH_REUSE": "0", "TINYSERV_REMOTE": "deploy@host"}, True,
     ["ssh", "-t", "--", "deploy@host", "tinyserv-remote logs myapp -n 5"]),
    ({"TINYSERV_SSH_REUSE": "0", "TINYSERV_REMOTE": "ssh://deploy@host:2222"}, False,
     ["ssh", "-p", "2222", "--", "deploy@host", "tinyserv-remote logs myapp -n 5"]),
    ({"TINYSERV_SSH_REUSE": "0", "TINYSERV_REMOTE": "ssh://deploy@host:2222"}, True,
     ["ssh", "-t", "-p", "2222", "--", "deploy@host", "tinyserv-remote logs myapp -n 5"]),
    ({"TINYSERV_SSH_REUSE": "0", "TINYSERV_REMOTE": "host", "GIT_SSH_COMMAND": "ssh -i '/keys/my key' -o StrictHostKeyChecking=no"}, False,
     ["ssh", "-i", "/keys/my key", "-o", "StrictHostKeyChecking=no", "--", "host", "tinyserv-remote logs myapp -n 5"]),
    ({"TINYSERV_SSH_REUSE": "0", "TINYSERV_REMOTE": "host", "GIT_SSH_COMMAND": ""}, False,
     ["ssh", "--", "host", "tinyserv-remote logs myapp -n 5"]),
])
def test_ssh_argv_puts_options_before_the_host_and_quotes_the_command(environ, tty, expected):
    assert Remote(environ).argv(["logs", "myapp", "-n", "5"], tty=tty) == expected


def test_ssh_argv_quotes_words_for_the_remote_shell():
    argv = Remote({"TINYSERV_REMOTE": "host", "TINYSERV_SSH_REUSE": "0"}).argv(
        ["run", "myapp", "--", "echo", "$HOME; rm -rf /"])
    assert shlex.split(argv[-1]) == ["tinyserv-remote", "run", "myapp", "--", "echo", "$HOME; rm -rf /"]


@pytest.mark.parametrize("spec, expected", [
    ("", "/srv/tinyserv/repos/myapp.git"),
    ("localhost", "/srv/tinyserv/repos/myapp.git"),
    ("deploy@host", "deploy@host:/srv/tinyserv/repos/myapp.git"),
    ("host", "host:/srv/tinyserv/repos/myapp.git"),
    ("ssh://deploy@host:2222", "ssh://deploy@host:2222/srv/tinyserv/repos/myapp.git"),
    ("ssh://deploy@host", "deploy@host:/srv/tinyserv/repos/myapp.git"),
])
def test_git_url_is_what_git_push_understands(spec, expected):
    assert Remote({"TINYSERV_REMOTE": spec}).git_url("/srv/tinyserv/repos/myapp.git") == expected


@pytest.mark.parametrize("spec, expected", [
    ("", "localhost"),
    ("deploy@example.com", "example.com"),
    ("example.com", "example.com"),
    ("ssh://deploy@example.com:2222", "example.com"),
])
def test_web_host_is_the_host_without_user_or_port(spec, expected):
    assert Remote({"TINYSERV_REMOTE": spec}).web_host() == expected


@pytest.mark.parametrize("stderr, code, expected", [
    ("tinyserv: no app named 'x'\n", 1, "no app named 'x'"),
    ("some warning\ntinyserv: it broke\n\n", 1, "it broke"),
    ("Traceback...\nValueError: boom\n", 1, "ValueError: boom"),
    ("", 3, "tinyserv-remote failed (exit 3)"),
    (None, 2, "tinyserv-remote failed (exit 2)"),
    ("  \n\n", 1, "tinyserv-remote failed (exit 1)"),
])
def test_remote_error_is_the_remote_last_line_without_our_prefix(stderr, code, expected):
    assert remote_error(stderr, code) == expected


def test_ssh_exit_255_is_reported_as_not_reaching_the_host():
    remote = Remote({"TINYSERV_REMOTE": "deploy@host"})
    with pytest.raises(TinyservError) as caught:
        remote.check_reached(255, "debug\nssh: connect to host host port 22: Connection refused\n")
    assert str(caught.value) == "cannot reach deploy@host over ssh: ssh: connect to host host port 22: Connection refused"


def test_ssh_exit_255_without_output_still_names_the_host():
    with pytest.raises(TinyservError) as caught:
        Remote({"TINYSERV_REMOTE": "deploy@host"}).check_reached(255)
    assert str(caught.value) == "cannot reach deploy@host over ssh"


@pytest.mark.parametrize("environ, code", [
    ({"TINYSERV_REMOTE": "deploy@host"}, 1),
    ({"TINYSERV_REMOTE": "deploy@host"}, 0),
    ({}, 255),
])
def test_other_exit_codes_are_not_blamed_on_ssh(environ, code):
    Remote(environ).check_reached(code, "tinyserv: whatever")


@pytest.fixture
def fake_ssh(tmp_path):
    """Make GIT_SSH_COMMAND a script with the given body; return the Remote that uses it."""
    def make(body):
        script = tmp_path / "fake ssh"
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return Remote({"TINYSERV_REMOTE": "deploy@host", "GIT_SSH_COMMAND": shlex.quote(str(script))})
    return make


def test_call_sends_values_as_json_on_stdin_and_reads_json_back(fake_ssh):
    remote = fake_ssh("cat")
    data = {"vars": {"MSG": "it's \"quoted\" $HOME\nline ⬢"}, "by": "me@here"}
    assert remote.call(["config:set", "myapp"], data) == data


def test_call_sends_an_empty_object_without_data(fake_ssh):
    assert fake_ssh("cat").call(["apps"]) == {}


def test_call_passes_the_quoted_command_as_ssh_last_argument(fake_ssh):
    remote = fake_ssh('for a; do last="$a"; done; printf \'{"cmd": "%s"}\' "$last"')
    assert remote.call(["ps", "myapp"]) == {"cmd": "tinyserv-remote ps myapp"}


def test_call_raises_the_remote_one_line_error(fake_ssh):
    with pytest.raises(TinyservError) as caught:
        fake_ssh("echo \"tinyserv: no app named 'x'\" >&2; exit 1").call(["ps", "x"])
    assert str(caught.value) == "no app named 'x'"


def test_call_reports_ssh_failures_apart(fake_ssh):
    with pytest.raises(TinyservError, match="^cannot reach deploy@host over ssh: ssh: Could not resolve"):
        fake_ssh("echo 'ssh: Could not resolve hostname host' >&2; exit 255").call(["apps"])


def test_call_refuses_an_answer_that_is_not_json(fake_ssh):
    with pytest.raises(TinyservError, match="unexpected answer from tinyserv-remote: 'hello"):
        fake_ssh("echo hello").call(["apps"])


def test_call_says_when_ssh_cannot_be_run(tmp_path):
    remote = Remote({"TINYSERV_REMOTE": "host", "GIT_SSH_COMMAND": str(tmp_path / "no-such-ssh")})
    with pytest.raises(TinyservError, match="cannot run .*no-such-ssh"):
        remote.call(["apps"])


def test_stream_returns_the_remote_exit_code(fake_ssh):
    assert fake_ssh("exit 7").stream(["run", "myapp", "--", "false"]) == 7



@pytest.mark.parametrize("url, server", [
    ("ssh://deploy@127.0.0.1:2222/home/deploy/tinyserv/repos/app.git", ("ssh://deploy@127.0.0.1:2222", None)),
    ("ssh://deploy@[::1]:22/srv/t/repos/app.git", ("ssh://deploy@[::1]:22", None)),
    ("deploy@example.org:/home/deploy/tinyserv/repos/app.git", ("deploy@example.org", None)),
    ("vps:/srv/tinyserv/repos/app.git", ("vps", None)),
    ("/home/me/.tinyserv/repos/app.git", ("localhost", "/home/me/.tinyserv")),
    ("/home/me/.tinyserv/repos/app.git/", ("localhost", "/home/me/.tinyserv")),
])
def test_the_server_of_an_app_is_read_from_its_git_remotes_url(url, server):
    assert transport.server_of(url) == server


def test_a_local_server_named_by_its_repository_path_runs_with_that_root():
    remote = Remote.for_url("/srv/other-root/repos/app.git", {"TINYSERV_ROOT": "/somewhere/else", "PATH": "/bin"})
    assert remote.local and remote.env["TINYSERV_ROOT"] == "/srv/other-root"
    assert Remote.for_url("deploy@host:/srv/t/repos/app.git", {"PATH": "/bin"}).env is None


@pytest.mark.parametrize("spec, git_url, web_host", [
    ("ssh://deploy@[::1]:2222", "ssh://deploy@[::1]:2222/srv/t/repos/a.git", "[::1]"),
    ("ssh://deploy@[2001:db8::5]", "ssh://deploy@[2001:db8::5]/srv/t/repos/a.git", "[2001:db8::5]"),
    ("ssh://deploy@host:2222", "ssh://deploy@host:2222/srv/t/repos/a.git", "host"),
])
def test_ipv6_literal_hosts_are_bracketed_in_urls(spec, git_url, web_host):
    remote = Remote({"TINYSERV_REMOTE": spec})
    assert (remote.git_url("/srv/t/repos/a.git"), remote.web_host()) == (git_url, web_host)


# --- one shared ssh connection between commands ---------------------------------------------------------

NO_SHARING_CONFIG = "host h\nuser deploy\ncontrolmaster false\ncontrolpersist no\n"


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path: socket paths must fit in about 100 bytes."""
    path = tempfile.mkdtemp(prefix="ts-", dir="/tmp")
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def sharing_remote(tmp_path, environ=None, config=NO_SHARING_CONFIG):
    """A Remote whose `ssh -G` answers config (None: this ssh cannot say), with a private runtime dir; the
    argument lists asked of `ssh -G` are collected in .probed."""
    probed = []

    def probe(argv):
        probed.append(argv)
        return config
    env = {"TINYSERV_REMOTE": "ssh://deploy@h:2222", "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    remote = Remote(dict(env, **(environ or {})), probe=probe)
    remote.probed = probed
    return remote


def test_commands_share_one_ssh_connection_in_a_private_directory(short_tmp):
    remote = sharing_remote(short_tmp)
    argv = remote.argv(["ps", "myapp"])
    directory = short_tmp / "tinyserv-ssh"
    assert argv == ["ssh", "-p", "2222", "-o", "ControlMaster=auto",
                    "-o", "ControlPath=%s/%s" % (directory, remote.connection_name()),
                    "-o", "ControlPersist=600", "--", "deploy@h", "tinyserv-remote ps myapp"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert remote.probed == [["ssh", "-G", "-p", "2222", "--", "deploy@h"]]


def test_commands_with_another_key_never_share_a_connection_another_key_opened(short_tmp):
    plain = sharing_remote(short_tmp)
    keyed = sharing_remote(short_tmp, {"GIT_SSH_COMMAND": "ssh -i /home/me/.ssh/deploy_ci"})
    other_port = Remote({"TINYSERV_REMOTE": "ssh://deploy@h:2223", "XDG_RUNTIME_DIR": str(short_tmp)})
    names = {plain.connection_name(), keyed.connection_name(), other_port.connection_name()}
    assert len(names) == 3 and all(len(n) == 40 for n in names)
    assert sharing_remote(short_tmp).connection_name() == plain.connection_name()


def test_ssh_is_asked_about_the_users_configuration_once_per_invocation(short_tmp):
    remote = sharing_remote(short_tmp)
    remote.argv(["ps", "a"])
    remote.argv(["logs", "a"], tty=True)
    assert len(remote.probed) == 1


@pytest.mark.parametrize("config", [
    "host h\ncontrolmaster auto\n",
    "host h\ncontrolmaster true\n",
    "host h\ncontrolmaster false\ncontrolpath /home/me/.ssh/cm-%C\n",
    None,  # an ssh that does not understand -G
])
def test_the_users_own_ssh_configuration_decides_when_it_says_anything(short_tmp, config):
    remote = sharing_remote(short_tmp, config=config)
    assert remote.argv(["ps", "a"]) == ["ssh", "-p", "2222", "--", "deploy@h", "tinyserv-remote ps a"]


@pytest.mark.parametrize("ssh", [
    "ssh -S /tmp/cm",
    "ssh -M",
    "ssh -o ControlMaster=no",
    "ssh -oControlPath=none",
    "ssh -i key -o controlpersist=5",
    "plink",
    "/usr/local/bin/my-ssh-wrapper",
])
def test_an_ssh_command_that_decides_sharing_itself_or_is_not_openssh_is_left_alone(short_tmp, ssh):
    remote = sharing_remote(short_tmp, {"GIT_SSH_COMMAND": ssh})
    assert "ControlMaster=auto" not in remote.argv(["ps", "a"]) and remote.probed == []


@pytest.mark.parametrize("ssh", ["ssh -i key -o StrictHostKeyChecking=no", "/usr/bin/ssh -4 -v", "ssh -p22 -l me"])
def test_ordinary_ssh_options_do_not_stop_sharing(short_tmp, ssh):
    assert "ControlMaster=auto" in sharing_remote(short_tmp, {"GIT_SSH_COMMAND": ssh}).argv(["ps", "a"])


def test_tinyserv_ssh_reuse_0_turns_sharing_off_without_asking_ssh(short_tmp):
    remote = sharing_remote(short_tmp, {"TINYSERV_SSH_REUSE": "0"})
    assert "ControlMaster=auto" not in remote.argv(["ps", "a"]) and remote.probed == []


def test_a_local_server_never_shares_or_asks_ssh(short_tmp):
    remote = sharing_remote(short_tmp, {"TINYSERV_REMOTE": "localhost"})
    assert remote.argv(["ps", "a"])[0] == "bash" and remote.sharing() == [] and remote.probed == []


def test_the_control_directory_falls_back_when_the_runtime_directory_is_too_long_for_a_socket(short_tmp):
    home = short_tmp / "home"
    assert transport.control_dir({"XDG_RUNTIME_DIR": str(short_tmp / ("x" * 60)), "HOME": str(home)}) == str(
        home / ".cache" / "tinyserv" / "ssh")


def test_the_control_directory_falls_back_when_the_runtime_one_is_a_symlink(short_tmp):
    target = short_tmp / "target"
    target.mkdir()
    (short_tmp / "run").mkdir()
    (short_tmp / "run" / "tinyserv-ssh").symlink_to(target)
    home = short_tmp / "home"
    assert transport.control_dir({"XDG_RUNTIME_DIR": str(short_tmp / "run"), "HOME": str(home)}) == str(
        home / ".cache" / "tinyserv" / "ssh")


def test_a_control_directory_made_readable_by_others_is_closed_again(short_tmp):
    directory = short_tmp / "tinyserv-ssh"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    assert transport.control_dir({"XDG_RUNTIME_DIR": str(short_tmp)}) == str(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_git_gets_the_same_sharing_options_when_it_would_run_plain_ssh(short_tmp):
    remote = sharing_remote(short_tmp)
    assert shlex.split(remote.git_ssh_command()) == ["ssh"] + remote.sharing()
    assert sharing_remote(short_tmp, {"GIT_SSH_COMMAND": "ssh -i key"}).git_ssh_command() is None
    assert sharing_remote(short_tmp, {"TINYSERV_SSH_REUSE": "0"}).git_ssh_command() is None


def test_a_call_through_a_broken_shared_connection_is_tried_once_without_it(short_tmp):
    log = short_tmp / "calls"
    script = short_tmp / "ssh"
    script.write_text('#!/bin/sh\necho "$*" >> %s\ncase "$*" in *ControlMaster*) '
                      'echo "mux_client_request_session: read from master failed: Broken pipe" >&2; exit 255;; esac\n'
                      'echo \'{"ok": 1}\'\n' % shlex.quote(str(log)))
    script.chmod(0o755)
    remote = sharing_remote(short_tmp, {"GIT_SSH_COMMAND": str(script)})
    assert remote.call(["apps"]) == {"ok": 1}
    first, second = log.read_text().splitlines()
    assert "ControlMaster=auto" in first and "ControlMaster" not in second


def test_a_server_refusing_us_is_not_retried(short_tmp):
    script = short_tmp / "ssh"
    script.write_text('#!/bin/sh\necho x >> %s/calls\necho "Permission denied (publickey)." >&2\nexit 255\n' % short_tmp)
    script.chmod(0o755)
    with pytest.raises(TinyservError, match="cannot reach deploy@h over ssh: Permission denied"):
        sharing_remote(short_tmp, {"GIT_SSH_COMMAND": str(script)}).call(["apps"])
    assert (short_tmp / "calls").read_text() == "x\n"


def test_the_decision_about_sharing_is_kept_while_the_ssh_configuration_stays_the_same(short_tmp):
    home = short_tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n")
    first = sharing_remote(short_tmp, {"HOME": str(home)})
    assert "ControlMaster=auto" in first.argv(["ps", "a"]) and len(first.probed) == 1
    again = sharing_remote(short_tmp, {"HOME": str(home)})
    assert "ControlMaster=auto" in again.argv(["ps", "a"]) and again.probed == []  # no `ssh -G` this time
    (home / ".ssh" / "config").write_text("Host *\n  ControlMaster auto\n  ControlPath ~/.ssh/cm-%C\n")
    changed = sharing_remote(short_tmp, {"HOME": str(home)}, config="host h\ncontrolmaster auto\n")
    assert "ControlMaster=auto" not in changed.argv(["ps", "a"]) and len(changed.probed) == 1


def test_a_damaged_saved_decision_is_asked_again(short_tmp):
    remote = sharing_remote(short_tmp)
    remote.argv(["ps", "a"])
    for saved in (short_tmp / "tinyserv-ssh").glob("decided-*"):
        saved.write_text("{not json")
    again = sharing_remote(short_tmp)
    assert "ControlMaster=auto" in again.argv(["ps", "a"]) and len(again.probed) == 1


def test_old_saved_decisions_are_removed_when_a_new_one_is_saved(short_tmp):
    sharing_remote(short_tmp).argv(["ps", "a"])
    directory = short_tmp / "tinyserv-ssh"
    old = directory / "decided-0000dead"
    old.write_text("{}")
    os.utime(old, (1, 1))
    sharing_remote(short_tmp, {"TINYSERV_REMOTE": "other"}).argv(["ps", "a"])
    assert not old.exists() and len(list(directory.glob("decided-*"))) == 2
