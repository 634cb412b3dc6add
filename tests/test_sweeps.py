"""Sweeps end to end: launchers, Optuna, failures that do not stop a sweep, DDP inside a sweep,
and the comparison table of a sweep's runs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_cli import run
from wandb_records import summarize

FAST = ["debug=fast", "data.source=bundled", "test=false"]


def test_multirun_runs_are_grouped_and_compared(tmp_path: Path, monkeypatch) -> None:
    """A 2-configuration x 3-seed sweep: W&B groups its runs, and ``genlab-compare`` gives the same
    table from the run folders, from the runs' offline ``.wandb`` files, and from W&B's public API
    (a stand-in with the shape of ``wandb.Api().runs()`` results, filled from those files)."""
    sweep = tmp_path / "sweep"
    proc = run("train.py", "-m", *FAST, "model.latent_dim=8,16", "seed=0,1,2", f"hydra.sweep.dir={sweep}",
               env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [summarize(next((sweep / str(i) / "wandb").glob("offline-run-*/run-*.wandb"))) for i in range(6)]
    assert {r["run"]["group"] for r in runs} == {"sweep"} and len({r["run"]["name"] for r in runs}) == 6
    assert runs[0]["run"]["job_type"] == runs[2]["run"]["job_type"] != runs[3]["run"]["job_type"]  # seeds: one band
    for i in (0, 3):  # what comparisons need is in each run
        config = runs[i]["config"]
        assert config["model"]["latent_dim"] == (8, 16)[i // 3] and config["seed"] == 0
        assert config["overrides"][-2:] == [f"model.latent_dim={(8, 16)[i // 3]}", "seed=0"]
        assert config["parameters"]["total"] > 0 and config["parameters"]["encoder"] > 0
        assert config["data_info"]["sizes"]["train"] == 3600 and "git_commit" in config
        info = json.loads((sweep / str(i) / "run_info.json").read_text())
        assert info["best/val/elbo"] == pytest.approx(info["final_metrics"]["val/elbo"])
        assert info["timings"]["time/fit_seconds"] > 0

    proc = subprocess.run([sys.executable, "-m", "genlab.compare", str(sweep), "--metric", "val/elbo",
                           "--baseline", "model.latent_dim=8"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    # each row names what differs; what all runs share is said once, above the table
    assert sorted(r["overrides"] for r in rows) == ["model.latent_dim=16", "model.latent_dim=8 (baseline)"]
    assert [r["n"] for r in rows] == ["3", "3"] and all(r["status"] == "ok" for r in rows)
    assert "Shared by all 6 runs: `debug=fast data.source=bundled test=" in proc.stdout  # (Hydra writes False)
    best = [float(r["best val/elbo"]) for r in rows]
    assert best == sorted(best) and (sweep / "compare.png").stat().st_size > 1000
    from_folders = (sweep / "compare.md").read_text()
    assert "| model.latent_dim |" in from_folders and "Δ best val/elbo" in from_folders

    from genlab.compare import main
    from genlab.utils.wandb_files import read_run, run_files

    assert main([str(sweep), "--wandb-files", "--baseline", "model.latent_dim=8", "--out", str(tmp_path / "files")]) == 0
    assert (tmp_path / "files" / "compare.md").read_text() == from_folders
    assert (tmp_path / "files" / "compare.png").stat().st_size > 1000  # the curves come from the files too

    class StandInRun:  # the attributes of wandb.apis.public.Run that genlab-compare reads
        def __init__(self, run: dict) -> None:
            self.name, self.state, self.config, self.url = run["name"], run["state"], run["config"], run["folder"]
            self.summary, self._history = run["summary"], run["history"]

        def scan_history(self, keys: list[str]) -> list[dict]:
            return [{keys[0]: value, "trainer/global_step": step, "_step": i}
                    for i, (step, value) in enumerate(self._history.get(keys[0], []))]

    class StandInApi:
        def runs(self, path: str, filters: dict) -> list[StandInRun]:
            assert path == "me/genlab" and filters == {"group": "sweep"}
            return [StandInRun(read_run(files)) for files in run_files(sweep).values()]

    import wandb

    monkeypatch.setattr(wandb, "Api", StandInApi)
    assert main(["--wandb", "me/genlab", "--group", "sweep", "--baseline", "model.latent_dim=8",
                 "--out", str(tmp_path / "online")]) == 0
    assert (tmp_path / "online" / "compare.md").read_text() == from_folders


def test_a_failing_job_is_reported_and_the_sweep_goes_on(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run("train.py", "-m", *FAST, "logger=csv", "model.latent_dim=-1,8", "continue_on_error=true",
               f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file()  # the job after the failure ran
    failed = json.loads((sweep / "failures.json").read_text())
    assert [f["num"] for f in failed] == [0] and "model.latent_dim=-1" in failed[0]["overrides"]
    assert failed[0]["log"].endswith("0/debug.log") and "model.latent_dim=-1 is not valid" in failed[0]["error"]
    assert "job 0 (" in proc.stdout + proc.stderr and "failed" in proc.stdout + proc.stderr
    # without the switch the sweep fails (Hydra raises the job's error), and the job is still recorded
    proc = run("train.py", "-m", *FAST, "logger=csv", "model.latent_dim=-1,8", f"hydra.sweep.dir={tmp_path}/stop")
    assert proc.returncode != 0 and (tmp_path / "stop" / "0" / "failure.json").is_file()


def test_a_sweeps_jobs_train_alike_wherever_they_run(tmp_path: Path) -> None:
    """Hydra's default launcher runs a sweep's jobs one after the other in one process: whatever
    the first job loads once per process (the sample-quality callback's feature net, ...) must not
    draw from the seeded random state, or the first job trains with other noise than the same
    config run later. Two identical GAN jobs end with identical weights."""
    import torch

    sweep = tmp_path / "sweep"
    proc = run("train.py", "-m", *FAST, "model=gan", "logger=csv", "seed=7,7", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = (torch.load(sweep / str(i) / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
                     for i in (0, 1))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_optuna_sweep_reports_its_best_trial(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    proc = run("train.py", "hparams_search=vae_optuna", *FAST, "logger=csv", "hydra.sweeper.n_trials=3",
               "hydra.sweeper.sampler.n_startup_trials=2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"model.optimizer.lr", "model.latent_dim", "data.batch_size"}
    elbos = [json.loads((sweep / str(i) / "run_info.json").read_text())["final_metrics"]["val/elbo"] for i in range(3)]
    assert result["best_value"] == pytest.approx(min(elbos), rel=1e-5)
    assert "Best value" in proc.stdout + proc.stderr  # Hydra's console says what the search found ...
    assert "setup plugin alembic" not in proc.stdout + proc.stderr  # ... without Optuna's storage notes


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_and_cluster_launchers_run_a_two_job_sweep(tmp_path: Path, launcher: str) -> None:
    """joblib: local parallel jobs; submitit_local: submitit's local executor, the same code path
    as hydra/launcher=submitit_slurm on a cluster. Resumed with ``resume=<sweep folder>`` after
    job 1's folder is lost: job 0 (finished) is not run again, job 1 runs."""
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    command = ["train.py", "-m", f"hydra/launcher={launcher}", *extra, *FAST, "logger=csv", "model.latent_dim=8,16",
               f"hydra.sweep.dir={sweep}"]
    proc = run(*command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i in (0, 1):
        assert (sweep / str(i) / "checkpoints" / "last.ckpt").is_file()
    finished = (sweep / "0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    shutil.rmtree(sweep / "1")
    proc = run(*command, f"resume={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep / "0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == finished
    assert (sweep / "1" / "done.json").is_file() and (sweep / "1" / "checkpoints" / "last.ckpt").is_file()


def test_slurm_launcher_config_composes(train_config) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from genlab.utils.config import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.gpus_per_node=2", "trainer.gpus=2"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.partition == "gpu"


@pytest.mark.slow
def test_ddp_inside_a_multirun(tmp_path: Path) -> None:
    """Each job of a sweep runs DDP over 2 CPU processes: one folder and one W&B run per job."""
    sweep = tmp_path / "sweep"
    proc = run("train.py", "-m", "trainer=ddp_cpu", *FAST, "model.latent_dim=8,16", f"hydra.sweep.dir={sweep}",
               env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for i in (0, 1):
        assert len(list((sweep / str(i) / "wandb").glob("offline-run-*"))) == 1
        info = json.loads((sweep / str(i) / "run_info.json").read_text())
        assert info["world_size"] == 2


def fake_run(folder: Path, overrides: list[str], elbo: list[float]) -> None:
    """A run folder as train.py leaves it, as far as genlab-compare reads it."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    rows = "".join(f"{i},{10 * (i + 1)},{v}\n" for i, v in enumerate(elbo))
    (folder / "metrics.csv").write_text("epoch,step,val/elbo\n" + rows)


def test_compare_reads_seeds_as_one_row_and_shows_deltas_to_a_baseline(tmp_path: Path) -> None:
    from genlab.compare import main

    sweep = tmp_path / "sweep"
    runs = [("8", 0, [120, 110]), ("8", 1, [122, 112]), ("8", 2, [118, 114]), ("16", 0, [115, 100]),
            ("16", 1, [117, 104]), ("32", 0, [130, 99])]
    for i, (dim, seed, elbo) in enumerate(runs):
        fake_run(sweep / str(i), ["debug=fast", f"model.latent_dim={dim}", f"seed={seed}"], elbo)
    assert main([str(sweep), "--metric", "val/elbo", "--baseline", "model.latent_dim=8"]) == 0
    rows = {r["overrides"]: r for r in csv.DictReader((sweep / "compare.csv").open())}
    assert set(rows) == {"model.latent_dim=8 (baseline)", "model.latent_dim=16", "model.latent_dim=32 seed=0"}
    eight, sixteen = rows["model.latent_dim=8 (baseline)"], rows["model.latent_dim=16"]
    assert (eight["n"], sixteen["n"], rows["model.latent_dim=32 seed=0"]["n"]) == ("3", "2", "1")
    assert float(eight["val/elbo"]) == pytest.approx(112.0) and float(eight["val/elbo ±"]) == pytest.approx(2.0)
    assert float(sixteen["best val/elbo"]) == pytest.approx(102.0)
    assert float(sixteen["Δ val/elbo"]) == pytest.approx(102.0 - 112.0) and float(eight["Δ val/elbo"]) == 0.0
    markdown = (sweep / "compare.md").read_text()
    assert "112 ± 2" in markdown and "one seed only" in markdown
    header = markdown.splitlines()[2]
    assert "| model.latent_dim |" in header and "debug" not in header  # only the setting that differs
    assert [float(rows[k]["setting model.latent_dim"]) for k in sorted(rows)] == [16, 32, 8]
    assert (sweep / "compare.png").stat().st_size > 1000  # mean curves, a band where there are seeds
    assert (sweep / "compare_parallel.png").stat().st_size > 1000  # setting -> metric
    page = (sweep / "compare.html").read_text()
    assert "<table" in page and "112 ± 2" in page and page.count("data:image/png;base64,") == 2
    assert 'src="http' not in page and "<link" not in page and "<script" not in page  # opens without a network
    assert main([str(sweep), "--metric", "val/elbo", "--per-run"]) == 0
    assert len(list(csv.DictReader((sweep / "compare.csv").open()))) == 6



BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium on this machine")
def test_the_compare_report_opens_in_a_headless_browser(tmp_path: Path) -> None:
    from genlab.compare import main

    for i, (dim, seed) in enumerate([(8, 0), (8, 1), (16, 0)]):
        fake_run(tmp_path / str(i), [f"model.latent_dim={dim}", f"seed={seed}"], [120.0 - dim, 110.0 - dim + seed])
    assert main([str(tmp_path)]) == 0
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--dump-dom", (tmp_path / "compare.html").as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    assert "<table" in dom and "model.latent_dim=16" in dom and "±" in dom


def test_a_killed_sweep_resumed_runs_only_what_was_left(tmp_path: Path) -> None:
    """4 jobs; the launcher is killed in job 2's second epoch (jobs 0 and 1 done). The same
    command with ``resume=<sweep folder>``: jobs 0 and 1 are not run again, job 2 goes on from its
    last.ckpt, job 3 runs from the start; the compare table has the 4 runs."""
    sweep = tmp_path / "sweep"
    command = ["-m", "debug=fast", "data.source=bundled", "logger=csv", "trainer.max_epochs=2",
               "model.latent_dim=4,8,16,32", f"hydra.sweep.dir={sweep}", "+callbacks.kill._target_=fault_injection.KillJob",
               "+callbacks.kill.job=2", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=1"]
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    killed = run("train.py", *command, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [(sweep / str(i) / "done.json").is_file() for i in range(4)] == [True, True, False, False]
    assert (sweep / "2" / "checkpoints" / "last.ckpt").is_file()
    finished = {i: (sweep / str(i) / "checkpoints" / "last.ckpt").stat().st_mtime_ns for i in (0, 1)}
    resumed = run("train.py", *command, f"resume={sweep}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert log.count("finished before the sweep stopped: not run again") == 2
    assert log.count("goes on from its last.ckpt") == 1 and log.count("had not begun") == 1
    assert {i: (sweep / str(i) / "checkpoints" / "last.ckpt").stat().st_mtime_ns for i in (0, 1)} == finished
    assert all((sweep / str(i) / "done.json").is_file() for i in range(4))
    from genlab.compare import main

    assert main([str(sweep)]) == 0
    assert len(list(csv.DictReader((sweep / "compare.csv").open()))) == 4


def test_a_killed_optuna_search_resumed_runs_only_the_missing_trials(tmp_path: Path) -> None:
    """5 trials; the launcher is killed in the third. The same command with resume=<sweep folder>:
    the study (SQLite in the sweep folder) keeps its 2 finished trials, the cut one is marked
    failed, and 3 more run, into resumed_1/: 5 complete trials, the first 2 as they were."""
    import optuna

    sweep = tmp_path / "search"
    command = ["hparams_search=vae_optuna", "hydra.sweeper.n_trials=5", "hydra.sweeper.sampler.n_startup_trials=2",
               "debug=fast", "data.source=bundled", "logger=csv", f"hydra.sweep.dir={sweep}",
               "+callbacks.kill._target_=fault_injection.KillJob", "+callbacks.kill.job=2", "+callbacks.kill.epoch=0",
               "+callbacks.kill.batch=1"]
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    killed = run("train.py", *command, env=env)
    assert killed.returncode == -9, killed.stderr[-2000:]
    storage = f"sqlite:///{sweep}/optuna.db"
    before = [(t.params, t.values) for t in optuna.load_study(study_name="vae", storage=storage).trials[:2]]
    resumed = run("train.py", *command, f"resume={sweep}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 trials complete, 3 to run" in resumed.stdout + resumed.stderr
    trials = optuna.load_study(study_name="vae", storage=storage).trials
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5 and states[2] == optuna.trial.TrialState.FAIL
    assert [(t.params, t.values) for t in trials[:2]] == before
    assert sorted(p.parent.relative_to(sweep).as_posix() for p in sweep.rglob("done.json")) == [
        "0", "1", "resumed_1/0", "resumed_1/1", "resumed_1/2"]


def test_compare_logs_its_table_to_w_and_b_in_the_sweeps_group(tmp_path: Path, monkeypatch) -> None:
    from genlab.compare import main
    from wandb_records import summarize

    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "2026-12-04_10-00-00"
    for i, (dim, seed) in enumerate([(8, 0), (8, 1), (16, 0)]):
        fake_run(sweep / str(i), [f"model.latent_dim={dim}", f"seed={seed}"], [120.0 - dim, 110.0 - dim + seed])
    assert main([str(sweep), "--log-wandb"]) == 0
    summary = summarize(next(sweep.glob("wandb/offline-run-*/run-*.wandb")))  # beside the table
    assert summary["run"]["group"] == sweep.name and summary["run"]["job_type"] == "compare"
    assert summary["history"]["compare/_type"] == ["table-file"]  # the wandb.Table: 2 rows (8 over 2 seeds, 16)
    assert summary["history"]["compare/nrows"] == [2] and summary["history"]["compare/ncols"] == [6]
