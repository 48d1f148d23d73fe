"""completion.py: bash and zsh completion made from the command table; bash's is run for real."""

import subprocess

import pytest

from tinyserv.common import commands
from tinyserv.cli import completion


def complete_in_bash(line, tmp_path):
    """What bash's completion offers with the cursor at the end of line."""
    script = tmp_path / "c.bash"
    script.write_text(completion.bash())
    result = subprocess.run(["bash", "-c", 'source "$1"; COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; _tinyserv; '
                             'printf "%s\\n" "${COMPREPLY[@]}"', "bash", str(script), line],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.parametrize("line, expected", [
    ("tinyserv ", [c.name for c in commands.client_commands()]),
    ("tinyserv apps:c", ["create"]),
    ("tinyserv config:", ["get", "set", "unset", "pull", "push"]),
    ("tinyserv -a shop ps:s", ["scale", "stop", "start"]),
    ("tinyserv ps --", ["--app", "--remote", "--json"]),
    ("tinyserv -r staging ps:scale -", ["-a", "--app", "-r", "--remote", "--json"]),
    ("tinyserv apps --", ["--json"]),
    ("tinyserv logs -", ["-a", "--app", "-r", "--remote", "-n", "--num", "-t", "--tail", "--ps", "--raw"]),
    ("tinyserv completion ", ["bash", "zsh"]),
    ("tinyserv config:pull --o", ["--overwrite"]),
    ("/usr/local/bin/tinyserv rel", ["releases", "releases:info"]),
])
def test_bash_completes_commands_flags_and_choices_from_the_declarations(line, expected, tmp_path):
    assert complete_in_bash(line, tmp_path) == expected


def test_bash_completion_is_valid_bash():
    subprocess.run(["bash", "-n"], input=completion.bash(), text=True, check=True)


def test_zsh_completion_describes_every_command_and_its_flags():
    text = completion.zsh()
    assert text.startswith("#compdef tinyserv\n") and "compdef _tinyserv tinyserv" in text
    for cmd in commands.client_commands():
        assert "'%s:" % cmd.name.replace(":", "\\:") in text, cmd.name
    assert "'(-a --app)'{-a,--app}'[the app]:value:'" in text
    assert "'1:completion:(bash zsh)'" in text
