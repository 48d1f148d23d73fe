"""Where each command is served: `TOPIC[:VERB...]` by lib/tinyserv/server/topics/TOPIC.py, so that folder is the map."""

import importlib
import inspect
import os

import pytest

from tinyserv.common import commands
from tinyserv.server import remote

TOPICS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "lib", "tinyserv", "server", "topics")
TOPIC_MODULES = sorted(name[:-3] for name in os.listdir(TOPICS) if name.endswith(".py") and name != "__init__.py")
SERVED = [c for c in commands.COMMANDS if c.server]


@pytest.mark.parametrize("cmd", SERVED, ids=lambda c: c.name)
def test_every_command_the_server_serves_resolves_to_a_function(cmd):
    assert callable(remote.handler(cmd)), cmd.name


@pytest.mark.parametrize("cmd", [c for c in SERVED if c.client and c.name != "version"], ids=lambda c: c.name)
def test_every_client_command_the_server_serves_is_served_by_its_topic_or_the_command_it_aliases(cmd):
    topic = commands.topic_of(cmd.alias_of or cmd.name)
    assert cmd.serves.startswith("server.topics.%s." % topic), (cmd.name, cmd.serves)


def test_an_alias_is_served_by_the_command_it_stands_for():
    assert commands.BY_NAME["restart"].alias_of == "ps:restart"
    assert commands.BY_NAME["restart"].serves == commands.BY_NAME["ps:restart"].serves == "server.topics.ps.restart"


@pytest.mark.parametrize("name, serves", [
    ("apps", "server.topics.apps.index"), ("apps:create", "server.topics.apps.create"),
    ("pg:backups:capture", "server.topics.pg.backups_capture"), ("certs:auto:enable", "server.topics.certs.auto_enable"),
    ("config:set", "server.topics.config.set_"), ("maintenance:on", "server.topics.maintenance.on"),
])
def test_the_function_that_serves_a_command_follows_from_its_name(name, serves):
    assert commands.handler_name(name) == serves


@pytest.mark.parametrize("topic", TOPIC_MODULES)
def test_each_topic_module_serves_only_commands_of_its_topic_and_every_public_function_serves_one(topic):
    module = importlib.import_module("tinyserv.server.topics." + topic)
    public = {name for name, f in vars(module).items()
              if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")}
    served = {c.serves.rpartition(".")[2]: c for c in SERVED if c.serves.startswith("server.topics.%s." % topic)}
    assert public == set(served), "%s: public functions %s, commands served %s" % (topic, sorted(public),
                                                                                   sorted(served))
    assert {commands.topic_of(c.alias_of or c.name) for c in served.values()} == {topic}


def test_the_server_s_own_commands_and_version_name_their_own_module_outside_the_topics():
    explicit = sorted(c.name for c in SERVED if not c.serves.startswith("server.topics."))
    assert explicit == sorted(["version"] + [c.name for c in SERVED if not c.client])


@pytest.mark.parametrize("name, scope", [
    ("apps", commands.EVERY_APP), ("apps:create", commands.SERVER), ("keys", commands.SERVER),
    ("keys:add", commands.SERVER), ("keys:remove", commands.SERVER), ("backup", commands.SERVER),
    ("doctor", commands.SERVER), ("ps", commands.APP), ("config:set", commands.APP), ("version", commands.ANY),
])
def test_each_command_declares_its_scope(name, scope):
    assert commands.BY_NAME[name].scope == scope


def test_a_deploy_key_may_run_the_client_commands_and_of_the_server_s_own_only_backup_and_doctor():
    internal = sorted(c.name for c in commands.COMMANDS if c.door and not c.client)
    assert internal == ["backup", "doctor"]
    assert all(c.door for c in commands.COMMANDS if c.client)


def test_the_servers_help_lists_every_command_with_help_and_hides_the_others(capsys):
    with pytest.raises(SystemExit):
        remote.parser().parse_args(["--help"])
    listing = capsys.readouterr().out
    assert "SUPPRESS" not in listing
    assert "  startup " in listing and "  hook " not in listing and "  ssh-serve " not in listing
