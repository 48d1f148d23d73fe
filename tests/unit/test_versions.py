"""The runtime version an app asks for: its files read, npm ranges and Python specifiers matched."""

import pytest

from tinyserv.common.errors import TinyservError
from tinyserv.deploy import versions
from tinyserv.deploy.versions import Request


@pytest.mark.parametrize("version, spec, expected", [
    ("20.19.1", "20.x", True),
    ("21.0.0", "20.x", False),
    ("20.0.0", "20", True),
    ("19.9.9", "20", False),
    ("20.1.0", "^20.1", True),
    ("20.0.9", "^20.1", False),
    ("21.0.0", "^20.1", False),
    ("0.2.5", "^0.2.3", True),
    ("0.3.0", "^0.2.3", False),
    ("20.1.9", "~20.1", True),
    ("20.2.0", "~20.1.2", False),
    ("20.1.1", "~20.1.2", False),
    ("18.0.0", ">=18 <21", True),
    ("20.99.0", ">=18 <21", True),
    ("21.0.0", ">=18 <21", False),
    ("17.9.0", ">=18 <21", False),
    ("18.20.4", ">= 18", True),
    ("22.1.0", "18 || 20", False),
    ("20.3.0", "18 || 20", True),
    ("19.5.0", "18.0.0 - 20", True),
    ("21.0.0", "18.0.0 - 20", False),
    ("20.5.1", "18 - 20.5.1", True),
    ("20.5.2", "18 - 20.5.1", False),
    ("20.11.1", "v20.11.1", True),
    ("20.11.2", "20.11.1", False),
    ("20.11.1", "=20.11.1", True),
    ("23.0.0", "*", True),
    ("23.0.0", "", True),
    ("18.1.0", ">18", False),
    ("19.0.0", ">18", True),
    ("18.1.0", "<=18", True),
    ("19.0.0", "<=18", False),
    ("18.0.0", "<18.0.1", True),
    ("v20.1.0", "20.x.x", True),
])
def test_a_version_satisfies_an_npm_range_as_npm_says(version, spec, expected):
    assert versions.satisfies(version, spec) is expected


@pytest.mark.parametrize("spec", ["twenty", "20.x.y.z", ">=lts", "^node"])
def test_a_range_that_is_none_is_refused_in_one_line_naming_it(spec):
    with pytest.raises(TinyservError, match="not a version range"):
        versions.parse_range(spec)


@pytest.mark.parametrize("found, spec, expected", [
    (["18.20.4", "20.1.0", "20.19.1", "22.3.0"], "20.x", "20.19.1"),
    (["18.20.4", "20.19.1", "9.0.0"], ">=9", "20.19.1"),
    (["18.20.4"], "20", None),
    ([], "*", None),
    (["junk", "20.1.0"], "20", "20.1.0"),
])
def test_best_is_the_highest_version_that_fits(found, spec, expected):
    assert versions.best(found, spec) == expected


@pytest.mark.parametrize("text, expected", [
    ("20\n", "20"),
    ("v20.11.1", "v20.11.1"),
    ("# pinned\n\n18.20\n", "18.20"),
    ("lts/*\n", None),
    ("lts/iron", None),
    ("node", None),
    ("", None),
])
def test_nvmrc_gives_a_version_or_nothing_for_nvm_aliases(text, expected):
    assert versions.node_file_version(text) == expected


def files(**texts):
    return lambda name: texts.get(name.replace(".", "_").replace("-", "_"))


@pytest.mark.parametrize("package, found, expected", [
    ({"engines": {"node": "20.x"}}, {"_nvmrc": "18"}, Request("20.x", "package.json engines.node")),
    ({}, {"_nvmrc": "18"}, Request("18", ".nvmrc")),
    ({}, {"_node_version": "v22.1.0"}, Request("v22.1.0", ".node-version")),
    ({}, {"_nvmrc": "lts/*"}, Request(None, ".nvmrc")),
    ({"engines": {"npm": "10"}}, {}, None),
    ({"engines": "node 20"}, {}, None),
])
def test_node_request_comes_from_engines_then_nvmrc_then_node_version(package, found, expected):
    assert versions.node_request(package, files(**found)) == expected


def test_an_engines_node_that_is_no_range_rejects_the_push_naming_where_it_came_from():
    with pytest.raises(TinyservError, match="package.json engines.node: 'twenty' is not a version range"):
        versions.node_request({"engines": {"node": "twenty"}}, files())


@pytest.mark.parametrize("package, tool, expected", [
    ({"engines": {"npm": "^10"}}, "npm", Request("^10", "package.json engines.npm")),
    ({"packageManager": "pnpm@9.1.0+sha512.abc"}, "pnpm", Request("9.1.0", "package.json packageManager")),
    ({"packageManager": "pnpm@9.1.0"}, "yarn", None),
    ({"engines": {"yarn": "1.x"}, "packageManager": "yarn@1.22.0"}, "yarn", Request("1.x", "package.json engines.yarn")),
    ({}, "npm", None),
])
def test_a_package_manager_version_comes_from_engines_then_package_manager(package, tool, expected):
    assert versions.tool_request(package, tool) == expected


@pytest.mark.parametrize("lockfiles, expected", [
    ({"pnpm-lock.yaml", "package-lock.json"}, "pnpm"),
    ({"yarn.lock"}, "yarn"),
    ({"package-lock.json"}, "npm"),
    (set(), "npm"),
])
def test_the_lockfile_names_the_package_manager(lockfiles, expected):
    assert versions.package_manager(lockfiles.__contains__) == expected


# --- Python ---

@pytest.mark.parametrize("text, expected", [
    ("3.12\n", "3.12"),
    ("3.11.7", "3.11.7"),
    ("# comment\ncpython-3.13\n", "3.13"),
    ("\n", None),
])
def test_python_version_file_gives_its_first_version(text, expected):
    assert versions.python_file_version(text) == expected


def test_a_python_version_file_naming_no_version_is_refused():
    with pytest.raises(TinyservError, match=r"\.python-version: 'pypy3\.10' is not a Python version"):
        versions.python_file_version("pypy3.10")


@pytest.mark.parametrize("text, expected", [
    ("python-3.12.4\n", "3.12.4"),
    ("python-3.11", "3.11"),
])
def test_runtime_txt_gives_its_version(text, expected):
    assert versions.runtime_txt_version(text) == expected


def test_runtime_txt_without_a_python_version_is_refused():
    with pytest.raises(TinyservError, match="runtime.txt says 'ruby-3.3'"):
        versions.runtime_txt_version("ruby-3.3")


@pytest.mark.parametrize("text, expected", [
    ('[project]\nname = "x"\nrequires-python = ">=3.10"\n', ">=3.10"),
    ("[project]\nrequires-python='~=3.11' # comment\n", "~=3.11"),
    ('[tool.x]\nrequires-python = ">=3.9"\n[project]\nname = "x"\n', None),
    ('[project]\nrequires-python = ">=3.9,<3.13"\n[tool.uv]\n', ">=3.9,<3.13"),
    ("", None),
])
def test_pyproject_requires_python_is_read_from_the_project_table_only(text, expected):
    assert versions.requires_python(text) == expected


def test_a_requires_python_that_is_not_a_string_is_refused():
    with pytest.raises(TinyservError, match="requires-python must be a quoted string"):
        versions.requires_python("[project]\nrequires-python = 3.10\n")


@pytest.mark.parametrize("found, expected", [
    ({"_python_version": "3.12", "runtime_txt": "python-3.11.1"}, Request("3.12", ".python-version")),
    ({"runtime_txt": "python-3.11.1", "pyproject_toml": '[project]\nrequires-python=">=3.9"'},
     Request("3.11.1", "runtime.txt")),
    ({"pyproject_toml": '[project]\nrequires-python=">=3.9"'}, Request(">=3.9", "pyproject.toml requires-python")),
    ({"pyproject_toml": "[project]\nname='x'"}, None),
    ({}, None),
])
def test_python_request_comes_from_python_version_then_runtime_txt_then_pyproject(found, expected):
    assert versions.python_request(files(**found)) == expected


@pytest.mark.parametrize("version, spec, expected", [
    ((3, 11, 2), "3.11", True),
    ((3, 12, 0), "3.11", False),
    ((3, 11, 2), "3.11.2", True),
    ((3, 11, 3), "3.11.2", False),
    ((3, 11, 2), ">=3.10", True),
    ((3, 9, 18), ">=3.10", False),
    ((3, 12, 1), ">=3.9,<3.13", True),
    ((3, 13, 0), ">=3.9,<3.13", False),
    ((3, 11, 9), "~=3.11", True),
    ((3, 12, 0), "~=3.11.2", False),
    ((3, 11, 4), "~=3.11.2", True),
    ((3, 12, 5), "==3.12.*", True),
    ((3, 13, 5), "!=3.13.*", False),
    ((3, 14, 0), "3.14", True),
])
def test_an_interpreter_satisfies_a_python_specifier_as_pep_440_says(version, spec, expected):
    assert versions.python_satisfies(version, spec) is expected


@pytest.mark.parametrize("spec, expected", [
    ("3.12", "3.12"), ("3.12.4", "3.12"), ("==3.12.*", "3.12"), (">=3.10", None), (">=3.9,<3.13", None),
])
def test_a_simple_python_request_names_its_minor_version(spec, expected):
    assert versions.python_minor(spec) == expected
