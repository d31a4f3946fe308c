"""Extracting archives: only regular files and folders, inside the target, all checked before anything is written;
unpacking a GPU call's results is all or nothing (issue 27, items 1, 2 and 12)."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from alexnet_nb import archives, dataset_parts, experiments


def _member(tar, name, kind="file", text=b"x", link=""):
    info = tarfile.TarInfo(name)
    if kind == "file":
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        return
    info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
    info.linkname = link
    tar.addfile(info)


def _archive(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            _member(tar, *m)
    return path


def _chain(depth=12):
    """A long chain of symlinks ending outside the target, then a file written through it: what defeats
    ``filter="data"`` on the Pythons before 3.11.13 / 3.12.11 / 3.13.4."""
    members = [("run", "dir"), ("run/l0", "symlink", b"", ".")]
    members += [(f"run/l{i}", "symlink", b"", f"l{i - 1}/l{i - 1}") for i in range(1, depth)]
    members += [("run/up", "symlink", b"", f"l{depth - 1}/" + "../" * 3), ("run/up/escaped.txt", "file", b"out")]
    return members


BAD = {
    "symlink": ([("run", "dir"), ("run/summary.json", "symlink", b"", "other.json")], "run/summary.json", "symlink"),
    "dotdot": ([("run", "dir"), ("run/../x", "file")], "run/../x", ".."),
    "absolute": ([("/tmp/abs-x", "file")], "/tmp/abs-x", "absolute"),
    "chain": (_chain(), "run/l0", "symlink"),
    "hardlink": ([("run/a", "file"), ("run/b", "hardlink", b"", "run/a")], "run/b", "link"),
}


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_archive_with_anything_but_files_and_folders_inside_is_refused_before_anything_is_written(tmp_path, case):
    members, offender, why = BAD[case]
    archive = _archive(tmp_path / "in" / "bad.tar.gz", members)
    target = tmp_path / "box" / "target"
    target.parent.mkdir()
    with pytest.raises(archives.ArchiveError) as e:
        archives.extract(archive, target)
    message = str(e.value)
    assert "\n" not in message and str(archive) in message and repr(offender) in message and why in message
    assert not target.exists() and _files(tmp_path / "box") == []  # nothing written, inside or beside it
    assert _files(tmp_path) == ["box", "in", "in/bad.tar.gz"]
    assert not Path("/tmp/abs-x").exists()


def test_a_member_inside_the_target_by_name_but_outside_once_resolved_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "elsewhere").symlink_to(tmp_path / "outside", target_is_directory=True)
    archive = _archive(tmp_path / "a.tar.gz", [("elsewhere/x", "file")])
    with pytest.raises(archives.ArchiveError, match="outside"):
        archives.extract(archive, target)
    assert not (tmp_path / "outside").exists()


def test_a_normal_archive_extracts(tmp_path):
    archive = _archive(tmp_path / "a.tar.gz", [("run", "dir"), ("run/summary.json", "file", b"{}"),
                                               ("./run/sub/history.csv", "file", b"epoch\n1\n")])
    assert archives.extract(archive, tmp_path / "t") == ["run"]
    assert (tmp_path / "t" / "run" / "summary.json").read_text() == "{}"
    assert (tmp_path / "t" / "run" / "sub" / "history.csv").read_text() == "epoch\n1\n"


def test_a_truncated_or_empty_archive_is_refused_before_anything_is_written(tmp_path):
    whole = _archive(tmp_path / "whole.tar.gz", [("run/big.bin", "file", bytes(range(256)) * 4000)])
    for name, data in (("cut.tar.gz", whole.read_bytes()[: whole.stat().st_size // 2]), ("empty.tar.gz", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(archives.ArchiveError) as e:
            archives.extract(tmp_path / name, tmp_path / "t")
        assert name in str(e.value) and not (tmp_path / "t").exists()
    # a plain tar cut inside a member's data reads its headers without complaint: the lengths tell
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        _member(tar, "run/big.bin", "file", bytes(1000))
    (tmp_path / "cut.tar").write_bytes(plain.read_bytes()[:700])
    with pytest.raises(archives.ArchiveError, match="truncated"):
        archives.extract(tmp_path / "cut.tar", tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_the_gpu_command_refuses_a_dataset_part_with_a_link_and_extracts_the_others(tmp_path):
    carry = tmp_path / "carry"
    _archive(carry / "tiny-imagenet-200-train-0.tar.gz", [("tiny-imagenet-200/wnids.txt", "file", b"n01\n")])
    _archive(carry / "tiny-imagenet-200-train-1.tar.gz", _chain())
    data = tmp_path / "data"
    rows = dict(dataset_parts.extract([carry], data))
    assert rows["tiny-imagenet-200-train-0.tar.gz"] == "extracted"
    refused = rows["tiny-imagenet-200-train-1.tar.gz"]
    assert refused.startswith("not extracted:") and "refused" in refused and "symlink" in refused
    assert _files(data) == [".parts", ".parts/tiny-imagenet-200-train-0.tar.gz", "tiny-imagenet-200",
                            "tiny-imagenet-200/wnids.txt"]  # no marker: the next call tries the refused part again


# ---------------------------------------------------------------------------
# unpack: a GPU call's results.tar.gz into results/


def _results(home):
    """An existing results/ with two finished runs."""
    for name, top1 in (("paper", 40.0), ("ours", 50.0)):
        (home / "results" / name).mkdir(parents=True)
        (home / "results" / name / "summary.json").write_text(json.dumps({"run": name, "top1": top1}))
        (home / "results" / name / "history.csv").write_text(f"epoch,top1\n30,{top1}\n")
    (home / "results" / "bench-gpu-nvidia-h200.json").write_text('{"device": "old"}')


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in Path(folder).rglob("*")}


def _call_archive(folder, runs):
    """A GPU call's output: results.tar.gz with the run folders ``{name: summary text}``."""
    members = []
    for name, summary in runs.items():
        members += [(name, "dir"), (f"{name}/summary.json", "file", summary.encode()),
                    (f"{name}/history.csv", "file", b"epoch,top1\n30,55.0\n" * 2000)]
    return _archive(folder / "results.tar.gz", members)


def _unpack(home, archive, monkeypatch, capsys):
    monkeypatch.chdir(home)
    with pytest.raises(SystemExit) as e:
        experiments.main(["unpack", str(archive)])
    err = capsys.readouterr().err
    return e.value.code, err


@pytest.mark.parametrize("case", ["truncated", "empty", "missing", "refused", "torn summary"])
def test_a_failed_unpack_leaves_results_unchanged_and_says_so_in_one_line(tmp_path, monkeypatch, capsys, case):
    home = tmp_path / "home"
    _results(home)
    before = _snapshot(home)
    out = tmp_path / "out"
    archive = _call_archive(out, {"ours": '{"run": "ours", "top1": 55.0}', "new": '{"run": "new"}'})
    (out / "bench-gpu.json").write_text(json.dumps({"device": "NVIDIA H200", "device_type": "cuda"}))
    (out / "gpu.log").write_text("=== gpu call at 2026-11-27 09:30:09; archives x\n")
    if case == "truncated":
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    elif case == "empty":
        archive.write_bytes(b"")
    elif case == "missing":
        archive.unlink()
    elif case == "refused":
        _archive(archive, [("ours", "dir"), ("ours/summary.json", "file", b"{}"), ("ours/x", "symlink", b"", "..")])
    else:
        _call_archive(out, {"ours": '{"run": "ours", "top1": 5'})
    code, err = _unpack(home, archive, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and str(archive) in err
    assert "results/ is unchanged" in err and "Traceback" not in err
    assert _snapshot(home) == before  # byte for byte, and no folder left beside it


def test_a_run_that_wrote_no_summary_keeps_only_its_log_and_the_finished_runs_come_home(tmp_path, monkeypatch,
                                                                                         capsys):
    home = tmp_path / "home"
    _results(home)
    archive = tmp_path / "out" / "results.tar.gz"
    archive.parent.mkdir()
    _archive(archive, [("ours", "dir"), ("ours/summary.json", "file", b'{"run": "ours"}'), ("cut", "dir"),
                       ("cut/train.log", "file", b"Traceback: killed")])
    monkeypatch.chdir(home)
    experiments.main(["unpack", str(archive)])
    results = home / "results"
    assert json.loads((results / "ours" / "summary.json").read_text()) == {"run": "ours"}
    assert not (results / "cut").exists()
    assert (results / "logs" / "cut-no-summary.log").read_text() == "Traceback: killed"


def test_unpack_replaces_whole_run_folders_and_keeps_the_others(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    _results(home)
    (home / "results" / "ours" / "stale.png").write_bytes(b"old picture")
    out = tmp_path / "out"
    archive = _call_archive(out, {"ours": '{"run": "ours", "top1": 55.0}', "new": '{"run": "new"}'})
    (out / "bench-gpu.json").write_text(json.dumps({"device": "NVIDIA H200", "device_type": "cuda"}))
    (out / "gpu.log").write_text("=== gpu call at 2026-11-27 09:30:09; archives x\n")
    monkeypatch.chdir(home)
    experiments.main(["unpack", str(archive)])
    results = home / "results"
    assert json.loads((results / "ours" / "summary.json").read_text())["top1"] == 55.0
    assert not (results / "ours" / "stale.png").exists()  # the whole folder was replaced
    assert (results / "new" / "summary.json").exists() and (results / "paper" / "history.csv").exists()
    assert json.loads((results / "bench-gpu-nvidia-h200.json").read_text())["device"] == "NVIDIA H200"
    assert (results / "logs" / "gpu-20261127093009.log").exists()
    assert sorted(p.name for p in home.iterdir()) == ["results"]  # the staging folder is gone


def test_a_swap_that_fails_midway_puts_back_what_it_had_moved(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _results(tmp_path)
    archive = _call_archive(tmp_path / "out", {"ours": '{"run": "ours"}', "paper": '{"run": "paper"}'})
    before = _snapshot(tmp_path)
    real, calls = archives.os.rename, []

    def rename(src, dst):  # the third move fails: "ours" was swapped, "paper" half
        calls.append(dst)
        if len(calls) == 3:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(archives.os, "rename", rename)
    with pytest.raises(archives.ArchiveError, match="disk full"):
        archives.install(archive, results)
    monkeypatch.setattr(archives.os, "rename", real)
    assert _snapshot(tmp_path) == before and len(calls) > 3  # the moves back ran too


def test_when_putting_back_fails_too_the_old_files_are_kept_and_named(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _results(tmp_path)
    archive = _call_archive(tmp_path / "out", {"ours": '{"run": "ours"}', "paper": '{"run": "paper"}'})
    real, calls = archives.os.rename, []

    def rename(src, dst):  # the third move fails, and so does every move after it
        calls.append(dst)
        if len(calls) >= 3:
            raise OSError("disk gone")
        real(src, dst)

    monkeypatch.setattr(archives.os, "rename", rename)
    with pytest.raises(archives.ArchiveError) as e:
        archives.install(archive, results)
    monkeypatch.setattr(archives.os, "rename", real)
    message = str(e.value)
    assert "is unchanged" not in message and "move them back by hand" in message
    aside = Path(message.split("the old files are in ")[1].split(",")[0])
    assert json.loads((aside / "0" / "summary.json").read_text())["top1"] == 50.0  # the old "ours", kept
