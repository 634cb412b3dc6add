"""W&B set-up: the mode picked from credentials, and the run finished even when training fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlab.train import train
from genlab.utils import wandb_setup
from genlab.utils.errors import GenlabError
from genlab.utils.task import run_task


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    return tmp_path


def test_auto_is_offline_without_credentials(no_credentials: Path) -> None:
    assert wandb_setup.resolve_mode("auto") == "offline"


def test_auto_is_online_with_an_api_key(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_setup.resolve_mode("auto") == "online"


def test_auto_is_online_after_wandb_login(no_credentials: Path) -> None:
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_setup.resolve_mode("auto") == "online"


def test_env_and_explicit_mode_win(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_setup.resolve_mode("auto") == "disabled"
    assert wandb_setup.resolve_mode("offline") == "offline"
    with pytest.raises(GenlabError, match="logger.wandb.mode='cloud'"):
        wandb_setup.resolve_mode("cloud")


def test_wandb_run_is_finished_when_training_fails(train_config, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = train_config("debug=fast", "data.source=bundled", "logger=wandb")

    def broken_step(self, batch, batch_idx):
        assert wandb.run is not None  # the run was started
        raise RuntimeError("boom")

    monkeypatch.setattr("genlab.models.vae.VAE.training_step", broken_step)
    with pytest.raises(RuntimeError, match="boom"):
        run_task(train, cfg)
    assert wandb.run is None


def test_a_single_run_without_its_optimized_metric_says_nothing_of_a_sweeper(train_config, caplog) -> None:
    """``optimized_metric`` is for sweepers; a single run that ends before validating (here after
    one step) must not warn that it returns NaN to one."""
    import math

    cfg = train_config("debug=fast", "data.source=bundled", "logger=csv", "trainer.max_steps=1",
                       "trainer.limit_val_batches=0", "test=false")
    assert cfg.optimized_metric == "val/elbo"
    with caplog.at_level("WARNING"):
        assert math.isnan(run_task(train, cfg))
    assert "optimized_metric" not in caplog.text


def test_the_progress_bar_redraws_a_few_times_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytorch_lightning.callbacks import ModelSummary, RichProgressBar, TQDMProgressBar

    from genlab.callbacks import progress

    drawn, clock = [], [0.0]
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda self, t, m, o, b, i: drawn.append(i))
    monkeypatch.setattr(progress.ProgressBar, "total_train_batches", 10)
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    bar = progress.ProgressBar(min_interval=0.25)
    for i in range(10):  # batches 1/16 s apart: a redraw every 0.25 s, and the epoch's last batch
        bar.on_train_batch_end(None, None, None, None, i)
        clock[0] += 0.0625
    assert drawn == [0, 4, 8, 9]
    added = progress.with_progress_bar([], {"enable_progress_bar": True})
    assert [type(c) for c in added] == [progress.Summary, progress.ProgressBar]
    quiet = progress.with_progress_bar([], {"enable_progress_bar": False, "enable_model_summary": False})
    assert quiet == []
    own = [TQDMProgressBar(), ModelSummary()]
    assert progress.with_progress_bar(own, {}) == own  # a bar and a summary from the callbacks group are kept


def test_sample_grids_of_grey_images_are_grey_pngs_with_save_images_values(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image
    from torchvision.utils import make_grid, save_image

    from genlab.utils.images import save_grid

    grey = torch.rand(10, 1, 28, 28)
    save_image(make_grid(grey, nrow=4, padding=2, pad_value=1.0), tmp_path / "rgb.png")
    save_grid(grey, tmp_path / "grey.png", nrow=4)
    with Image.open(tmp_path / "rgb.png") as rgb, Image.open(tmp_path / "grey.png") as ours:
        assert ours.mode == "L" and ours.size == rgb.size == (4 * 30 + 2, 3 * 30 + 2)
        assert np.array_equal(np.asarray(ours), np.asarray(rgb)[..., 0])
    colour = torch.rand(4, 3, 8, 8)
    save_image(make_grid(colour, nrow=2, padding=2, pad_value=1.0), tmp_path / "rgb3.png")
    save_grid(colour, tmp_path / "ours3.png", nrow=2)
    with Image.open(tmp_path / "rgb3.png") as rgb, Image.open(tmp_path / "ours3.png") as ours:
        assert ours.mode == "RGB" and np.array_equal(np.asarray(ours), np.asarray(rgb))


def test_quick_exit_freezes_the_collector_once_as_the_process_ends(monkeypatch) -> None:
    import atexit
    import gc

    from genlab.utils import task

    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(task, "_QUICK_EXIT", False)
    task.quick_exit()
    task.quick_exit()  # a multirun's second job
    assert registered == [gc.freeze] and gc.get_freeze_count() == 0  # nothing frozen before the exit


def test_a_one_epoch_run_logs_training_metrics_without_lightnings_interval_warning(train_config) -> None:
    """The bundled MNIST has fewer batches an epoch than Lightning's default interval of 50: the
    interval is fitted to the epoch (``LogInterval``), so a one-epoch run has ``train/*`` rows."""
    import csv
    import warnings

    overrides = ("data.source=bundled", "trainer.max_epochs=1", "logger=csv", "test=false", "callbacks=none",
                 "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0")
    cfg = train_config(*overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    assert not [w for w in caught if "logging interval" in str(w.message)]
    rows = list(csv.DictReader((Path(cfg.paths.output_dir) / "metrics.csv").open()))
    assert len([r for r in rows if r.get("train/elbo")]) >= 4
    per_epoch = int(rows[-1]["step"])  # the last row: global step after the epoch
    explicit = train_config(*overrides, "trainer.log_every_n_steps=10")  # a value given wins
    train(explicit)
    rows = list(csv.DictReader((Path(explicit.paths.output_dir) / "metrics.csv").open()))
    assert len([r for r in rows if r.get("train/elbo")]) == per_epoch // 10
