"""The command line end to end, in subprocesses, as users type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genlab.utils.config import PROJECT_ROOT
from wandb_records import summarize


def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 300,
        cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    full_env.pop("WANDB_SERVICE", None)  # each run starts its own W&B service, as from a shell
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / script), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module")
def fast_run_process(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `python train.py debug=fast` with W&B offline; several tests read what it wrote."""
    out = tmp_path_factory.mktemp("run")
    proc = run("train.py", "debug=fast", "data.source=bundled", f"hydra.run.dir={out}", env={"WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.fixture(scope="module")
def fast_run(fast_run_process) -> Path:
    return fast_run_process[0]


def test_train_prints_no_warning_about_settings_the_user_did_not_make(fast_run_process) -> None:
    console = fast_run_process[1].stdout + fast_run_process[1].stderr
    assert "anonymous" not in console  # Lightning's unset W&B argument, which W&B warns about
    assert "wandb: WARNING" not in console, console[-3000:]
    for text in (console, next(fast_run_process[0].glob("*.log")).read_text()):
        assert "GPU available" in text and "💡 Tip" not in text  # Lightning's notes, less its product tips


def test_train_writes_the_run_folder(fast_run: Path) -> None:
    assert (fast_run / ".hydra" / "config.yaml").is_file()  # the resolved config is saved
    assert (fast_run / "checkpoints" / "last.ckpt").is_file()
    assert (fast_run / "metrics.csv").read_text().count("val/elbo") == 1
    assert (fast_run / "samples" / "samples_epoch000.png").stat().st_size > 1000


def test_wandb_offline_run_holds_config_metrics_and_media(fast_run: Path) -> None:
    run_files = list((fast_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    summary = summarize(run_files[0])
    config, history = summary["config"], summary["history"]
    assert config["model"]["_target_"] == "genlab.models.VAE"  # nested, resolved config
    assert config["model"]["encoder"]["latent_dim"] == 32
    assert config["data_info"]["sources"]["train"] == "bundled"
    assert config["data_info"]["sizes"] == {"train": 3600, "val": 400, "test": 1000}
    assert summary["run"]["job_type"] == "vae" and {"vae", "mnist"} <= set(summary["run"]["tags"])
    for key in ("train/loss", "train/elbo", "val/elbo", "val/kl", "test/elbo"):
        assert key in history, sorted(history)
    assert any(k.startswith("val/samples") for k in history)  # the sample grid as W&B media
    media = list((run_files[0].parent / "files" / "media" / "images").rglob("*.png"))
    assert len(media) == 2  # samples and reconstructions


def test_eval_reads_the_checkpoint(fast_run: Path) -> None:
    proc = run("eval.py", f"ckpt_path={fast_run / 'checkpoints' / 'last.ckpt'}", "metrics.num_samples=1000",
               f"hydra.run.dir={fast_run}/eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((fast_run / "metrics.json").read_text())
    assert record["split"] == "test" and 0 < record["metrics"]["test/elbo"] < 545
    m = record["metrics"]
    assert 0 < m["test/nll"] <= m["test/elbo"] + 1.0  # IWAE bound, at most the ELBO's up to noise
    assert m["test/fid"] > 0 and 0 <= m["test/precision"] <= 1 and 0 <= m["test/coverage"] <= 1


def test_generate_from_the_checkpoint_alone(fast_run: Path, tmp_path: Path) -> None:
    import torch

    ckpt = fast_run / "checkpoints" / "last.ckpt"
    empty_root = {"GENLAB_ROOT": str(tmp_path)}  # no data folder anywhere near
    proc = run("generate.py", f"ckpt_path={ckpt}", "num_samples=16", "save_tensor=true",
               f"hydra.run.dir={tmp_path}/gen1", env=empty_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = torch.load(fast_run / "generated" / "samples_16.pt", weights_only=True)
    assert images.shape == (16, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert (fast_run / "generated" / "samples_16.png").stat().st_size > 500
    proc = run("generate.py", f"ckpt_path={ckpt}", "mode=interpolate", "steps=7", "save_tensor=true",
               f"out={tmp_path}/interp.png", f"hydra.run.dir={tmp_path}/gen2", env=empty_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "interp.png").is_file()
    rows = torch.load(tmp_path / "interp.pt", weights_only=True).view(-1, 7, 1, 28, 28)
    assert len(rows) == 8  # interpolate mode's default: 8 rows, not a 64-row strip
    assert not torch.allclose(rows[0, 0], rows[0, -1])  # a row goes from one draw to another


def test_too_many_gpus_is_one_clear_message(tmp_path: Path) -> None:
    proc = run("train.py", "model=vae", "trainer.gpus=2", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "trainer.gpus=2 asks for 2 GPUs, but 0 are visible" in proc.stderr
    assert "trainer.gpus=0" in proc.stderr


@pytest.mark.parametrize(
    "script, args, message",
    [
        ("train.py", ["debug=fast", "data.source=internet"], "data.source='internet' is unknown"),
        ("train.py", ["model=text_vae", "data=text", "data.corpus=wiki"], "data.corpus='wiki' is unknown"),
        ("train.py", ["model.optimizer.lr=0"], "model.optimizer.lr=0 is not valid"),
        ("train.py", ["model.optimizer.lr=inf"], "model.optimizer.lr=inf is not valid: a learning rate must be a finite"),
        ("train.py", ["seed=-1"], "seed=-1 is not valid: it must be a whole number from 0 to 2**32 - 1"),
        ("train.py", ["data.num_workers=-1"], "data.num_workers=-1 is not valid: it must be a whole number >= 0"),
        ("train.py", ["model=vae", "data=text"], "data=text needs a text model"),
        ("train.py", ["model=text_lm"], "model=text_lm is a text model: use it with data=text"),
        ("train.py", ["ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt': no such file"),
        ("eval.py", ["ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt': no such file"),
        ("eval.py", ["ckpt_path=nope.ckpt", "split=train"], "split='train' is unknown"),
        ("generate.py", ["ckpt_path=nope.ckpt"], "ckpt_path='nope.ckpt': no such file"),
        ("generate.py", ["ckpt_path=nope.ckpt", "mode=video"], "mode='video' is unknown"),
        ("train.py", ["modle=vae"], "modle=vae: the config has no key 'modle'; did you mean model?"),
        ("train.py", ["model=vea"], "model=vea: no option 'vea' in the group model; did you mean vae?"),
        ("train.py", ["experiment=gpu/dcgan_mnst"], "no option 'gpu/dcgan_mnst' in the group experiment; "
                                                     "did you mean gpu/dcgan_mnist?"),
        ("train.py", ["model.latnet_dim=16"], "model has no key 'latnet_dim'; did you mean model.latent_dim?"),
        ("train.py", ["+model.latnet_dim=16"], "model has no key 'latnet_dim'; did you mean model.latent_dim?"),
        ("train.py", ["model=gan", "resume=last"], "resume=last: no run under"),
        ("train.py", ["model=text_lm", "data=text", "data.corpus=file"], "data.corpus=file needs data.path"),
        ("train.py", ["model=text_lm", "data=text", "data.corpus=file", "data.path=nope.txt"],
         "data.path='nope.txt': no such file"),
    ],
    ids=["train-data-value", "train-text-corpus", "train-lr", "train-lr-inf", "train-seed", "train-workers",
         "train-image-model-text-data",
         "train-text-model-image-data", "train-ckpt", "eval-ckpt", "eval-split",
         "generate-ckpt", "generate-mode", "train-group-typo", "train-option-typo", "train-subfolder-option-typo", "train-key-typo",
         "train-added-key-typo", "train-resume-nothing", "train-text-file-no-path", "train-text-file-missing"],
)
def test_bad_input_is_one_clear_message_before_torch_is_imported(tmp_path: Path, script: str, args: list[str],
                                                                  message: str) -> None:
    """A mistyped value or path is reported without the ~10 s import of torch and Lightning: here a
    ``torch`` that fails on import sits first on the path, and the message must still come."""
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch was imported')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # GENLAB_ROOT: no earlier runs of this checkout (resume=last) can change the answer
    proc = run(script, *args, f"hydra.run.dir={tmp_path}/run", env={"PYTHONPATH": path, "GENLAB_ROOT": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "torch was imported" not in proc.stderr
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # the run folder made for it is gone again


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["model=vae", "trainer=ddp_cpu"],
        ["model=gan", "trainer=ddp_cpu"],
        ["model=dcgan", "trainer.strategy=ddp", "trainer.devices=2"],  # by hand, as in Lightning
        ["model=gan", "model.conditional=true", "trainer=ddp_cpu"],
    ],
    ids=["vae-ddp_cpu", "gan-ddp_cpu", "dcgan-strategy_ddp", "conditional_gan-ddp_cpu"],
)
def test_ddp_on_two_cpu_processes_writes_one_run(tmp_path: Path, overrides: list[str]) -> None:
    """Lightning re-launches the command for rank 1; it must land in the same run folder.
    GANs need DDP to expect unused parameters (each step leaves one net without gradients)."""
    proc = run("train.py", *overrides, "debug=fast", "data.source=bundled",
               env={"GENLAB_ROOT": str(tmp_path), "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    # epoch-level values (sample quality, active units) are the same on both processes, not
    # Lightning's "use sync_dist=True" case
    assert "sync_dist=True" not in proc.stdout + proc.stderr
    runs = list((tmp_path / "outputs" / "debug" / "runs").iterdir())
    assert len(runs) == 1
    assert len(list((runs[0] / "wandb").glob("offline-run-*"))) == 1
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="the process start comes from /proc on Linux")
def test_the_start_up_clock_starts_when_the_process_does() -> None:
    """A process's start, as genlab's start-up phases count from it, is the interpreter's own
    start (tens of ms before its first line runs), not up to a second earlier."""
    code = "import time; t = time.time(); from genlab.utils import startup; print(t - startup.process_start())"
    ahead = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(3)]
    assert all(-0.02 < a < 0.6 for a in ahead), ahead  # ticks of 10 ms; a loaded machine starts Python slower
    assert min(ahead) < 0.3, ahead


NOISE = ["FLOPs", "v_num", "0.00it/s", "Run history", "Run summary", "logging interval", "deprecated",
         "Test metric", "[rank: 1]", "GLOBAL_RANK: 1", "Traceback"]


@pytest.mark.parametrize("extra", [[], ["trainer=ddp_cpu"]], ids=["one-process", "ddp-cpu"])
def test_the_console_says_each_fact_once(tmp_path: Path, extra: list[str]) -> None:
    """``python train.py debug=fast`` (and under DDP on 2 CPU processes): no column of zero FLOPs,
    no logger version in the bar, no rate on finished bars, no W&B history dump, no warning caused
    by genlab's own calls, nothing repeated by the second process, one line for the data source."""
    proc = run("train.py", "debug=fast", *extra, f"hydra.run.dir={tmp_path}/run",
               env={"GENLAB_ROOT": str(tmp_path), "WANDB_MODE": "offline"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert [n for n in NOISE if n in console] == []
    assert console.count("MNIST: train") == 1 and console.count("Testing the best checkpoint") == 1
    assert "Final metrics:" in console and "test/elbo" in console
