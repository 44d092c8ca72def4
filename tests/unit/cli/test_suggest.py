"""A mistyped command is refused (exit 2) with the commands it is close to."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from jobprov.cli.main import cli


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["qurey"], "Did you mean 'query'?"),
        (["query", "seres", "AM1"], "Did you mean 'series'?"),
        (["query", "regresions", "AM1"], "Did you mean 'regressions'?"),
        (["emit", "metrc", "AM1", "1"], "Did you mean 'metric'?"),
        (["spool", "dran"], "Did you mean 'drain'?"),
    ],
)
def test_a_mistyped_command_suggests_the_close_ones(args: list[str], suggestion: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert f"No such command {args[-1] if len(args) == 1 else args[1]!r}." in result.output
    assert suggestion in result.output


def test_a_command_far_from_every_other_gets_no_guess() -> None:
    result = CliRunner().invoke(cli, ["zzzz"])
    assert result.exit_code == 2 and "No such command 'zzzz'." in result.output and "Did you mean" not in result.output
