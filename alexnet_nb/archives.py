"""Extracting the archives this project makes: regular files and folders only, each inside the target, all checked
before anything is written; and putting a GPU call's results into ``results/`` all or nothing.

``tarfile``'s ``filter="data"`` alone is not enough: a long chain of symlinks defeats it on the Pythons before
3.11.13 / 3.12.11 / 3.13.4 (the GPU machine runs 3.12.3). Our archives (the dataset parts, a GPU call's
``results.tar.gz``) hold nothing but files and folders, so anything else refuses the whole archive.
"""

import json
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath


class ArchiveError(ValueError):
    """An archive that is not extracted; the message names it, the member to blame if any, and what to do."""


def _line(error) -> str:
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def _kind(member) -> str:
    if member.issym():
        return "a symlink"
    if member.islnk():
        return "a hard link"
    return "a device or fifo" if member.isdev() else "not a regular file or folder"


def _check(member, archive, root):
    """Refuse a member that is not a file or folder, or whose name leads outside ``root`` (resolved)."""
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute():
        problem = "has an absolute name"
    elif ".." in path.parts:
        problem = "has a '..' part in its name"
    elif not (member.isreg() or member.isdir()):
        problem = f"is {_kind(member)} ({name} -> {member.linkname})" if member.linkname else f"is {_kind(member)}"
    elif not (root / name).resolve().is_relative_to(root):  # through a symlink already in the target
        problem = "would land outside the target once resolved"
    else:
        return
    raise ArchiveError(f"{archive}: refused, nothing extracted: member {name!r} {problem}; this project's archives "
                       "hold only regular files and folders with relative names: make it again with this project")


def _members(tar, archive) -> list:
    """Every member, after reading the archive to its end: a truncated one fails here, before anything is written."""
    members = tar.getmembers()
    stream = tar.fileobj  # decompressed: reading it through checks a gzip's length and checksum
    while stream.read(1 << 20):
        pass
    # A plain tar cut inside a member's data still reads its headers without complaint: the lengths tell.
    end = max((m.offset_data + m.size for m in members if m.isreg()), default=0)
    if stream.tell() < end:
        raise ArchiveError(f"{archive}: truncated ({stream.tell()} of at least {end} bytes); copy it again")
    return members


def extract(archive, target) -> list:
    """Check every member of ``archive``, then extract them all into ``target``; the names at its top level.

    Raises :class:`ArchiveError` before anything is written when the archive is missing, empty, cannot be read
    to its end, or holds anything but regular files and folders inside ``target``.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such file; give the path of an archive this project made")
    if archive.stat().st_size == 0:
        raise ArchiveError(f"{archive}: empty (0 bytes), the copy did not complete; copy it again")
    root = target.resolve()
    unreadable = (tarfile.TarError, EOFError, zlib.error, OSError)
    with open(archive, "rb") as raw:
        try:
            tar = tarfile.open(fileobj=raw)
        except unreadable as e:
            raise ArchiveError(f"{archive}: not a readable archive, truncated or damaged ({_line(e)}); copy it "
                               "again") from None
        with tar:
            try:
                members = _members(tar, archive)
            except unreadable as e:
                raise ArchiveError(f"{archive}: cannot be read to its end, truncated or damaged ({_line(e)}); "
                                   "copy it again") from None
            for member in members:
                _check(member, archive, root)
            try:
                target.mkdir(parents=True, exist_ok=True)
                # "data" as well: it also clears setuid bits and group/other write permissions
                tar.extractall(target, members=members, filter="data")
            except unreadable as e:
                raise ArchiveError(f"{archive}: extracting into {target} failed ({_line(e)})") from None
    return sorted({PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts})


# ---------------------------------------------------------------------------
# A GPU call's results, all or nothing


class _Stranded(ArchiveError):
    """A swap that failed and could not be undone: what was moved aside must be kept for a person to move back."""


def _readable_json(path, what, archive, fix):
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ArchiveError(f"{archive}: {what} is not readable JSON ({_line(e)}); {fix}") from None
    if not isinstance(value, dict):
        raise ArchiveError(f"{archive}: {what} is not a JSON object; {fix}")


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _swap(moves, aside):
    """Move each new path onto its destination, the old one moved aside first; on any failure every destination
    is put back as it was. Renames only (``aside`` is on the same filesystem), so each step is whole."""
    aside.mkdir()
    done, made = [], []  # (destination, where its old one went or None); folders this created
    try:
        for i, (new, dest) in enumerate(moves):
            for parent in reversed(dest.parents):
                if not parent.exists():
                    parent.mkdir()
                    made.append(parent)
            old = aside / str(i) if dest.exists() or dest.is_symlink() else None
            done.append((dest, old))
            if old:
                os.rename(dest, old)
            os.rename(new, dest)
    except BaseException as failure:
        try:
            for dest, old in reversed(done):
                if old is None:
                    _remove(dest)
                elif old.exists() or old.is_symlink():  # else it never left
                    _remove(dest)
                    os.rename(old, dest)
            for folder in reversed(made):
                folder.rmdir()
        except OSError as e:
            raise _Stranded(f"putting it in place failed ({_line(failure)}) and so did putting back ({_line(e)}): "
                            f"the old files are in {aside}, numbered in this order: "
                            f"{', '.join(str(d) for d, _ in done)}; move them back by hand") from None
        raise


UNFINISHED = "no-summary"  # results/logs/<run>-no-summary.log: the log of a run that wrote no summary


def install(archive, results, files=()) -> list:
    """Replace ``results/<run>/`` by each run folder of ``archive`` and put ``files`` (``[(source, name in
    results)]``) beside them: all or nothing. The archive is extracted into a folder next to ``results``, checked
    (it reads to its end; each run folder has a readable ``summary.json``), and only then are whole folders
    swapped. Returns the run names; raises :class:`ArchiveError` with ``results`` unchanged (the message says
    so; in the one case where undoing a failed swap fails too, it says where the old files are instead)."""
    archive, results = Path(archive), Path(results)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{results.name}-unpack-", dir=results.absolute().parent))
    except OSError as e:
        raise ArchiveError(f"{archive}: no folder to unpack into beside {results}/ ({_line(e)})") from None
    keep = False
    try:
        runs = staging / "runs"
        names = extract(archive, runs)
        moves, unfinished = [], []
        for name in names:
            if not (runs / name).is_dir():
                raise ArchiveError(f"{archive}: {name!r} at its top level is not a run folder")
            if not (runs / name / "summary.json").is_file():
                # A run that failed or was killed before its first epoch: no result, but its log says why, and
                # one such run must not keep a call's finished runs from coming home.
                if (runs / name / "train.log").is_file():
                    moves.append((runs / name / "train.log", results / "logs" / f"{name}-{UNFINISHED}.log"))
                unfinished.append(name)
                continue
            _readable_json(runs / name / "summary.json", f"{name}/summary.json", archive,
                           "extract it elsewhere by hand to read it")
            moves.append((runs / name, results / name))
        names = [n for n in names if n not in unfinished]
        for i, (source, name) in enumerate(files):
            copy = staging / "files" / str(i)
            copy.parent.mkdir(exist_ok=True)
            shutil.copy2(source, copy)
            if str(name).endswith(".json"):
                _readable_json(copy, source, archive, "copy it again")
            moves.append((copy, results / name))
        _swap(moves, staging / "aside")
    except _Stranded as e:
        keep = True
        raise ArchiveError(f"{archive}: {e}") from None
    except ArchiveError as e:
        raise ArchiveError(f"{e}; {results}/ is unchanged") from None
    except OSError as e:
        raise ArchiveError(f"{archive}: putting it into {results}/ failed ({_line(e)}); everything was put back, "
                           f"{results}/ is unchanged") from None
    finally:
        if not keep:
            shutil.rmtree(staging, ignore_errors=True)
    return names
