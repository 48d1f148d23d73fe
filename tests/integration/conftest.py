"""Fixtures for the localhost integration tests: bin/tinyserv against a tinyserv "server" that is this machine.

API for tests (see localserver.py):
  server          a fresh LocalServer for one test: own TINYSERV_ROOT, own ports, TINYSERV_REMOTE unset
  module_server   the same, shared by the tests of one module
Both are shut down with `tinyserv-remote shutdown` at teardown, and fail the test if any process of their root
or of their apps is still running afterwards.
"""

import pytest

from localserver import local_server


@pytest.fixture
def server(tmp_path):
    with local_server(tmp_path / "root") as s:
        yield s


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    with local_server(tmp_path_factory.mktemp("server") / "root") as s:
        yield s
