"""The experiment plan (``experiments/plan.toml``): what the GPU runs, in what order, and how the recipe is chosen.

A plan lists named experiments in priority order: a recipe, overrides, epochs,
a seed and why it is there. ``recipe = "@chosen"`` stands for the recipe the
plan's rule chooses among its candidates, by final holdout top-1 (never by the
validation split); such entries wait until every candidate has finished.
Everything is checked when the plan is read, before anything runs: an unknown
recipe or setting is an error naming the entry.
"""

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_nb import config as config_lib
from alexnet_nb.bench_record import EPOCH_IMAGES

CHOSEN = "@chosen"
DEFAULT_PLAN = Path("experiments") / "plan.toml"
TRAIN_IMAGES = EPOCH_IMAGES  # per epoch: the training images less the holdout
EVAL_IMAGES = 20_000  # per epoch: the holdout and val, 10,000 each
EVAL_SPEEDUP = 3.0  # a forward pass costs about a third of forward + backward
# Quick mode (the tests): every entry shrunk to tiny sizes on generated data; its epochs stay the plan's.
QUICK_SIZES = {k: v for k, v in config_lib.QUICK.items() if k not in ("name", "epochs")}


class PlanError(ValueError):
    """The plan cannot run; the message names the entry and the problem."""


@dataclass(frozen=True)
class Entry:
    name: str
    recipe: str
    epochs: int
    seed: int = 0
    overrides: dict = field(default_factory=dict)
    why: str = ""
    chapters: tuple = ()  # notebooks to execute (chapter 3 trains the recipe) instead of `alexnet_nb.train`

    def recipe_name(self, chosen=None) -> str:
        name = chosen if self.recipe == CHOSEN else self.recipe
        if name is None:
            raise PlanError(f"{self.name}: the recipe is not chosen yet")
        return name

    def config(self, chosen=None, **extra) -> config_lib.Config:
        """This entry's Config (``chosen``: the recipe that ``@chosen`` stands for)."""
        return config_lib.recipe(self.recipe_name(chosen), **{**self.overrides, "epochs": self.epochs, "seed": self.seed,
                                          "name": self.name, **extra})

    def flags(self, chosen=None) -> list:
        """The ``python -m alexnet_nb.train`` flags of this entry."""
        args = ["--recipe", self.recipe_name(chosen), "--epochs", str(self.epochs), "--seed", str(self.seed)]
        for key, value in self.overrides.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, "none" if value is None else str(value)]
        return args


@dataclass(frozen=True)
class Plan:
    entries: tuple
    candidates: tuple
    rule: str
    path: str = ""


# An entry's own keys, and the kind of value each takes (epochs and seed: integers, not bools, checked below).
ENTRY_KEYS = {"name": str, "recipe": str, "epochs": int, "seed": int, "overrides": dict, "why": str, "chapters": list}
TOML_KINDS = {str: "a string", int: "an integer", dict: "a table ({ key = value, ... })",
              list: "a list of chapter names (chapters = [\"03_train\"])"}


def _toml(value) -> str:
    """A value as the plan wrote it (true, "1"), not as Python prints it (True, '1')."""
    return json.dumps(value, default=str)


def _check_entry(item, where, fields):
    """Refuse an entry whose keys or values are of the wrong kind, or whose overrides contradict its own keys."""
    unknown = set(item) - set(ENTRY_KEYS)
    if unknown or not {"name", "recipe", "epochs"} <= set(item):
        raise PlanError(f"{where}: needs name, recipe and epochs; unknown keys: {sorted(unknown) or 'none'}")
    for key, kind in ENTRY_KEYS.items():
        value = item.get(key, kind())
        if not isinstance(value, kind) or isinstance(value, bool):  # TOML's true is a Python int too
            raise PlanError(f"{where}: {key} = {_toml(value)} must be {TOML_KINDS[kind]}")
    for key, least in (("epochs", 1), ("seed", 0)):
        if item.get(key, least) < least:
            raise PlanError(f"{where}: {key} = {item[key]} must be an integer >= {least}")
    # The estimate, `status` and the run's name read the entry's own keys: the same key in overrides would train
    # something else than they say.
    own = sorted(set(item.get("overrides", {})) & set(ENTRY_KEYS))
    if own:
        raise PlanError(f"{where}: {own[0]!r} in overrides; set it as the entry's own key ({own[0]} = ...), "
                        "not in overrides")
    bad = set(item.get("overrides", {})) - fields
    if bad:
        raise PlanError(f"{where}: unknown settings {sorted(bad)} in overrides")
    if "chapters" in item:
        _check_chapters(item, where)


def _check_chapters(item, where):
    """A chapters entry runs notebooks that exist, with what a reader's run of them trains: the recipe as it is."""
    from alexnet_nb import chapters

    names = item["chapters"]
    if not names or not all(isinstance(n, str) for n in names):
        raise PlanError(f"{where}: chapters = {_toml(names)} must be a non-empty {TOML_KINDS[list]}")
    try:
        for name in names:
            chapters.path_of(name)
    except chapters.ChapterError as e:
        raise PlanError(f"{where}: {e}") from None
    recipe = config_lib.recipe("paper" if item["recipe"] == CHOSEN else item["recipe"])
    if item.get("overrides") or item.get("seed", 0) != recipe.seed or item["epochs"] != recipe.epochs:
        raise PlanError(f"{where}: a chapter trains its recipe as a reader would: no overrides, seed {recipe.seed} "
                        f"and epochs {recipe.epochs} (what the estimate counts)")


def _candidates(choose, path, names) -> tuple:
    """``[choose]``'s candidates: a list of distinct experiment names of the plan."""
    candidates = choose.get("candidates", [])
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise PlanError(f"{path}, [choose]: candidates = {_toml(candidates)} must be a list of experiment names "
                        "(candidates = [\"a\", \"b\"])")
    twice = sorted({c for c in candidates if candidates.count(c) > 1})
    if twice:
        raise PlanError(f"{path}, [choose]: candidates name {', '.join(map(repr, twice))} twice")
    missing = [c for c in candidates if c not in names]
    if missing:
        raise PlanError(f"{path}: candidates {missing} are not experiments of the plan")
    return tuple(candidates)


def load(path=DEFAULT_PLAN) -> Plan:
    """Read and check a plan; any problem is a :class:`PlanError` before anything runs."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise PlanError(f"cannot read the plan {path}: {e}") from None
    fields = {f.name for f in dataclasses.fields(config_lib.Config)}
    items = raw.get("experiment", [])
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise PlanError(f"{path}: experiment must be an array of tables, one [[experiment]] section per entry")
    entries, seen = [], set()
    for i, item in enumerate(items, 1):
        where = f"{path}, experiment {i} ({item.get('name', 'no name')})"
        _check_entry(item, where, fields)
        if item["name"] in seen:
            raise PlanError(f"{where}: the name {item['name']!r} is used twice")
        seen.add(item["name"])
        if item["recipe"] != CHOSEN and item["recipe"] not in config_lib.RECIPES:
            raise PlanError(f"{where}: unknown recipe {item['recipe']!r}; the recipes are "
                            f"{', '.join(config_lib.RECIPES)} (or {CHOSEN})")
        entry = Entry(item["name"], item["recipe"], item["epochs"], item.get("seed", 0),
                      dict(item.get("overrides", {})), item.get("why", ""), tuple(item.get("chapters", ())))
        try:  # every value checked now, with any recipe standing in for @chosen
            entry.config(chosen="paper")
        except config_lib.ConfigError as e:
            raise PlanError(f"{where}: {e}") from None
        entries.append(entry)
    choose = raw.get("choose", {})
    if not isinstance(choose, dict):
        raise PlanError(f"{path}: choose = {_toml(choose)} must be a table, a [choose] section")
    rule = choose.get("rule", "final holdout top-1")
    if not isinstance(rule, str):
        raise PlanError(f"{path}, [choose]: rule = {_toml(rule)} must be a string")
    candidates = _candidates(choose, path, seen)
    if any(e.name in candidates and e.recipe == CHOSEN for e in entries):
        raise PlanError(f"{path}: a candidate cannot itself use {CHOSEN}")
    if any(e.recipe == CHOSEN for e in entries) and not candidates:
        raise PlanError(f"{path}: entries use {CHOSEN} but [choose] lists no candidates")
    return Plan(tuple(entries), candidates, rule, str(path))


def read_summary(folder) -> dict | None:
    try:
        return json.loads((Path(folder) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def finished(summary) -> bool:
    return bool(summary) and summary.get("finished", summary.get("epochs_done") == summary.get("epochs_planned"))


def choose(plan: Plan, summaries: dict):
    """``(recipe, reason)`` by the plan's rule, or ``(None, why not yet)``.

    ``summaries`` maps entry names to their ``summary.json`` (finished or not).
    """
    if not plan.candidates:
        return None, "the plan names no candidates"
    waiting = [c for c in plan.candidates if not finished(summaries.get(c))]
    if waiting:
        return None, f"waiting for the candidates {', '.join(waiting)} to finish"
    scores = {c: summaries[c]["final"]["holdout_top1"] for c in plan.candidates}
    best = max(plan.candidates, key=lambda c: (scores[c], -plan.candidates.index(c)))
    ranking = ", ".join(f"{c} {scores[c]:.2f}%" for c in sorted(plan.candidates, key=lambda c: -scores[c]))
    recipe = summaries[best]["recipe"]
    return recipe, (f"chose {best} (recipe {recipe}): the highest final holdout top-1 of the candidates "
                    f"({ranking}); validation was not looked at")


def quick_images():
    """(training, evaluation) images per epoch of a quick-mode run."""
    return QUICK_SIZES["max_train_images"], 2 * QUICK_SIZES["max_eval_images"]


def estimate_seconds(cfg, images_per_s, overhead_s, train_images=TRAIN_IMAGES, eval_images=EVAL_IMAGES):
    """How long a run of ``cfg`` should take at the measured training speed, plus a fixed overhead
    (process start, data from the cache, compiling) and a 10% margin."""
    per_epoch = train_images / images_per_s + eval_images / (EVAL_SPEEDUP * images_per_s)
    return 1.1 * (overhead_s + cfg.epochs * per_epoch)
