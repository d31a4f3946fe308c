"""A plan that contradicts itself, or holds a value of the wrong kind, is refused in one line naming the plan and the
entry, before anything runs (issue 27, item 5)."""

import pytest

from alexnet_nb import plan as plan_lib

GOOD = """
[choose]
rule = "final holdout top-1"
candidates = ["a", "b"]

[[experiment]]
name = "a"
recipe = "paper"
epochs = 1
why = "first"

[[experiment]]
name = "b"
recipe = "blog"
epochs = 1
seed = 3
overrides = { dropout = 0.0 }
why = "second"
"""

# (what is changed, the text after it, words the one line must hold)
BAD = {
    "epochs in overrides": ('overrides = { dropout = 0.0 }', 'overrides = { epochs = 5 }',
                            ["experiment 2 (b)", "'epochs'", "overrides", "epochs = ..."]),
    "seed in overrides": ('overrides = { dropout = 0.0 }', 'overrides = { seed = 7 }', ["(b)", "'seed'", "seed = ..."]),
    "name in overrides": ('overrides = { dropout = 0.0 }', 'overrides = { name = "c" }', ["(b)", "'name'"]),
    "recipe in overrides": ('overrides = { dropout = 0.0 }', 'overrides = { recipe = "ours" }', ["(b)", "'recipe'"]),
    "overrides not a table": ('overrides = { dropout = 0.0 }', 'overrides = "dropout"', ["(b)", "overrides", "table"]),
    "experiment not an array of tables": (None, 'experiment = 5\n', ["experiment", "[[experiment]]"]),
    "an experiment not a table": (None, 'experiment = [1, 2]\n', ["experiment", "[[experiment]]"]),
    "candidates a string": ('candidates = ["a", "b"]', 'candidates = "a"', ["candidates", "list of experiment names"]),
    "candidates not strings": ('candidates = ["a", "b"]', 'candidates = ["a", 2]',
                               ["candidates", "list of experiment names"]),
    "a duplicated candidate": ('candidates = ["a", "b"]', 'candidates = ["a", "b", "a"]',
                               ["candidates", "'a'", "twice"]),
    "epochs a string": ('epochs = 1\nwhy = "first"', 'epochs = "1"\nwhy = "first"',
                        ["experiment 1 (a)", "epochs", "integer"]),
    "epochs a float": ('epochs = 1\nwhy = "first"', 'epochs = 1.5\nwhy = "first"', ["(a)", "epochs", "integer"]),
    "epochs a bool": ('epochs = 1\nwhy = "first"', 'epochs = true\nwhy = "first"', ["(a)", "epochs", "integer"]),
    "epochs zero": ('epochs = 1\nwhy = "first"', 'epochs = 0\nwhy = "first"', ["(a)", "epochs", ">= 1"]),
    "seed a float": ("seed = 3", "seed = 3.5", ["experiment 2 (b)", "seed", "integer"]),
    "seed a string": ("seed = 3", 'seed = "3"', ["(b)", "seed", "integer"]),
    "why not a string": ('why = "second"', "why = 2", ["(b)", "why", "string"]),
    "name not a string": ('name = "b"', "name = 2", ["experiment 2", "name", "string"]),
    "recipe not a string": ('recipe = "blog"', 'recipe = ["blog"]', ["(b)", "recipe", "string"]),
    "choose not a table": ('[choose]\nrule = "final holdout top-1"\ncandidates = ["a", "b"]\n', 'choose = 5\n',
                           ["[choose]", "table"]),
    "rule not a string": ('rule = "final holdout top-1"', "rule = 1", ["[choose]", "rule", "string"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_plan_that_contradicts_itself_or_has_a_wrong_type_is_refused_in_one_line(tmp_path, case):
    old, new, words = BAD[case]
    if old is None:  # replaces every [[experiment]] (and the candidates that name them)
        text = new + '[choose]\nrule = "final holdout top-1"\n'
    else:
        assert old in GOOD, old
        text = GOOD.replace(old, new, 1)
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(plan_lib.PlanError) as e:
        plan_lib.load(path)
    message = str(e.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message, (word, message)


def test_the_good_plan_loads(tmp_path):
    (tmp_path / "plan.toml").write_text(GOOD)
    plan = plan_lib.load(tmp_path / "plan.toml")
    assert [e.name for e in plan.entries] == ["a", "b"] and plan.candidates == ("a", "b")
    assert plan.entries[1].seed == 3 and plan.entries[1].overrides == {"dropout": 0.0}
