"""Every command, positional argument and option of ``penguin`` says what it is."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from engine.cli import build_parser


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"penguin {' '.join((*path, name))} has no help"
                yield from commands(sub, (*path, name))


ALL = list(commands(build_parser()))


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) or "penguin" for p, _ in ALL])
def test_every_argument_has_help(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"penguin {' '.join(path)} {name} has no help"


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--config", "f.toml", "tenant", "list"],
        ["tenant", "list", "--json", "--config", "f.toml"],
        ["--config", "f.toml", "tenant", "list", "--json"],
        ["--json", "tenant", "list", "--config", "f.toml"],
    ],
)
def test_global_options_parse_before_and_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.json, args.config) == (True, "f.toml")


def test_global_options_default_when_absent() -> None:
    args = build_parser().parse_args(["tenant", "list"])
    assert (args.json, args.config) == (False, None)
