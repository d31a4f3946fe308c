"""Every notebook begins the same way, opens in Colab on a GPU, needs no hand edits, and carries executed outputs.

The checks here are about structure; ``pytest --nbval-lax notebooks`` runs
them. The committed outputs must be complete (every code cell executed, in
order) and free of this machine's paths.
"""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["01_data", "02_model", "03_train", "04_results"]
MACHINE_PATHS = re.compile(r"(/work/|/root/|/tmp/|/home/|alexnet_nb_quick_)")
# Text that asks a reader to change code by hand, and paths only one person's machine has.
ASKS_FOR_AN_EDIT = re.compile(r"(?i)(#\s*edit\b|\bedit (this|the|your) (path|line|cell)|change (this|the) path"
                              r"|/path/to\b|<path>|path/to/|your[-_/ ]?path\b|replace with your)")
USER_PATHS = re.compile(r"(/content/drive/MyDrive/\S|/Users/\w|/home/\w|[A-Z]:\\\\|~/)")
DATA_FORM = [
    'DATA_SOURCE = "official"  # @param ["official", "url", "drive-id", "local", "my-drive"]',
    'DATA_LOCATION = ""  # @param {type:"string"}',
    "source = data.dataset_source(DATA_SOURCE, DATA_LOCATION)",
]


def repo_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_the_four_chapters_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_badge_then_setup_then_imports(path):
    first, setup, imports = cells(path)[:3]
    url = repo_url()
    slug = url.removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}"
    assert first["cell_type"] == "markdown"
    assert "colab-badge.svg" in source(first) and badge in source(first)

    assert setup["cell_type"] == "code"
    text = source(setup)
    assert f'REPO_URL = "{url}"' in text
    assert '"google.colab" in sys.modules' in text
    assert "pip" in text and "git+{REPO_URL}" in text

    assert imports["cell_type"] == "code"
    lines = [ln for ln in source(imports).splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines and all(ln.startswith(("import ", "from ")) for ln in lines)
    assert not any(ln.rstrip().endswith("import *") for ln in lines)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_complete_and_portable(path):
    code = [c for c in cells(path) if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert all(isinstance(n, int) for n in counts), f"{path.name}: a code cell was not executed"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    for cell in code:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: a committed cell raised"
            text = json.dumps({k: v for k, v in out.items() if k != "data"}) + json.dumps(
                out.get("data", {}).get("text/plain", "")
            )
            assert not MACHINE_PATHS.search(text), f"{path.name}: output shows a local path"


def test_quick_mode_is_switched_by_the_harness_not_the_notebooks():
    for path in NOTEBOOKS:
        assert "ALEXNET_NB_QUICK" not in path.read_text(), path.name
    conftest = (ROOT / "notebooks" / "conftest.py").read_text()
    assert 'os.environ["ALEXNET_NB_QUICK"] = "1"' in conftest


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_colab_opens_every_chapter_on_a_t4(path):
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata["accelerator"] == "GPU"
    assert metadata["colab"]["gpuType"] == "T4"
    assert metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_gpu_check_comes_right_after_the_imports(path):
    check = cells(path)[3]
    # Above it are only the badge, the setup and the imports (test_badge_then_setup_then_imports): nothing slow.
    assert check["cell_type"] == "code" and "runtime.check_gpu(" in source(check)


def data_source_cells(path):
    return [source(c) for c in cells(path) if c["cell_type"] == "code" and "DATA_SOURCE" in source(c)]


def test_one_data_source_form_the_same_in_every_notebook():
    from alexnet_nb import data

    found = {path.stem: data_source_cells(path) for path in NOTEBOOKS}
    assert all(len(texts) == 1 for texts in found.values()), {k: len(v) for k, v in found.items()}
    assert len({texts[0] for texts in found.values()}) == 1, "the data-source cell differs between notebooks"
    lines = found[EXPECTED[0]][0].splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == DATA_FORM
    # The form offers exactly the kinds the package accepts, in its order.
    offered = re.search(r"@param (\[.*\])", DATA_FORM[0]).group(1)
    assert json.loads(offered) == list(data.KINDS)


def edit_requests(path):
    """Cells that ask the reader to edit code by hand, or that hard-code a path of one person's machine."""
    bad = []
    for i, cell in enumerate(cells(path)):
        text = source(cell)
        if ASKS_FOR_AN_EDIT.search(text) or (cell["cell_type"] == "code" and USER_PATHS.search(text)):
            bad.append(i)
    return bad


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_asks_for_a_hand_edit(path):
    assert edit_requests(path) == [], f"{path.name}: cells {edit_requests(path)} ask for a hand edit"


def test_the_hand_edit_check_catches_what_it_is_for(tmp_path):
    asks = ['RUN = "x"  # edit me', "Change this path to your copy.", 'open("/path/to/data.zip")',
            'folder = "/content/drive/MyDrive/my-runs"', 'source = "/home/alice/tiny"']
    fine = ['RUN = "cpu-10class"  # @param {type:"string"}', "Runs go to MyDrive/alexnet-nb/runs when asked."]
    notebook = {"cells": [{"cell_type": "code", "source": [text]} for text in asks + fine], "metadata": {}}
    path = tmp_path / "probe.ipynb"
    path.write_text(json.dumps(notebook))
    assert edit_requests(path) == list(range(len(asks)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_ends_with_five_to_eight_exercises(path):
    last = cells(path)[-1]
    assert last["cell_type"] == "markdown"
    exercises = source(last).split("## Exercises", 1)
    assert len(exercises) == 2, f"{path.name}: the last cell has no Exercises section"
    numbered = re.findall(r"^(\d+)\. ", exercises[1], flags=re.M)
    assert 5 <= len(numbered) <= 8 and numbered == [str(i) for i in range(1, len(numbered) + 1)], numbered
