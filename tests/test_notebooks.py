"""Every notebook begins the same way and carries real, executed outputs.

The checks here are about structure; ``pytest --nbval-lax notebooks`` runs
them. The committed outputs come from the real dataset, so they must be
complete (every code cell executed, in order) and free of this machine's paths.
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
