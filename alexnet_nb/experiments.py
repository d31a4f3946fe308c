"""GPU time as one command (``gpu``), and the plan's other commands: run, status, unpack, report.

    python -m alexnet_nb.experiments gpu --archives .carry1 --out $OUT   # the same command for every call
    python -m alexnet_nb.experiments run --budget 600                      # run the plan on this machine
    python -m alexnet_nb.experiments status                                # the plan: done, waiting, estimates
    python -m alexnet_nb.experiments unpack results.tar.gz                 # what a GPU call brought back
    python -m alexnet_nb.experiments report [--check]                      # README's tables from results/

``gpu`` is idempotent: each call extracts the dataset parts it finds (skipping
those already extracted); while the dataset is incomplete it warms the compile
cache (``warm_targets``) and returns within about two minutes; once the
dataset is complete and verified it runs the speed matrix (once per machine),
then the plan (``alexnet_nb.plan``) within what is left of its budget (default:
the command ends within 9 minutes), and packs what it produced into at most 8
files under ``--out``. Its last lines are a table of what ran, what was skipped
and why. State that must survive between calls on the same machine (results of
this machine, the bench record, logs) lives under ``runs/gpu/``, which git
ignores; committed results live in ``results/``.
"""

import argparse
import json
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path

from alexnet_nb import cli, dataset_parts, env, plan as plan_lib
from alexnet_nb import estimates, plan_chapters, runner
from alexnet_nb.child_process import STOP, CommandBusy, CommandLock, run_logged
from alexnet_nb.runner import PACK_SECONDS, RESULTS, STATE, Clock, Log, run_plan, summaries, table

COMMAND_SECONDS = 9 * 60
PLAN_RUNS = "plan"  # `experiments run` trains in runs/plan/<entry>, never in a user's runs/<name>
# The matrix took 110 s (three entries fewer) and 190 s (ten entries, candidates warmed in calls 1-2) on an
# H200; each candidate (bench_record.CANDIDATES) adds a compile, cold unless warmed.
BENCH_SECONDS = 180.0


# ---------------------------------------------------------------------------
# The gpu command


# A call without the speed matrix has room for about two 30-epoch runs (H200: 166-179 s each); with it, one or two.
RUNS_PER_CALL = 2


def warm_targets(plan, bench_due, quick, record=None):
    """``[(name, Config, flags)]`` to compile ahead, most useful first: the speed matrix's candidates
    (``bench_record.CANDIDATES``) when the matrix is due (their graphs are compiled nowhere else; the
    matrix's own first entry compiles the paper recipe's network, see :func:`bench_matrix`), then the
    networks of the next unfinished plan entries, at most ``RUNS_PER_CALL`` of them (a graph warmed for an
    entry that cannot run in the next call would be time spent for nothing). ``warm_up`` takes them in order
    while its time lasts: on the H200 one compile took 28-50 s, one or two per call at the default
    ``--prepare-seconds``. In quick mode the Configs are the quick sizes the runs use; with the LRN that
    ``record`` makes the runs adopt (``estimates.adopted_lrn``), as the runs will use it."""
    from alexnet_nb import config
    from alexnet_nb.bench_record import CANDIDATES, VARIANTS

    targets = []
    if bench_due and not quick:
        for lrn_impl, variant, _ in CANDIDATES:
            scope, mode, _ = VARIANTS[variant] if variant else ("net", "default", "")
            flags = ["--recipe", "paper", "--batch-size", "128", "--lrn-impl", lrn_impl, "--compile-scope", scope,
                     "--compile-mode", mode]
            targets.append((f"speed: LRN {lrn_impl}" + (f", {variant}" if variant else ""),
                            config.recipe("paper", batch_size=128, lrn_impl=lrn_impl, compile_scope=scope,
                                          compile_mode=mode), flags))
    known = summaries(RESULTS, STATE / "results")
    chosen, _ = plan_lib.choose(plan, known)
    lrn = None if quick else estimates.adopted_lrn(record, compiled=True)
    runs = 0
    for entry in plan.entries:
        if runs == RUNS_PER_CALL:
            break
        if plan_lib.finished(known.get(entry.name)) or (entry.recipe == plan_lib.CHOSEN and chosen is None):
            continue
        extra = {**(dict(plan_lib.QUICK_SIZES) if quick else {}), **({"lrn_impl": lrn} if lrn else {})}
        targets.append((entry.name, entry.config(chosen, **extra),
                        entry.flags(chosen) + (["--lrn-impl", lrn] if lrn else [])))
        runs += 1
    return targets


def warm_up(plan, clock, seconds, quick, log, bench_due=False, record=None):
    """Compile (on a GPU) or smoke-test (on a CPU) the graphs of ``warm_targets`` on random data, so the next
    calls find them in the compile cache. One process per distinct graph (``warm.graph_key``: recipes that
    differ only outside the network share one); what each gave is kept in ``warmed.json``, so a later call
    neither repeats it nor trusts a compiler that failed."""
    from alexnet_nb import warm

    rows = []
    until = clock.used() + seconds
    done = {w["key"] for w in read_warmed()}
    last = None
    for name, cfg, flags in warm_targets(plan, bench_due, quick, record):
        if STOP.reason:
            rows.append((name, "not warmed", f"the command was stopped ({STOP.reason})"))
            continue
        key = warm.graph_key(cfg)
        if key in done:  # the same network and shapes as one warmed before
            continue
        left = until - clock.used()
        if left <= 0 or (last is not None and left < last):  # would not finish in the time given
            rows.append((name, "not warmed", "out of preparation time"))
            continue
        cmd = [sys.executable, "-m", "alexnet_nb.warm", *flags] + (["--quick"] if quick else [])
        started = time.monotonic()
        # The first compile on a fresh machine is the slow one: give it at least 90 s. Through run_logged, so
        # that a stop reaches it.
        STATE.mkdir(parents=True, exist_ok=True)
        status = run_logged(cmd, STATE / "warm.log", timeout=max(left, 90) + 15)
        out = (STATE / "warm.log").read_text(errors="replace")
        ok = status == 0
        detail = ((out.strip().splitlines() or ["?"])[-1][:150] if isinstance(status, int) else status)
        last = time.monotonic() - started
        if STOP.reason or not isinstance(status, int):  # stopped or killed: says nothing of the compiler
            rows.append((name, "not warmed", detail))
            continue
        rows.append((name, "warmed" if ok else "warm failed", f"{last:.0f} s; {detail}"))
        # A candidate way of compiling that fails says nothing about the default: only a plan entry's
        # failure sends the runs eager.
        candidate = name.startswith("speed:")
        note_warmed(key, name, detail, "ok" if ok else "failed", last,
                    (not ok) and estimates.compile_failed(out) and not candidate)
        done.add(key)
    return rows


def read_warmed():
    try:
        return json.loads((STATE / "warmed.json").read_text())
    except (OSError, ValueError):
        return []


def preflight(log):
    """One line naming the versions the runs will use, or what is missing, before anything else."""
    import importlib

    found, missing = [], []
    for name in ("torch", "torchvision", "numpy", "pandas", "matplotlib", "tqdm"):
        try:
            found.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError as e:
            missing.append(f"{name} ({e})")
    log(f"python {sys.version.split()[0]}; " + ", ".join(found) + (f"; MISSING: {', '.join(missing)}" if missing else ""))


def pack(out, log_path, state=STATE):
    """At most 8 files: the results of this machine as one archive, the bench record(s), the log, the status."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        results = state / "results"
        if results.is_dir():
            for folder in sorted(results.iterdir()):
                tar.add(folder, arcname=folder.name)
    packed = [out / "results.tar.gz"]
    for record in sorted(state.glob("bench-*.json"))[:5]:
        shutil.copy2(record, out / record.name)
        packed.append(out / record.name)
    if Path(log_path).exists():
        shutil.copy2(log_path, out / "gpu.log")
        packed.append(out / "gpu.log")
    return packed


def gpu(args, runs):
    clock = Clock(args.command_seconds)
    log = Log(STATE / "gpu.log")
    log(f"=== gpu call at {time.strftime('%Y-%m-%d %H:%M:%S')}; archives {args.archives}")
    preflight(log)
    from alexnet_nb import chapters

    log(chapters.jupyter_status(args.archives))
    plan = plan_lib.load(args.plan)
    data_dir = env.data_dir()
    for name, what in dataset_parts.extract(args.archives, data_dir):
        log(f"{name}: {what}")
    complete, counts, problem = dataset_parts.verify(data_dir, expected=None if args.quick else dataset_parts.FULL)
    log(f"dataset: {'complete' if complete else 'incomplete'} {counts} {problem}")
    record = estimates.speed_record(STATE, RESULTS, device=runner.device_name())
    rows = []
    if not complete:
        rows = warm_up(plan, clock, min(args.prepare_seconds, clock.left() - PACK_SECONDS), args.quick, log,
                       bench_due=record is None, record=record)
    else:
        source = data_dir / dataset_parts.ROOT_NAME
        if record is None:
            # Only what the committed record of this GPU and torch lacks is measured (new candidates, say).
            merge = estimates.record_to_merge(RESULTS, runner.device_name())
            rows.append(("speed matrix", *bench_matrix(source, clock, args.quick, log, merge)))
            record = estimates.speed_record(STATE, RESULTS)
            from alexnet_nb import config, speed, warm

            for e in speed.matching(record or {}, batch=128, lrn_impl=None):
                # the matrix's compiled steps are the paper recipe's network at batch 128 (with each LRN): in the
                # cache now, for the runs that use that network
                if e["status"] == "measured" and not e.get("kept_from"):  # kept from a record: not compiled here
                    note_warmed(warm.graph_key(config.recipe("paper", batch_size=128, lrn_impl=e["lrn_impl"])),
                                "speed matrix", "compiled by the matrix")
            pack(args.out, STATE / "gpu.log")  # whatever happens next, the record is in $OUT already
        else:
            rows.append(("speed matrix", "done", f"measured before on this kind of machine ({record.get('device')}, "
                         f"torch {record.get('torch')})"))
        rows += run_plan(plan, clock, STATE / "results", runs, record, args.quick, source, log,
                         warmed=read_warmed(), after_each=lambda: pack(args.out, STATE / "gpu.log"),
                         wheels=args.archives)
    log(table(rows, "this call"))
    packed = pack(args.out, STATE / "gpu.log")
    print(f"packed {len(packed)} files into {args.out} after {clock.used():.0f} s")
    return rows


def run(args, runs):
    """``experiments run``: the plan on this machine within ``--budget`` seconds."""
    plan = plan_lib.load(args.plan)
    record = estimates.speed_record(STATE, RESULTS)
    rows = run_plan(plan, Clock(args.budget), args.results, runs, record, args.quick, args.source)
    print(table(rows))
    return rows


def bench_matrix(source, clock, quick, log, merge=None):
    """The speed matrix at batch 128 only (what the plan's estimates and the speed targets need; the full
    matrix is ``python -m alexnet_nb.bench train --matrix``), within at most three minutes, with a profile of
    each compiled step."""
    if STOP.reason:
        return "not run", f"the command was stopped ({STOP.reason})"
    budget = min(BENCH_SECONDS, clock.left() - PACK_SECONDS - 60)
    if budget < 20:
        return "skipped", f"only {budget:.0f} s left"
    STATE.mkdir(parents=True, exist_ok=True)
    slug = "gpu" if runner.gpu() else "cpu"
    path = STATE / f"bench-{slug}.json"
    sizes = (["--batch-sizes", "2", "--steps", "1", "--warmup", "0", "--repeats", "1", "--pipeline-steps", "1",
              "--workers", "0"] if quick else ["--batch-sizes", "128", "--profile", "20"])
    cmd = [sys.executable, "-m", "alexnet_nb.bench", "train", "--matrix", "--budget", f"{budget:.0f}", "--json",
           str(path), "--source", str(source), *(["--merge", str(merge)] if merge else []), *sizes]
    log(f"--> speed matrix: {' '.join(cmd[3:])}")
    status = run_logged(cmd, STATE / "bench.log", timeout=min(budget + 60, clock.left() - PACK_SECONDS))
    log((STATE / "bench.log").read_text()[-4000:])
    return ("done", f"{path.name}") if status == 0 and path.exists() else ("failed", f"exit {status}")


def note_warmed(key, name, detail, status="ok", seconds=0, compile_error=False):
    """Add a graph to ``warmed.json``: what this machine has compiled, read by the plan's time estimates."""
    warmed = read_warmed()
    warmed.append({"key": key, "entry": name, "status": status, "seconds": round(seconds), "detail": detail,
                   "compile_error": compile_error})
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "warmed.json").write_text(json.dumps(warmed, indent=1))


# ---------------------------------------------------------------------------
# Bringing results home, and the status of the plan


def unpack(args):
    """Put the run folders of a GPU call's ``results.tar.gz`` into ``results/`` (bench records beside it), all or
    nothing (``archives.install``): a whole run folder replaces the old one; any failure is one line and leaves
    ``results/`` as it was."""
    from alexnet_nb import archives

    archive = Path(args.archive)
    files = [(record, record_name(record)) for record in sorted(archive.parent.glob("bench-*.json"))]
    log = archive.parent / "gpu.log"
    if log.is_file():  # what every call of the session said, kept beside its results
        first = log.read_text(errors="replace").split("\n", 1)[0]
        stamp = re.sub(r"\D", "", first.split(" at ", 1)[-1].split(";")[0])[:14] or "undated"
        files.append((log, f"logs/gpu-{stamp}.log"))
    try:
        names = archives.install(archive, RESULTS, files)
    except archives.ArchiveError as e:
        cli.fail(str(e))
    names += [name for _, name in files]
    # Chapters executed on the GPU replace their sources.
    chapters = plan_chapters.notebooks_from(RESULTS, RESULTS.parent / "notebooks")
    print(f"unpacked {', '.join(names) or 'nothing'} into {RESULTS}/"
          + (f"; executed chapters {', '.join(chapters)} into notebooks/" if chapters else ""))


def record_name(path) -> str:
    """A GPU benchmark record's name in ``results/``, one per kind of GPU (an H100's never replaces an H200's):
    ``bench-gpu-nvidia-h200.json``; any other record keeps its name."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return Path(path).name
    if record.get("device_type") != "cuda" or not record.get("device"):
        return Path(path).name
    return f"bench-gpu-{re.sub(r'[^a-z0-9]+', '-', record['device'].lower()).strip('-')}.json"


def status(args):
    plan = plan_lib.load(args.plan)
    known = summaries(RESULTS, STATE / "results")
    chosen, reason = plan_lib.choose(plan, known)
    print(f"{plan.path}: {len(plan.entries)} experiments; rule: {plan.rule}; {reason}")
    rows = []
    for e in plan.entries:
        s = known.get(e.name)
        done = plan_chapters.done(e, s, chosen) if e.chapters else plan_lib.finished(s)
        state = "finished" if done else ("partial" if s and not e.chapters else "to run")
        rows.append((e.name, state, f"{e.recipe} {' '.join(e.flags(chosen or 'paper')[2:])}; {e.why}"))
    print(table(rows))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m alexnet_nb.experiments", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gpu", help="one call on the borrowed GPU machine (the same for every call)")
    g.add_argument("--archives", nargs="+", required=True, help="folders holding dataset parts (*.tar.gz)")
    g.add_argument("--out", required=True, help="where the packed results go (at most 8 files)")
    g.add_argument("--command-seconds", type=float, default=COMMAND_SECONDS,
                   help="the whole call must end within this (default 9 minutes)")
    g.add_argument("--prepare-seconds", type=float, default=60,
                   help="while the dataset is incomplete: time spent warming the compile cache")
    r = sub.add_parser("run", help="run the plan on this machine within a budget")
    r.add_argument("--budget", type=float, required=True, help="seconds")
    r.add_argument("--results", default=str(RESULTS), help="where results/<name>/ go")
    r.add_argument("--source", help="the dataset (default: data.dataset_source())")
    for q in (g, r):
        q.add_argument("--quick", action="store_true", help="tiny runs on generated data (the tests)")
    s = sub.add_parser("status", help="the plan and what is done")
    u = sub.add_parser("unpack", help="put a GPU call's results.tar.gz into results/")
    u.add_argument("archive")
    rep = sub.add_parser("report", help="write README's tables from results/")
    rep.add_argument("--check", action="store_true", help="only check that README matches results/ (exit 1 if not)")
    rep.add_argument("--readme", default="README.md")
    for q in (g, r, s):
        q.add_argument("--plan", default=str(plan_lib.DEFAULT_PLAN))
    args = p.parse_args(argv)
    try:
        if args.command in ("gpu", "run"):
            # The plan's runs get a folder of their own: `--overwrite` there never touches a user's runs/blog.
            runs = STATE / "runs" if args.command == "gpu" else env.runs_dir() / PLAN_RUNS
            plan_lib.load(args.plan)  # a bad plan is one line before anything is written, the lock included
            with CommandLock(runs), STOP:
                rows = (gpu if args.command == "gpu" else run)(args, runs)
            if STOP.reason:  # stopped cleanly: results packed and the table printed; say so to the caller
                sys.exit(STOP.exit_status())
            return rows
        if args.command == "status":
            return status(args)
        if args.command == "unpack":
            return unpack(args)
        from alexnet_nb import report

        return report.main(args)
    except (plan_lib.PlanError, CommandBusy) as e:
        cli.fail(str(e))


if __name__ == "__main__":
    main()
