"""Unit tests: pure code and fakes only (no daemons, no network, no sleeping)."""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "lib")
if LIB not in sys.path:
    sys.path.insert(0, LIB)

from tinyserv.state.layout import Layout  # noqa: E402

TMPFS = "/dev/shm"


@pytest.fixture
def tmp_path(tmp_path_factory):
    """A fresh directory, on tmpfs when there is one.

    Every state file is fsynced (store.write_atomic); on a busy disk those fsyncs,
    not the code under test, would set the suite's running time.
    """
    if os.path.isdir(TMPFS) and os.access(TMPFS, os.W_OK):
        path = tempfile.mkdtemp(prefix="tinyserv-unit-", dir=TMPFS)
        try:
            yield pathlib.Path(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("unit")


@pytest.fixture
def layout(tmp_path):
    """A fresh tinyserv root with its top-level directories."""
    return Layout(str(tmp_path / "root")).ensure()


@pytest.fixture
def fake():
    """The supervisor's world as plain data (tests/unit/fakes.py)."""
    from .fakes import FakeSystem
    return FakeSystem()


@pytest.fixture
def sup(layout, fake):
    """A supervisor acting on the fake world, driven by tick() (closed afterwards)."""
    from tinyserv.supervise.supervisor import Supervisor
    supervisor = Supervisor(layout, fake)
    yield supervisor
    supervisor.close()
