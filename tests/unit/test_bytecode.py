"""Bytecode of a read-only install goes to the user's cache; root never uses such a cache."""

import os
import sys

import pytest

import tinyserv


@pytest.fixture
def prefix(monkeypatch):
    monkeypatch.setattr(sys, "pycache_prefix", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def test_a_read_only_install_keeps_its_bytecode_in_the_users_cache(prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    used = tinyserv.cache_bytecode_per_user({"HOME": str(tmp_path)}, euid=1000, package_dir=str(tmp_path / "lib"))
    assert used == str(tmp_path / ".cache" / "tinyserv" / "bytecode") == sys.pycache_prefix


def test_xdg_cache_home_is_respected(prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    environ = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert tinyserv.cache_bytecode_per_user(environ, euid=1000) == str(tmp_path / "xdg" / "tinyserv" / "bytecode")


def test_root_never_uses_a_per_user_cache(prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert tinyserv.cache_bytecode_per_user({"HOME": str(tmp_path)}, euid=0) is None
    assert sys.pycache_prefix is None


def test_a_writable_install_keeps_its_bytecode_beside_the_code(prefix, tmp_path):
    (tmp_path / "__pycache__").mkdir()
    assert tinyserv.cache_bytecode_per_user({"HOME": str(tmp_path)}, euid=1000, package_dir=str(tmp_path)) is None
    assert sys.pycache_prefix is None


def test_no_cache_when_bytecode_writing_is_turned_off(prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert tinyserv.cache_bytecode_per_user({"HOME": str(tmp_path)}, euid=1000) is None
