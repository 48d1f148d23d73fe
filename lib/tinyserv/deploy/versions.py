"""Which runtime version an app asks for, read from its files, and whether a version satisfies it (pure).

Node: package.json's engines.node (else .nvmrc, else .node-version), an npm-style range: `20`, `20.x`,
`^20.1`, `~20.1.2`, `>=18 <21`, `18 || 20`, `18.0.0 - 20`. The names nvm gives (`lts/*`, `lts/iron`,
`node`, `stable`) are no versions: such a file is ignored (the server's node is used, and the push says so).
Python: .python-version (else runtime.txt's `python-3.12.4`, else pyproject.toml's requires-python):
`3.12` (any 3.12.x), `3.12.4`, or specifiers like `>=3.10,<3.13`, `~=3.11`, `==3.12.*`.
"""

import collections
import re

from tinyserv.common.errors import TinyservError

# What an app asks for: the range or specifier as written, and the file (and key) it came from.
Request = collections.namedtuple("Request", "spec source")

NODE_ALIASES = ("node", "stable", "latest", "current", "lts/*", "system")
VERSION = re.compile(r"v?(\d+)(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:[-+][0-9A-Za-z.+-]*)?\Z")
X = ("x", "X", "*")


# --- Node: npm's ranges -----------------------------------------------------------------------------

def parse_version(text):
    """(major, minor, patch) of an exact version like v20.1.0 or 20.1.0; raise if it is not one."""
    match = VERSION.match(text.strip())
    if not match or any(p is None or p in X for p in match.groups()):
        raise TinyservError("%r is not a version like 20.11.1" % text)
    return tuple(int(p) for p in match.groups())


def _partial(text, spec):
    """The numbers given in a partial version (20, 20.1, 20.x, *): a tuple of 0 to 3 ints."""
    if text in ("", "*", "x", "X"):
        return ()
    match = VERSION.match(text)
    if not match:
        raise TinyservError("%r is not a version range (like 20, 20.x, ^20.1 or >=18 <21)" % spec)
    numbers = []
    for part in match.groups():
        if part is None or part in X:
            break
        numbers.append(int(part))
    return tuple(numbers)


def _bump(numbers):
    """The first version above every version that starts with numbers (20.1 -> 20.2.0)."""
    return numbers[:-1] + (numbers[-1] + 1,) + (0,) * (3 - len(numbers))


def _fill(numbers):
    return numbers + (0,) * (3 - len(numbers))


def _comparators(word, spec):
    """One range word (^20.1, >=18, 20.x) as [(operator, version)] that must all hold."""
    match = re.match(r"(\^|~>?|>=|<=|>|<|=)?\s*(.*)\Z", word)
    op, numbers = match.group(1) or "", _partial(match.group(2), spec)
    if op in ("", "=") and not numbers:
        return []
    if op in ("", "="):
        return [(">=", _fill(numbers))] + ([("<", _bump(numbers))] if len(numbers) < 3 else [("<=", numbers)])
    if op.startswith("~"):
        return [(">=", _fill(numbers)), ("<", _bump(numbers[:2] if len(numbers) > 1 else numbers))]
    if op == "^":
        leading = next((i for i, n in enumerate(numbers) if n != 0), len(numbers) - 1)
        return [(">=", _fill(numbers))] + ([("<", _bump(numbers[:leading + 1]))] if numbers else [])
    if not numbers:
        return [] if op in (">=", "<=") else [("<", (0, 0, 0))]
    if op == ">":
        return [(">=", _bump(numbers))]
    if op == "<=":
        return [("<", _bump(numbers))] if len(numbers) < 3 else [("<=", numbers)]
    return [(op, _fill(numbers))]


def parse_range(spec):
    """An npm-style range as alternatives (||) of comparator lists; raise one line when it is none."""
    alternatives = []
    for part in spec.split("||"):
        part = re.sub(r"(\^|~>?|>=|<=|>|<|=)\s+", r"\1", part.strip())
        hyphen = re.match(r"(\S+)\s+-\s+(\S+)\Z", part)
        if hyphen:
            low, high = _partial(hyphen.group(1), spec), _partial(hyphen.group(2), spec)
            bound = [("<=", high)] if len(high) == 3 else ([("<", _bump(high))] if high else [])
            alternatives.append([(">=", _fill(low))] + bound)
            continue
        alternatives.append([c for word in part.split() for c in _comparators(word, spec)])
    return alternatives


def satisfies(version, spec):
    """Does the exact version (a tuple or text) satisfy the npm-style range spec?"""
    if isinstance(version, str):
        version = parse_version(version)
    tests = {">=": version.__ge__, "<=": version.__le__, ">": version.__gt__, "<": version.__lt__,
             "=": version.__eq__}
    return any(all(tests[op](bound) for op, bound in alternative) for alternative in parse_range(spec))


def best(versions, spec):
    """The highest of versions (text) that satisfies spec, or None."""
    fitting = [v for v in versions if _is_version(v) and satisfies(v, spec)]
    return max(fitting, key=parse_version) if fitting else None


def _is_version(text):
    try:
        parse_version(text)
        return True
    except TinyservError:
        return False


def node_file_version(text):
    """The version a .nvmrc or .node-version asks for, or None for nvm's names (lts/*, node) and empty files."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return None if line.lower() in NODE_ALIASES or line.lower().startswith("lts/") else line
    return None


def node_request(package, read):
    """Request for node: engines.node, else .nvmrc, else .node-version (read(name): its text or None)."""
    engines = package.get("engines") if isinstance(package.get("engines"), dict) else {}
    if engines.get("node") not in (None, ""):
        return _checked(Request(str(engines["node"]), "package.json engines.node"))
    for name in (".nvmrc", ".node-version"):
        text = read(name)
        if text is not None:
            spec = node_file_version(text)
            return _checked(Request(spec, name)) if spec else Request(None, name)
    return None


def tool_request(package, tool):
    """Request for npm, yarn or pnpm: engines.TOOL, else packageManager's TOOL@VERSION, else None."""
    engines = package.get("engines") if isinstance(package.get("engines"), dict) else {}
    if engines.get(tool) not in (None, ""):
        return _checked(Request(str(engines[tool]), "package.json engines.%s" % tool))
    manager = package.get("packageManager")
    if isinstance(manager, str) and manager.startswith(tool + "@"):
        return _checked(Request(manager[len(tool) + 1:].split("+")[0], "package.json packageManager"))
    return None


def _checked(request):
    """The request, once its range is known to parse (a bad one rejects the push naming its source)."""
    try:
        parse_range(request.spec)
    except TinyservError as e:
        raise TinyservError("%s: %s" % (request.source, e)) from None
    return request


def package_manager(exists):
    """npm, yarn or pnpm: which lockfile the app committed (exists(name) -> bool); npm when none."""
    for lockfile, tool in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("package-lock.json", "npm")):
        if exists(lockfile):
            return tool
    return "npm"


# --- Python: PEP 440 specifiers (the part interpreters need) -----------------------------------------

PY_CLAUSE = re.compile(r"(~=|===|==|!=|>=|<=|>|<)?\s*(\d+(?:\.\d+){0,2})(\.\*)?\Z")


def python_file_version(text):
    """The request in a .python-version: its first line that is not a comment ('3.12', 'cpython-3.12')."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            version = re.sub(r"^(cpython-|python)", "", line.lower())
            check_python_spec(version, ".python-version")
            return version
    return None


def runtime_txt_version(text):
    """The version in Heroku's runtime.txt (python-3.12.4)."""
    match = re.match(r"\s*python-(\d+\.\d+(?:\.\d+)?)\s*\Z", text)
    if not match:
        raise TinyservError("runtime.txt says %r: write a version like python-3.12.4" % text.strip()[:80])
    return match.group(1)


def requires_python(text):
    """pyproject.toml's [project] requires-python, or None (read by hand: tomllib is Python 3.11's)."""
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[] ")
        elif section == "project" and re.match(r"requires-python\s*=", line):
            value = line.split("=", 1)[1].strip()
            match = re.match(r"""("([^"\\]*)"|'([^']*)')\s*(#.*)?\Z""", value)
            if not match:
                raise TinyservError("pyproject.toml: requires-python must be a quoted string like \">=3.10\"")
            spec = match.group(2) if match.group(2) is not None else match.group(3)
            check_python_spec(spec, "pyproject.toml requires-python")
            return spec
    return None


def python_request(read):
    """Request for Python: .python-version, else runtime.txt, else pyproject.toml's requires-python."""
    text = read(".python-version")
    if text is not None and python_file_version(text):
        return Request(python_file_version(text), ".python-version")
    text = read("runtime.txt")
    if text is not None:
        return Request(runtime_txt_version(text), "runtime.txt")
    text = read("pyproject.toml")
    spec = requires_python(text) if text is not None else None
    return Request(spec, "pyproject.toml requires-python") if spec else None


def _clauses(spec):
    """A specifier as [(operator, numbers, wildcard)]; a bare version (3.12) means ==3.12.*, 3.12.4 means ==."""
    clauses = []
    for part in spec.split(","):
        match = PY_CLAUSE.match(part.strip())
        if not match:
            raise TinyservError("%r is not a Python version like 3.12 or a specifier like >=3.10,<3.13" % spec)
        op, numbers, star = match.group(1), tuple(int(n) for n in match.group(2).split(".")), bool(match.group(3))
        if op is None:
            op, star = "==", star or len(numbers) < 3
        clauses.append((op, numbers, star))
    return clauses


def check_python_spec(spec, source):
    """Raise naming source when spec is no Python version or specifier."""
    try:
        _clauses(spec)
    except TinyservError as e:
        raise TinyservError("%s: %s" % (source, e)) from None


def python_satisfies(version, spec):
    """Does the interpreter version (a tuple like (3, 11, 2)) satisfy spec?"""
    return all(_clause_holds(tuple(version), op, numbers, star) for op, numbers, star in _clauses(spec))


def _clause_holds(version, op, numbers, star):
    padded = numbers + (0,) * (3 - len(numbers))
    if op in ("==", "===", "!=") and star:
        same = version[:len(numbers)] == numbers
        return same if op != "!=" else not same
    if op == "~=":
        prefix = numbers[:-1] if len(numbers) > 1 else numbers
        return version >= padded and version[:len(prefix)] == prefix
    return {"==": version == padded, "===": version == padded, "!=": version != padded, ">=": version >= padded,
            "<=": version <= padded, ">": version > padded, "<": version < padded}[op]


def python_minor(spec):
    """The X.Y a simple request names (3.12, 3.12.4, ==3.12.*), for python3.X and install hints; else None."""
    clauses = _clauses(spec)
    if len(clauses) == 1 and clauses[0][0] in ("==", "===") and len(clauses[0][1]) >= 2:
        return "%d.%d" % clauses[0][1][:2]
    return None

