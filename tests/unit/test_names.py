"""names.py: app names, config keys, KEY=VALUE and TYPE=N words."""

import pytest

from tinyserv.common.errors import TinyservError
from tinyserv.common.names import check_app_name, check_config_key, parse_assignments, parse_scale


@pytest.mark.parametrize("name", ["a", "my-app-2", "a" * 30, "z9", "app-"])
def test_valid_app_names_are_returned_unchanged(name):
    assert check_app_name(name) == name


@pytest.mark.parametrize("name", [
    "a" * 31, "../x", "a;b", "has space", "Caps", "", "-x", "1abc", "a/b", "a.b", "app\n", "é", None, 7,
])
def test_invalid_app_names_are_refused_with_the_rules(name):
    with pytest.raises(TinyservError, match="invalid app name .*lowercase letters, digits and dashes"):
        check_app_name(name)


@pytest.mark.parametrize("key", ["A", "_", "GREETING", "database_url", "X1", "_9"])
def test_valid_config_keys_are_returned_unchanged(key):
    assert check_config_key(key) == key


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A B", "A=B", "$A", "A\n", "É", None])
def test_invalid_config_keys_are_refused(key):
    with pytest.raises(TinyservError, match="invalid config key"):
        check_config_key(key)


@pytest.mark.parametrize("words, expected", [
    ([], {}),
    (["A=1"], {"A": "1"}),
    (["A="], {"A": ""}),
    (["URL=postgres://u:p@h/db?x=1&y=2"], {"URL": "postgres://u:p@h/db?x=1&y=2"}),
    (["A==b="], {"A": "=b="}),
    (["MSG=hello world  "], {"MSG": "hello world  "}),
    (["Q=it's \"quoted\" $HOME `id` \\n"], {"Q": "it's \"quoted\" $HOME `id` \\n"}),
    (["ML=line one\nline two\n"], {"ML": "line one\nline two\n"}),
    (["U=héllo ⬢ 日本"], {"U": "héllo ⬢ 日本"}),
    (["A=1", "B=2", "A=3"], {"A": "3", "B": "2"}),
])
def test_assignments_keep_values_byte_for_byte(words, expected):
    assert parse_assignments(words) == expected


def test_a_word_without_equals_is_refused():
    with pytest.raises(TinyservError, match="'novalue' is not KEY=VALUE"):
        parse_assignments(["A=1", "novalue"])


def test_an_assignment_with_a_bad_key_is_refused():
    with pytest.raises(TinyservError, match="invalid config key '1A'"):
        parse_assignments(["1A=x"])


@pytest.mark.parametrize("words, expected", [
    ([], {}),
    (["web=1"], {"web": 1}),
    (["web=1", "worker=0"], {"web": 1, "worker": 0}),
    (["my_type-2=12"], {"my_type-2": 12}),
    (["worker=007"], {"worker": 7}),
])
def test_scale_words_become_counts(words, expected):
    assert parse_scale(words) == expected


@pytest.mark.parametrize("word", ["web", "web=", "=1", "web=-1", "web=1.5", "web=x", "we b=1", "web.1=1", "web=²"])
def test_bad_scale_words_are_refused(word):
    with pytest.raises(TinyservError, match="is not TYPE=N"):
        parse_scale([word])
