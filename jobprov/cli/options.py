"""Click arguments and options derived from the query questions (:mod:`jobprov.query.params`): the names, types,
defaults, bounds and help are the questions'; nothing about a parameter is written here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import click

from jobprov.query.params import ARGUMENT, ParameterError, Question, Spec

F = TypeVar("F", bound=Callable[..., Any])
Q = TypeVar("Q", bound=Question)


def options(question: type[Question], *, only: Collection[str] | None = None) -> Callable[[F], F]:
    """Decorate a command with ``question``'s fields (``only``: these) as arguments and options, in field order;
    the command receives them by field name."""
    specs = [s for s in question.specs() if only is None or s.name in only]

    def decorate(command: F) -> F:
        for spec in reversed(specs):  # decorators apply innermost first: reversed keeps the order in --help
            command = _parameter(spec)(command)
        return command

    return decorate


def make(question: type[Q], given: Mapping[str, Any]) -> Q:
    """``question`` from a command's arguments; a refused value is a usage error on its option or argument."""
    try:
        return question.from_raw(given)
    except ParameterError as exc:
        spec = next(s for s in question.specs() if s.name == exc.name)
        raise click.BadParameter(exc.reason, param_hint=_hint(spec)) from exc


def _hint(spec: Spec) -> str:
    if spec.param.cli == ARGUMENT:
        return spec.param.metavar or spec.name.upper()
    return f"'{spec.cli_name}'"


def _parameter(spec: Spec) -> Callable[[F], F]:
    param = spec.param
    several = param.kind in ("pairs", "many")
    if param.cli == ARGUMENT:
        return click.argument(spec.name, nargs=-1 if several else 1, required=param.required, metavar=param.metavar)
    decls = (spec.cli_name, spec.name)
    if param.switch is not None:
        return click.option(*decls, flag_value=param.switch, default=spec.default, help=param.switch_help)
    if param.kind == "flag":
        return click.option(*decls, is_flag=True, default=spec.default, help=param.help)
    if several:
        return click.option(*decls, multiple=True, required=param.required, metavar=param.metavar, help=param.help)
    kind: Any = None
    if param.kind == "int" and param.bounds:
        kind = click.IntRange(int(param.bounds.low), int(param.bounds.high))
    elif param.kind == "float" and param.bounds:
        kind = click.FloatRange(param.bounds.low, param.bounds.high)
    elif param.kind == "choice":
        kind = click.Choice(param.choices)
    if spec.default is dataclasses.MISSING:
        return click.option(*decls, type=kind, required=True, help=param.help)
    shown = spec.default is not None
    return click.option(*decls, type=kind, default=spec.default, show_default=shown, help=param.help)
