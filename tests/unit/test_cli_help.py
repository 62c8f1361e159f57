"""The ``boost`` help texts: what an operator reads with ``--help``."""

from __future__ import annotations

import argparse

import pytest

from boost_ledger.cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every sub-command's parser below it, each with its command line."""
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_parsers(child))
    return found


def test_no_help_text_shows_argparse_s_suppress_marker():
    """The internal sub-commands (``projections fill-part``, ``audit verify-part``) are left out
    of their group's help, not listed as "==SUPPRESS==" (argparse's text for a sub-command whose
    help is SUPPRESS), and no other help text shows the marker either."""
    for prog, parser in _parsers(build_parser()):
        assert argparse.SUPPRESS not in parser.format_help(), prog


@pytest.mark.parametrize(
    ("group", "hidden"), [("projections", "fill-part"), ("audit", "verify-part")]
)
def test_internal_sub_commands_are_hidden_yet_still_run(group, hidden):
    """A hidden sub-command is absent from its group's help but still parses, since the
    command spawns it as a child process."""
    parser = build_parser()
    commands = {prog: child for prog, child in _parsers(parser)}
    assert hidden not in commands[f"boost {group}"].format_help()
    arguments = {
        "fill-part": ["--up-to", "10", "--part", "1/2", "orders"],
        "verify-part": ["--snapshot", "00000003-00000002-1", "orders"],
    }[hidden]
    parsed = parser.parse_args([group, hidden, *arguments])
    assert parsed.action == hidden
