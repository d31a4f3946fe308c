"""The command line of ``python -m alexnet_nb.train``: one flag per Config field, one line per error.

Flags are made from ``config.Config``'s fields (``--batch-size`` for
``batch_size``), their help from each field's trailing comment, so the command
line cannot fall behind the Config. ``--recipe NAME`` starts from a named
recipe, ``--quick`` shrinks it to the tiny test size, and any other flag
overrides both. A bad value prints one line, ``error: ...``, and exits with
status 2, before any work starts.
"""

import argparse
import dataclasses
import inspect
import re
import sys
import types
import typing

from alexnet_nb import config as config_lib


def fail(message, status=2):
    """One line on stderr, no traceback; exit status 2, as argparse does for a bad argument."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(status)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        fail(f"{message} (python -m alexnet_nb.train --help lists the flags)")


def _field_type(f):
    """The concrete type of a field (``int | None`` -> int)."""
    t = f.type
    if isinstance(t, types.UnionType) or typing.get_origin(t) is typing.Union:
        t = next(a for a in typing.get_args(t) if a is not type(None))
    return t


def field_help():
    """Each field's trailing comment in the Config source: the CLI's help text."""
    found = {}
    for line in inspect.getsource(config_lib.Config).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=[^#]*#\s*(.*)", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def recipe_lines() -> str:
    width = max(map(len, config_lib.RECIPES))
    return "\n".join(f"  {name:<{width}}  {r.summary}" for name, r in config_lib.RECIPES.items())


def parser(prog="python -m alexnet_nb.train", description=None):
    p = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="recipes (--recipe NAME; any flag given beside it overrides it):\n" + recipe_lines())
    p.add_argument("--quick", action="store_true", help="shrink the recipe to a few steps on a handful of images")
    helps = field_help()
    for f in dataclasses.fields(config_lib.Config):
        flag = f"--{f.name.replace('_', '-')}"
        t = _field_type(f)
        default = f"{f.default:.4g}" if isinstance(f.default, float) else f.default
        text = f"{helps.get(f.name, '')} (paper: {default})".replace("%", "%%")
        choices = config_lib.CHOICES.get(f.name)
        if f.name == "recipe":
            choices = list(config_lib.RECIPES)
        if t is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=text)
        else:
            def parse(s, t=t, optional=t is not f.type):
                return None if optional and s.lower() == "none" else t(s)
            p.add_argument(flag, dest=f.name, type=parse, default=argparse.SUPPRESS, choices=choices,
                           metavar=None if choices else t.__name__.upper(), help=text)
    return p


def parse_config(argv=None, description=None) -> config_lib.Config:
    """The Config the command line asks for; a bad value exits with one ``error:`` line."""
    args = vars(parser(description=description).parse_args(argv))
    quick = args.pop("quick")
    name = args.pop("recipe", "paper")
    try:
        return config_lib.recipe(name, quick=quick, **args)
    except config_lib.ConfigError as e:
        fail(str(e))
