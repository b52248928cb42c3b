"""Typer options generated from the settings registry (:mod:`infersweep.settings`).

A command declares which settings it takes and how, and receives them as one dict::

    @app.command("run")
    @handles_errors
    @with_settings("deployment", "workload", "scheduler")
    def run_cmd(settings: dict, verbose: OptVerbose = False) -> None: ...

Modes: ``value`` (an option per setting, default the registry's), ``optional`` (default
``None``: the command fills unset settings from elsewhere, e.g. a manifest) and ``axis`` (a
repeatable option taking comma lists: sweep axes).  Flag names live here and in the registry's
``flag`` field only; :func:`flag_of` maps a setting name in an error back to its flag.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated

import typer

from infersweep import settings as registry

_TYPES = {"str": str, "int": int, "float": float, "kv": str, "path": Path}


def _help(s: registry.Setting) -> str:
    text = s.help
    if s.unit and s.unit not in text:
        text += f" [{s.unit}]"
    return text


def _param(s: registry.Setting, mode: str) -> inspect.Parameter:
    if mode == "axis":
        ann = Annotated[
            list[str],
            typer.Option(s.cli_flag, help=_help(s) + " Axis values (repeatable, comma lists)."),
        ]
        default: object = []
    elif s.kind == "bool":
        flag = s.cli_flag
        ann = Annotated[
            bool | None if mode == "optional" else bool,
            typer.Option(f"{flag}/--no-{flag[2:]}", help=_help(s)),
        ]
        default = None if mode == "optional" else s.default
    else:
        typ = _TYPES[s.kind]
        optional = mode == "optional" or s.default is None
        ann = Annotated[typ | None if optional else typ, typer.Option(s.cli_flag, help=_help(s))]
        default = None if optional else s.default
    return inspect.Parameter(
        s.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=ann
    )


def with_settings(*groups: str, mode: str = "value", exclude: tuple[str, ...] = ()):
    """Add an option for every setting of ``groups`` (group names or setting names) to a
    command; the command gets them as ``settings`` (a dict keyed by setting name)."""
    chosen: list[registry.Setting] = []
    for g in groups:
        picked = registry.group(g) if g in registry.GROUPS else [registry.SETTINGS[g]]
        chosen += [s for s in picked if s.name not in exclude and s not in chosen]

    def deco(fn):
        hints = dict(fn.__annotations__)
        if any(isinstance(v, str) for v in hints.values()):  # postponed annotations
            hints = typing.get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "settings"
        ]
        clash = {p.name for p in own} & {s.name for s in chosen}
        if clash:
            raise TypeError(f"{fn.__name__}: parameters shadow settings {sorted(clash)}")
        # required (argument) parameters first, then the generated options, then the rest
        required = [p for p in own if p.default is inspect.Parameter.empty]
        rest = [p for p in own if p.default is not inspect.Parameter.empty]
        params = [
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in required),
            *(_param(s, mode) for s in chosen),
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest),
        ]
        names = [s.name for s in chosen]

        @functools.wraps(fn)
        def wrapper(**kwargs):
            values = {n: kwargs.pop(n) for n in names}
            return fn(settings=values, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must read the generated signature
        return wrapper

    return deco


#: engine field names of command options that are not settings
COMMAND_FIELDS = {"fit": "--fit", "fit_phase": "--fit-phase", "skip_first": "--skip-first"}


def flag_of(field: str | None) -> str | None:
    """The CLI flag of a setting (or command option) name; ``None`` for other fields."""
    if field is None:
        return None
    s = registry.SETTINGS.get(field)
    return s.cli_flag if s is not None else COMMAND_FIELDS.get(field)
