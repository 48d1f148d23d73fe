"""procfile.py: Procfile text in, {type: command} out."""

import pytest

from tinyserv.common.errors import TinyservError
from tinyserv.common.procfile import parse_procfile, process_types


@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("web: node server.js\n", {"web": "node server.js"}),
    ("web: node server.js", {"web": "node server.js"}),
    ("web:node server.js\n", {"web": "node server.js"}),
    ("  web:   node server.js   \n", {"web": "node server.js"}),
    ("web: a\r\nworker: b\r\n", {"web": "a", "worker": "b"}),
    ("# a comment\n\n   \nweb: a\n  # indented comment\nworker: b\n", {"web": "a", "worker": "b"}),
    ("release: ./migrate\nweb: a\n", {"release": "./migrate", "web": "a"}),
    ("web: sh -c 'echo $PORT: ready # not a comment'\n", {"web": "sh -c 'echo $PORT: ready # not a comment'"}),
    ("my_type-2: run\n", {"my_type-2": "run"}),
    ("web: a\tb\n", {"web": "a\tb"}),
])
def test_procfile_lines_become_types_and_commands(text, expected):
    assert parse_procfile(text) == expected


def test_types_keep_file_order():
    assert list(parse_procfile("worker: b\nweb: a\nclock: c\n")) == ["worker", "web", "clock"]


@pytest.mark.parametrize("text, number", [
    ("web: a\nweb: b\n", 2),
    ("# c\n\nweb: a\nworker: b\n\nweb: c\n", 6),
])
def test_a_type_declared_twice_is_refused_with_its_line_number(text, number):
    with pytest.raises(TinyservError, match="Procfile line %d declares 'web' twice" % number):
        parse_procfile(text)


@pytest.mark.parametrize("text, number", [
    ("web node server.js\n", 1),
    ("web: a\nworker:\n", 2),
    ("web: a\nworker:    \n", 2),
    ("# c\n\nweb : a\n", 3),
    ("web.1: a\n", 1),
    ("w eb: a\n", 1),
    (": a\n", 1),
    ("web: a\n\n\n\nnot a line\n", 5),
])
def test_a_malformed_line_is_refused_with_its_line_number(text, number):
    with pytest.raises(TinyservError, match="Procfile line %d is not 'type: command'" % number):
        parse_procfile(text)


def test_the_malformed_line_is_quoted_in_the_message():
    with pytest.raises(TinyservError) as caught:
        parse_procfile("web: a\noops\n")
    assert str(caught.value) == "Procfile line 2 is not 'type: command': 'oops'"


@pytest.mark.parametrize("types, expected", [
    ({}, []),
    ({"web": "a"}, ["web"]),
    ({"release": "m", "web": "a", "worker": "b"}, ["web", "worker"]),
    ({"release": "m"}, []),
])
def test_process_types_leave_out_the_release_phase(types, expected):
    assert process_types(types) == expected
