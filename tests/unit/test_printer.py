"""printer.py: exact output strings."""

import io
import re

import pytest

from tinyserv.common import printer


class Terminal(io.StringIO):
    """An output stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def colour_allowed(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def plain(text):
    return re.sub(r"\033\[[0-9;]*m", "", text)


@pytest.mark.parametrize("rows, headers, expected", [
    ([], ["NAME"], "NAME\n----"),
    ([["web.1", "up"], ["worker.1", "crashed"]], ["PROCESS", "STATE"],
     "PROCESS   STATE\n"
     "--------  -------\n"
     "web.1     up\n"
     "worker.1  crashed"),
    ([["v2", "Deploy abc1234", "ann"], ["v1", "Initial release", "ann"]], ["VERSION", "DESCRIPTION", "BY"],
     "VERSION  DESCRIPTION      BY\n"
     "-------  ---------------  ---\n"
     "v2       Deploy abc1234   ann\n"
     "v1       Initial release  ann"),
    ([["web.1", 4242, 0, ""]], ["PROCESS", "PID", "RESTARTS", "LAST EXIT"],
     "PROCESS  PID   RESTARTS  LAST EXIT\n"
     "-------  ----  --------  ---------\n"
     "web.1    4242  0"),
])
def test_table_aligns_columns_under_a_header_line(rows, headers, expected):
    assert printer.table(rows, headers) == expected


def test_table_aligns_columns_by_visible_width_when_cells_are_coloured(colour_allowed):
    tty = Terminal()
    rows = [["web.1", printer.color("up", "32", tty), "101"],
            ["worker.1", printer.color("crashed", "31", tty), "102"]]
    assert plain(printer.table(rows, ["PROCESS", "STATE", "PID"])) == (
        "PROCESS   STATE    PID\n"
        "--------  -------  ---\n"
        "web.1     up       101\n"
        "worker.1  crashed  102")


@pytest.mark.parametrize("items, expected", [
    ([], ""),
    ([("Port", 5000)], "Port: 5000"),
    ([("Git URL", "deploy@host:/r/myapp.git"), ("Port", 5000), ("Web URL", "http://host:5000/")],
     "Git URL: deploy@host:/r/myapp.git\n"
     "Port:    5000\n"
     "Web URL: http://host:5000/"),
    ([("A", "x"), ("Config vars", "(none)")],
     "A:           x\n"
     "Config vars: (none)"),
])
def test_pairs_align_values_after_the_longest_key(items, expected):
    assert printer.pairs(items) == expected


def test_color_is_plain_when_the_stream_is_not_a_terminal(colour_allowed):
    assert printer.color("up", "32", io.StringIO()) == "up"


def test_color_wraps_text_in_ansi_codes_on_a_terminal(colour_allowed):
    assert printer.color("up", "32", Terminal()) == "\033[32mup\033[0m"


def test_color_is_plain_on_a_terminal_with_no_color_set(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert printer.color("up", "32", Terminal()) == "up"


def test_color_is_plain_on_a_dumb_terminal(colour_allowed, monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    assert printer.color("up", "32", Terminal()) == "up"


@pytest.mark.parametrize("text, expected", [
    ("plain text", "plain text"),
    ("tab\tand\nnewline stay", "tab\tand\nnewline stay"),
    ("\x1b[2Jclear", "\\x1b[2Jclear"),
    ("carriage\rreturn", "carriage\\x0dreturn"),
    ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
    ("c1 csi\x9b2J", "c1 csi\\x9b2J"),
    ("utf-8 é ⬢ stays", "utf-8 é ⬢ stays"),
])
def test_escape_shows_control_characters_but_tab_and_newline_as_hex(text, expected):
    assert printer.escape(text) == expected


def test_escaped_escapes_every_string_in_an_answer_and_leaves_the_rest():
    answer = [{"by": "ev\x1bil", "version": 3, "tags": ["\x1b]0;t\x07"], "none": None, "\x1bkey": True}]
    assert printer.escaped(answer) == [{"by": "ev\\x1bil", "version": 3, "tags": ["\\x1b]0;t\\x07"],
                                        "none": None, "\\x1bkey": True}]


def test_steps_escape_what_a_build_printed():
    out = io.StringIO()
    steps = printer.Steps(out)
    steps.step("Building")
    steps.detail("npm says \x1b[31mred\x1b[0m\r")
    assert out.getvalue() == "-----> Building\n       npm says \\x1b[31mred\\x1b[0m\\x0d\n"


def test_an_error_escapes_its_message_and_the_output_it_quotes():
    err = io.StringIO()
    printer.error("web exited: \x1b[2J", ["last \x1b]0;x\x07line"], stream=err)
    assert err.getvalue() == "       last \\x1b]0;x\\x07line\ntinyserv: web exited: \\x1b[2J\n"


def test_color_is_plain_for_a_stream_without_isatty(colour_allowed):
    assert printer.color("up", "32", object()) == "up"


def test_steps_print_heroku_arrows_and_indented_details():
    out = io.StringIO()
    steps = printer.Steps(out)
    steps.step("Building myapp (abc1234, main)")
    steps.detail("npm install")
    steps.write("already ends in a newline\n")
    assert out.getvalue() == (
        "-----> Building myapp (abc1234, main)\n"
        "       npm install\n"
        "already ends in a newline\n")


def test_error_is_one_prefixed_line():
    err = io.StringIO()
    printer.error("no app named 'x'", stream=err)
    assert err.getvalue() == "tinyserv: no app named 'x'\n"


def test_error_is_red_on_a_terminal(colour_allowed):
    err = Terminal()
    printer.error("boom", stream=err)
    assert err.getvalue() == "\033[31mtinyserv: boom\033[0m\n"


def test_dumps_is_indented_sorted_json():
    assert printer.dumps({"b": [1], "a": "⬢"}) == '{\n  "a": "\\u2b22",\n  "b": [\n    1\n  ]\n}'


def test_an_error_with_details_prints_them_indented_above_its_one_line():
    err = io.StringIO()
    printer.error("web exited with 1 at boot", ["Error: no DATABASE_URL", "    at index.js:3"], stream=err)
    assert err.getvalue() == ("       Error: no DATABASE_URL\n           at index.js:3\n"
                              "tinyserv: web exited with 1 at boot\n")
