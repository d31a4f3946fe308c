"""What the results notebook computes: which run, which numbers, the test-time views.

Everything here returns plain tensors, arrays, dicts or pandas tables;
``plots`` draws them. The reference numbers live in one place
(``REFERENCES``) so that the notebook's lines, tables and prose cannot drift
apart, and so does the rule for which epoch a run reports (``reported``).
Per-class numbers and confusions are in ``confusion``, nearest neighbours in
``neighbours``.
"""

import importlib.metadata
import io
import json
import math
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from alexnet_nb import augment, checkpoint, drive, env, evaluate, run_folder
from alexnet_nb.sources import DRIVE_MOUNT

PAPER_TITLE = ("Krizhevsky, Sutskever, Hinton, \"ImageNet Classification with Deep Convolutional Neural "
               "Networks\", NeurIPS 2012")
PAPER_URL = "https://proceedings.neurips.cc/paper/2012/hash/c399862d3b9d6b76c8436e924a68c45b-Abstract.html"
BLOG_CODE_URL = "https://github.com/aandyw/StuffFromScratch/tree/main/AlexNet"


@dataclass(frozen=True)
class Reference:
    """A published or aimed-for result, as accuracy in percent."""

    name: str
    top1: float
    top5: float
    task: str


# The paper reports error on a different task (1,000 classes, full-resolution
# images, ILSVRC-2010 test set); 37.5% / 17.0% error is 62.5% / 83.0% accuracy.
BLOG = Reference("blog", 31.75, 58.76, "Tiny ImageNet val, 200 classes, 64x64, ~30 epochs on a T4")
TARGET = Reference("our target", 50.0, 75.0, "Tiny ImageNet val, 200 classes, 64x64")
PAPER = Reference("paper", 62.5, 83.0, "ILSVRC-2010 test, 1,000 classes, full resolution (a different task)")
REFERENCES = (BLOG, TARGET, PAPER)
ALL_CLASSES = 200


def references_for(classes) -> tuple:
    """The references a run may be drawn against: the blog and our target for a 200-class run, else none.

    On a class subset the task is easier (on 10 classes guessing scores 50%
    top-5), so a line at the blog's 58.76% would invite a false comparison.
    """
    return (BLOG, TARGET) if classes == ALL_CLASSES else ()


def chance(classes: int) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (percent) of guessing uniformly among ``classes`` classes."""
    return 100.0 / classes, 100.0 * min(5, classes) / classes


def standard_error(percent: float, n: int) -> float:
    """One standard error (percentage points) of an accuracy measured on ``n`` images: sqrt(p(1-p)/n)."""
    p = percent / 100
    return 100.0 * math.sqrt(p * (1 - p) / max(n, 1))


# ---------------------------------------------------------------- run histories

def repo_results() -> Path:
    """``results/`` of the clone this package was installed from (absent after a pip install from GitHub)."""
    return Path(__file__).resolve().parent.parent / "results"


def results_url() -> str:
    """Raw-file URL of the committed ``results/``, built from the package's own Repository URL."""
    urls = importlib.metadata.metadata("alexnet_nb").get_all("Project-URL") or []
    repo = next(u.split(",", 1)[1].strip() for u in urls if u.startswith("Repository"))
    return repo.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/main/results"


def _read_result(run: str, filename: str, results_dir=None) -> bytes:
    return _read_results_file(f"{run}/{filename}", results_dir)


def _read_results_file(relative: str, results_dir=None) -> bytes:
    # A clone has the files on disk; in Colab only the package is installed, so
    # the same committed file is fetched from GitHub instead.
    local = Path(results_dir) if results_dir is not None else repo_results()
    path = local / relative
    if path.exists():
        return path.read_bytes()
    with urllib.request.urlopen(f"{results_url()}/{relative}", timeout=30) as response:
        return response.read()


def committed_runs(results_dir=None) -> list[str]:
    """The finished 200-class runs committed in ``results/``, in the GPU plan's order (its ``index.json``,
    written by ``python -m alexnet_nb.experiments report``)."""
    return json.loads(_read_results_file("index.json", results_dir))["runs_200"]


def runs_table(histories: dict) -> pd.DataFrame:
    """Each run's reported (final-epoch, centre view) validation accuracy, then the blog's and our target."""
    rows = [dict(result=name, top1=r["top1"], top5=r["top5"], epochs=r["epoch"])
            for name, r in ((name, reported(h)) for name, h in histories.items())]
    rows += [dict(result="blog, as published" if ref is BLOG else ref.name, top1=ref.top1, top5=ref.top5, epochs=None)
             for ref in (BLOG, TARGET)]  # "as published": the run named blog is the blog's recipe in our engine
    table = pd.DataFrame(rows).set_index("result")
    table["epochs"] = table["epochs"].astype("Int64")
    return table


def load_history(run: str, results_dir=None) -> pd.DataFrame:
    """The per-epoch history (``history.csv``) of a committed run in ``results/<run>/``."""
    return pd.read_csv(io.BytesIO(_read_result(run, "history.csv", results_dir)))


def load_summary(run: str, results_dir=None) -> dict:
    """The run's ``summary.json``: what was trained, on what, and where."""
    return json.loads(_read_result(run, "summary.json", results_dir))


def run_folders() -> list[Path]:
    """Where a run is looked for by name: the runs folder, the clone's ``runs/``, and Drive when it is mounted."""
    return [env.runs_dir(), repo_results().parent / "runs", drive.RUNS]


def find_checkpoint(run: str) -> Path | None:
    """``checkpoint.pt`` of ``run`` in one of ``run_folders()``; None if nowhere."""
    for folder in run_folders():
        path = folder / run / checkpoint.NAME
        if path.is_file():
            return path
    return None


@dataclass
class Run:
    """A trained run as the results chapter reads it."""

    name: str
    history: pd.DataFrame
    summary: dict
    checkpoint: Path | None  # None: only the history is at hand (a committed run without its weights)
    where: str  # "run folder", "checkpoint file", "results/ of this clone" or "GitHub": no local path

    @property
    def classes(self) -> int:
        """How many classes the run was trained on (its summary's, else its config's, else all 200)."""
        config = self.summary.get("config") or {}
        return int(self.summary.get("classes") or config.get("classes") or ALL_CLASSES)


def _summary_from_state(name, state) -> dict:
    # A checkpoint copied without its folder still says what it was.
    return {"run": name, "classes": state.get("num_classes"), "epochs_done": state["epoch"],
            "config": state["config"], "note": "no summary.json beside the checkpoint: read from the checkpoint"}


def _from_folder(folder: Path, ckpt: Path | None, where: str) -> Run:
    state = None
    if (folder / "history.csv").is_file():
        history = pd.read_csv(folder / "history.csv")
    else:
        state = checkpoint.read(ckpt)
        history = checkpoint.history_frame(state)
    if (folder / "summary.json").is_file():
        summary = json.loads((folder / "summary.json").read_text())
    else:
        summary = _summary_from_state(folder.name, state or checkpoint.read(ckpt))
    return Run(folder.name, history, summary, ckpt, where)


def open_run(run, results_dir=None) -> Run:
    """The run ``run`` names: a run name, a run folder, or a checkpoint file (local or on a mounted Drive).

    * a path to a checkpoint (``.../checkpoint.pt`` or any ``.pt``): its weights,
      with ``history.csv``/``summary.json`` from beside it when it is a run
      folder's ``checkpoint.pt``, else the history and config stored inside it;
    * a path to a run folder (holding ``history.csv`` or ``checkpoint.pt``);
    * a name: ``<folder>/<name>`` for each of ``run_folders()`` (the runs
      folder, the clone's ``runs/``, Drive's ``alexnet-nb/runs``), else the
      committed ``results/<name>`` of this clone, else the same on GitHub;
      a committed run has no checkpoint unless a runs folder holds one.

    A path under ``/content/drive`` mounts Google Drive first (Colab).
    """
    text = str(run).strip()
    path = Path(text).expanduser()
    if text.startswith(str(DRIVE_MOUNT)) and env.in_colab():
        drive.mount()
    if path.suffix == ".pt" or path.is_file():
        if path.name == checkpoint.NAME and (path.parent / "history.csv").is_file():
            return _from_folder(path.parent, path, "checkpoint file")
        state = checkpoint.read(path)  # raises CheckpointError naming the file when it is missing or damaged
        return Run(path.parent.name, checkpoint.history_frame(state), _summary_from_state(path.parent.name, state),
                   path, "checkpoint file")
    if path.is_dir() and run_folder.holds_run(path):
        ckpt = path / checkpoint.NAME
        return _from_folder(path, ckpt if ckpt.is_file() else None, "run folder")
    if "/" in text or path.is_absolute():
        raise FileNotFoundError(f"{text} is neither a run folder (holding history.csv or {checkpoint.NAME}) "
                                f"nor a checkpoint file.")
    for folder in run_folders():
        if run_folder.holds_run(folder / text):
            ckpt = folder / text / checkpoint.NAME
            return _from_folder(folder / text, ckpt if ckpt.is_file() else None, "run folder")
    local = (Path(results_dir) if results_dir is not None else repo_results()) / text
    try:
        history, summary = load_history(text, results_dir), load_summary(text, results_dir)
    except OSError as e:
        looked = ", ".join(str(f) for f in run_folders())
        raise FileNotFoundError(f"no run named {text!r}: not in {looked}, not in the committed results/ and not "
                                f"on GitHub ({e}). Give a run name, a run folder or a checkpoint path; a run on "
                                f"Google Drive is found by name once Drive is mounted (USE_DRIVE).") from None
    return Run(text, history, summary, find_checkpoint(text),
               "results/ of this clone" if (local / "history.csv").is_file() else "GitHub")


def quick_run(run=None, name="quick-results") -> str:
    """Quick mode's run: ``run`` when the runs folder holds its checkpoint (chapter 3's quick run, when chapter 3
    ran first, as on the plan's path), else a stand-in of seconds of training on the generated data, once per
    runs folder. Only the runs folder is looked in: a clone's own runs must not turn a smoke test into hours."""
    if run and (env.runs_dir() / str(run) / checkpoint.NAME).is_file():
        return str(run)
    if find_checkpoint(name) is None:
        from alexnet_nb import config, train

        train.fit(config.recipe("paper", quick=True, name=name, progress=False))
    return name


def reported(history: pd.DataFrame) -> dict:
    """What this suite reports for a run: the validation top-1/top-5 (centre crop) of its FINAL epoch.

    Not the best epoch: the recipe, its number of epochs included, is fixed
    before the run starts, and picking the epoch with the best validation score
    would tune on the validation set. The holdout only compares recipes
    (``summary.json``'s ``best_by_holdout``).
    """
    last = history.iloc[-1]
    return {"epoch": int(last["epoch"]), "top1": float(last["val_top1"]), "top5": float(last["val_top5"])}


def describe_reported(history: pd.DataFrame, classes: int, images: int | None = None) -> str:
    """The reported scores in one line, next to guessing and, given the number of images scored, the noise."""
    ours, (guess1, guess5) = reported(history), chance(classes)
    line = (f"reported, final epoch {ours['epoch']}: validation top-1 {ours['top1']:.1f}% (guessing: {guess1:.1f}%), "
            f"top-5 {ours['top5']:.1f}% (guessing: {guess5:.1f}%), {classes} classes")
    if images:
        noise = standard_error(ours["top1"], images)
        line += f"; one standard error of the top-1 on {images:,} images: {noise:.1f} points"
    return line


def final_table(history: pd.DataFrame, run: str = "this run",
                task: str = "Tiny ImageNet val (see the run's summary)") -> pd.DataFrame:
    """The reported (final-epoch) validation accuracy, centre view, next to the blog's, our target and the paper's."""
    ours = reported(history)
    rows = [dict(result=run, top1=ours["top1"], top5=ours["top5"], epochs=ours["epoch"], task=task)]
    rows += [dict(result=r.name, top1=r.top1, top5=r.top5, epochs=None, task=r.task) for r in REFERENCES]
    table = pd.DataFrame(rows).set_index("result")
    table["epochs"] = table["epochs"].astype("Int64")  # whole numbers, blank for the references
    return table


# ---------------------------------------------------------------- test-time views

@torch.no_grad()
def predict(net, images_u8, views="center", batch_size=256, device=None, crop_size=augment.CROP_SIZE,
            image_size=augment.IMAGE_SIZE) -> torch.Tensor:
    """Softmax probabilities [N, classes] on the CPU, from the centre view or the paper's ten views.

    With ``views="ten"`` the softmax (not the logits) of the four corner crops,
    the centre crop and their mirror images is averaged, as in the paper's section 4.1.
    """
    if views not in ("center", "ten"):
        raise ValueError(f"views must be 'center' or 'ten', not {views!r}")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval()
    out = []
    for start in range(0, len(images_u8), batch_size):
        batch = images_u8[start:start + batch_size].to(device)
        if views == "center":
            batches = [augment.center_view(batch, crop_size=crop_size, image_size=image_size)]
        else:
            batches = augment.ten_views(batch, crop_size=crop_size, image_size=image_size)
        probs = sum(torch.softmax(net(v).float(), dim=1) for v in batches) / len(batches)
        out.append(probs.cpu())
    net.train(was_training)
    return torch.cat(out)


def first_per_class(split, per_class: int):
    """The first ``per_class`` images of every class, in the split's order: a small sample with every class in it."""
    keep = torch.cat([(split.labels == c).nonzero().flatten()[:per_class] for c in range(len(split.classes))])
    return split.subset(keep.sort().values)


def view_table(net, split, batch_size=256, device=None, crop_size=augment.CROP_SIZE) -> tuple[pd.DataFrame, dict]:
    """Top-1/top-5 of the centre view and of the ten views; also returns ``{"ten": probabilities}``.

    The centre row comes from ``evaluate.evaluate``, the very function that
    wrote the history's ``val_top1``/``val_top5``, so the table matches the history.
    """
    centre = evaluate.evaluate(net, split, batch_size, device, crop_size)
    probs = {"ten": predict(net, split.images, "ten", batch_size, device, crop_size)}
    top1, top5 = evaluate.accuracy(probs["ten"], split.labels)  # the count training uses
    rows = {"centre view": dict(top1=centre["top1"], top5=centre["top5"]),
            "ten views (paper)": dict(top1=top1, top5=top5)}
    return pd.DataFrame.from_dict(rows, orient="index"), probs


def prediction_spread(predictions, num_classes: int) -> dict:
    """How the top-1 predictions spread over the classes.

    ``most_predicted`` (label) takes ``share`` percent of the predictions;
    ``fair_share`` is what each class would take if the network predicted
    every class as often as the balanced validation set holds it;
    ``classes_predicted`` counts the classes predicted at least once.
    """
    counts = torch.bincount(torch.as_tensor(predictions).cpu(), minlength=num_classes)
    top = int(counts.argmax())
    return {"most_predicted": top, "share": 100.0 * int(counts[top]) / max(int(counts.sum()), 1),
            "fair_share": 100.0 / num_classes, "classes_predicted": int((counts > 0).sum())}


def pick_examples(probs: torch.Tensor, labels: torch.Tensor, right=4, wrong=4, seed=0) -> list[int]:
    """Indices of ``right`` correctly and ``wrong`` wrongly classified images (top-1), drawn at random."""
    correct = probs.argmax(dim=1) == labels
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for mask, n in ((correct, right), (~correct, wrong)):
        pool = mask.nonzero().flatten()
        chosen += pool[torch.randperm(len(pool), generator=generator)[:n]].tolist()
    return chosen
