"""Faults survived: kills and resume, SIGTERM, interrupted checkpoint writes, non-finite losses,
W&B failing; and unsafe checkpoints refused."""

from __future__ import annotations

from functools import partialmethod
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlab.checkpoint import load_checkpoint
from genlab.utils.errors import GenlabError
from fault_injection import poison_vae_loss
from test_cli import run

TESTS = str(Path(__file__).parent)
SHORT = ["data.source=bundled", "trainer.max_epochs=3", "trainer.limit_train_batches=6", "trainer.limit_val_batches=2",
         "trainer.num_sanity_val_steps=2", "trainer.deterministic=true", "test=false", "logger=csv"]
MODELS = {"vae": ["model=vae"],
          "gan": ["model=gan", "model.ema_decay=0.9", "callbacks.sample_quality.num_samples=200",
                  "+model.scheduler_g={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,step_size:1,gamma:0.5}"],
          "conditional_gan": ["model=gan", "model.conditional=true", "model.ema_decay=0.9",
                              "callbacks.sample_quality.num_samples=200"]}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final weights of an uninterrupted ``SHORT`` run of a model (in process, no workers),
    trained once per module."""
    done: dict[str, dict[str, torch.Tensor]] = {}

    def weights_of(model: str) -> dict[str, torch.Tensor]:
        if model not in done:
            root = tmp_path_factory.mktemp(f"whole-{model}")
            whole = run("train.py", *MODELS[model], *SHORT, f"hydra.run.dir={root}/whole",
                        env={"GENLAB_ROOT": str(root), "PYTHONPATH": TESTS})
            assert whole.returncode == 0, whole.stderr[-3000:]
            done[model] = weights(root / "whole")
        return done[model]

    return weights_of


@pytest.mark.slow
@pytest.mark.parametrize("model, signal_name, loader", [
    ("gan", "SIGKILL", []), ("vae", "SIGKILL", []), ("gan", "SIGTERM", []), ("vae", "SIGTERM", []),
    ("vae", "SIGTERM", ["data.num_workers=1"]), ("conditional_gan", "SIGKILL", [])],
    ids=lambda v: ("workers" if v else "in-process") if isinstance(v, list) else None)
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path: Path, uninterrupted, model: str, signal_name: str,
                                                           loader: list[str]) -> None:
    """SIGKILL in the middle of epoch 3, resume from the newest last.ckpt (ckpt_path=last): the
    final weights equal an uninterrupted run's, bit for bit (optimizers, scheduler, EMA, the GAN's
    own counter and the RNG state all come back). SIGTERM instead: last.ckpt is written there,
    mid-epoch, and the resumed run goes on with that epoch's batches that were not trained yet
    (``InMemoryLoader.state_dict``), not with its first ones again. With a worker process too
    (torch's DataLoader iterator, which Lightning creates before it sets the epoch), against the
    same uninterrupted run in one process."""
    env = {"GENLAB_ROOT": str(tmp_path), "PYTHONPATH": TESTS}
    short = [*SHORT, *loader]
    killed = run("train.py", *MODELS[model], *short, f"hydra.run.dir={tmp_path}/outputs/train/runs/killed",
                 "+callbacks.kill._target_=fault_injection.KillAt", "+callbacks.kill.epoch=2", "+callbacks.kill.batch=3",
                 f"+callbacks.kill.signal_name={signal_name}", env=env)
    if signal_name == "SIGKILL":
        assert killed.returncode == -signal.SIGKILL
    else:
        assert killed.returncode == 0 and "SIGTERM: saved" in killed.stdout + killed.stderr
        assert load_checkpoint(tmp_path / "outputs" / "train" / "runs" / "killed" / "checkpoints" / "last.ckpt")[
            "global_step"] == (2 * 6 + 4) * (2 if "gan" in model else 1)  # mid-epoch: batches 0-3 of epoch 2
    resumed = run("train.py", *MODELS[model], *short, "ckpt_path=last", f"hydra.run.dir={tmp_path}/outputs/train/runs/resumed",
                  env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "killed/checkpoints/last.ckpt" in resumed.stdout + resumed.stderr
    assert "dataloader is not resumable" not in resumed.stdout + resumed.stderr
    a, b = uninterrupted(model), weights(tmp_path / "outputs" / "train" / "runs" / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_sigterm_saves_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    env = {"GENLAB_ROOT": str(tmp_path), "PYTHONPATH": TESTS}
    proc = run("train.py", "model=vae", *SHORT, f"hydra.run.dir={tmp_path}/outputs/train/runs/term",
               "+callbacks.kill._target_=fault_injection.KillAt", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2",
               "+callbacks.kill.signal_name=SIGTERM", env=env)
    ckpt = load_checkpoint(tmp_path / "outputs" / "train" / "runs" / "term" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 6 + 3  # saved after the batch running when SIGTERM came, mid-epoch
    assert "SIGTERM: saved" in proc.stdout + proc.stderr
    resumed = run("train.py", "model=vae", *SHORT, "ckpt_path=last", f"hydra.run.dir={tmp_path}/outputs/train/runs/after",
                  env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(tmp_path / "outputs" / "train" / "runs" / "after" / "checkpoints" / "last.ckpt")["epoch"] == 2  # the third
    assert "holds no place in the epoch" not in resumed.stdout + resumed.stderr
    # the same checkpoint as one written before the loaders kept their place: resumed, with a warning
    ckpt["loops"]["fit_loop"]["state_dict"].pop("combined_loader")
    torch.save(ckpt, tmp_path / "unplaced.ckpt")
    unplaced = run("train.py", "model=vae", *SHORT, f"ckpt_path={tmp_path}/unplaced.ckpt",
                   f"hydra.run.dir={tmp_path}/outputs/train/runs/unplaced", env=env)
    assert unplaced.returncode == 0, unplaced.stderr[-3000:]
    assert "written mid-epoch and holds no place in the epoch" in unplaced.stdout + unplaced.stderr


def test_a_kill_while_saving_leaves_the_previous_checkpoint_intact(tmp_path: Path, train_config) -> None:
    from genlab.train import train

    cfg = train_config("debug=fast", "data.source=bundled", "test=false", "logger=csv")
    train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    script = f"""
import os, signal, torch
import fsspec.implementations.local as local
from pytorch_lightning import Trainer
from genlab.checkpoint import model_from_checkpoint
model, _, _ = model_from_checkpoint({str(last)!r})
trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
trainer.strategy.connect(model)
original = local.LocalFileOpener.write
def write_half_then_die(self, data):
    original(self, data[: len(data) // 2])
    self.flush()
    os.kill(os.getpid(), signal.SIGKILL)
local.LocalFileOpener.write = write_half_then_die
trainer.save_checkpoint({str(last)!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert last.read_bytes() == before  # the half-written file never replaced it
    load_checkpoint(last)


@pytest.mark.parametrize("policy", ["stop", "skip", "stop-deferred"])
def test_non_finite_loss_stops_with_a_message_or_is_skipped(train_config, policy: str, monkeypatch) -> None:
    """``stop-deferred``: the check as it runs on a GPU, queued and read at the epoch's end (or
    before a checkpoint): the same message, and no checkpoint written after the bad step."""
    from genlab.callbacks.nonfinite import NonFiniteLoss
    from genlab.train import train

    if policy == "stop-deferred":
        monkeypatch.setattr(NonFiniteLoss, "__init__", partialmethod(NonFiniteLoss.__init__, deferred=True))
        policy = "stop"

    poison_vae_loss(monkeypatch, step=2)
    cfg = train_config("debug=fast", "data.source=bundled", "test=false", "logger=csv", f"nonfinite={policy}")
    if policy == "stop":
        with pytest.raises(GenlabError, match=r"non-finite loss at epoch 0, step 2: loss=nan"):
            train(cfg)
        assert not list(Path(cfg.paths.output_dir).glob("checkpoints/*.ckpt"))
    else:
        metrics = train(cfg)
        assert metrics["train/nonfinite_skipped"] == 1.0
        state = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
        assert all(torch.isfinite(v).all() for v in state["state_dict"].values())


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "genlab": {}, "payload": Exploit()}, path)
    with pytest.raises(GenlabError, match="not a readable checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    proc = run("generate.py", f"ckpt_path={path}", f"hydra.run.dir={tmp_path}/gen")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "not a readable checkpoint" in proc.stderr


def test_truncated_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(GenlabError, match="not written by genlab"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(GenlabError, match="not a readable checkpoint"):
        load_checkpoint(truncated)


def test_wandb_failing_online_falls_back_to_offline(train_config, tmp_path: Path, monkeypatch) -> None:
    import wandb

    from genlab.train import make_loggers

    real_init = wandb.init

    def init(*args, **kwargs):
        if kwargs.get("mode") == "online":
            raise wandb.errors.CommError("could not reach api.wandb.ai")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(wandb, "init", init)
    cfg = train_config("logger=wandb", "logger.wandb.mode=online")
    (logger,) = make_loggers(cfg)
    try:
        assert logger.experiment.settings.mode == "offline"
    finally:
        wandb.finish()


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    proc = run("train.py", "debug=fast", "ckpt_path=last", f"hydra.run.dir={tmp_path}/run", env={"GENLAB_ROOT": str(tmp_path)})
    assert proc.returncode == 2 and "ckpt_path=last: no last.ckpt" in proc.stderr


BAD_VALUES = [
    ("model.optimizer.lr=-1e-3", "model.optimizer.lr=-0.001 is not valid: a learning rate must be a finite number > 0"),
    ("data.batch_size=0", "data.batch_size=0 is not valid: it must be a whole number >= 1"),
    ("model.latent_dim=0", "model.latent_dim=0 is not valid"),
    ("model.latent_dim=abc", "model.latent_dim='abc' is not valid: it must be a whole number >= 1"),
    ("model.beta=-1", "model.beta=-1 is not valid: it must be a number >= 0"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 is not valid"),
    ("data.source=internet", "data.source='internet' is unknown; choose one of auto, local, download, bundled"),
    ("model=gan model.loss=wasserstein", "model.loss='wasserstein' is unknown; choose one of nonsaturating, hinge, wgan-gp"),
    ("model=gan model.n_critic=0", "model.n_critic=0 is not valid"),
    ("model=text_vae data=text model.sample.temperature=0", "model.sample.temperature=0 is not valid: it must be a number > 0"),
    ("model=text_vae data=text data.tokenizer=bpe", "data.tokenizer='bpe' is unknown; choose one of char, word"),
    ("model=text_vae data=text data.corpus=wikipedia", "data.corpus='wikipedia' is unknown; choose one of shakespeare, file"),
    ("data.val_size=1.5", "data.val_size must be a fraction in (0, 1) or a whole count, got 1.5"),
    ("data.dataset=fashion_mnist data.source=bundled", "data.source=bundled exists for MNIST only"),
    ("nonfinite=ignore", "nonfinite='ignore' is unknown; choose stop or skip"),
    ("ddp_sigterm_seconds=-1", "ddp_sigterm_seconds=-1 is not valid: it must be a number of seconds >= 0"),
    ("trainer.precision=bf16-true", "trainer.precision='bf16-true' is not valid: it must be 32-true, 16-mixed or bf16-mixed"),
    ("trainer.precision=64", "trainer.precision=64 is not valid"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES)
def test_bad_config_values_are_caught_before_any_work(train_config, override: str, message: str) -> None:
    from genlab.train import train

    from genlab.utils.task import find_user_error

    cfg = train_config(*override.split(), "debug=fast", "logger=csv")
    with pytest.raises(Exception) as err:
        train(cfg)
    user_error = find_user_error(err.value)  # what the command line prints, also when Hydra wrapped it
    assert user_error is not None and message in str(user_error)


@pytest.mark.parametrize(
    "override, message",
    [BAD_VALUES[0], BAD_VALUES[3], ("model=vea", "no option 'vea' in the group model; did you mean vae?"),
     ("model.latnt_dim=8", "model has no key 'latnt_dim'; did you mean model.latent_dim?")],
    ids=["negative-lr", "wrong-type", "unknown-option", "key-typo"],
)
def test_bad_config_on_the_command_line_is_one_clear_message(tmp_path: Path, override: str, message: str) -> None:
    proc = run("train.py", *override.split(), "debug=fast", env={"GENLAB_ROOT": str(tmp_path)})
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    runs = tmp_path / "outputs" / "debug" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no half-made run folder left behind


@pytest.mark.slow
@pytest.mark.parametrize("when, seconds", [("batch_start", "0"), ("before_backward", "0"), ("before_backward", "1.0")],
                         ids=["batch-start-every-batch", "before-backward-every-batch", "before-backward-every-second"])
def test_sigterm_to_rank_0_under_ddp_stops_both_processes_after_the_same_batch(tmp_path: Path, when: str,
                                                                              seconds: str) -> None:
    """SIGTERM to rank 0 of two DDP processes (Lightning passes it on to the other): both stop
    after the same batch, write last.ckpt there and exit. Before its backward pass the other
    process already waits in the gradients' all-reduce, where Lightning's own handler,
    broadcasting at once, hung the run for good (``genlab.compat``). With the broadcast
    before every batch (``ddp_sigterm_seconds=0``) the stop comes after the batch the signal landed
    in; about once a second (the default), within about a second of training after it."""
    env = {"GENLAB_ROOT": str(tmp_path), "PYTHONPATH": TESTS}
    proc = run("train.py", "model=vae", "trainer=ddp_cpu", "data.source=bundled", "trainer.max_epochs=1000",
               "trainer.limit_val_batches=2", "test=false", "logger=csv", f"ddp_sigterm_seconds={seconds}",
               f"hydra.run.dir={tmp_path}/outputs/train/runs/term", "+callbacks.kill._target_=fault_injection.KillAt",
               "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2", "+callbacks.kill.signal_name=SIGTERM",
               "+callbacks.kill.rank=0", f"+callbacks.kill.when={when}", env=env, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "[rank: 1] Received SIGTERM" in out
    saved = sorted(line.split("(step ")[1].split(")")[0] for line in out.splitlines() if "SIGTERM: saved" in line)
    assert len(saved) == 2 and saved[0] == saved[1], saved  # both processes, the same step
    ckpt = load_checkpoint(tmp_path / "outputs" / "train" / "runs" / "term" / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == int(saved[0])  # where both stopped
    batches_per_epoch = 15  # 3,600 training images (5,000 bundled less test and validation), 2 shares, 128 a batch
    signalled = batches_per_epoch + 3  # the step after batch 2 of epoch 1, the one the signal landed in
    if seconds == "0":
        assert ckpt["global_step"] == signalled and ckpt["epoch"] == 1
        assert ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] == 3  # batches 0-2
    else:
        assert signalled <= ckpt["global_step"] < 1000 * batches_per_epoch  # stopped, later, not at the end


def test_sigterm_broadcast_comes_about_every_n_seconds_and_stops_at_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """genlab.compat.SigtermBroadcast in one gloo process: rank 0 sends the next interval
    with its note, sized from the time per batch; a noted SIGTERM stops at the next broadcast."""
    from types import SimpleNamespace

    import torch.distributed as dist
    from lightning_fabric.plugins.environments.lightning import find_free_network_port
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    import genlab.compat as sigterm

    port = find_free_network_port()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        total = SimpleNamespace(ready=0)
        loop = SimpleNamespace(batch_progress=SimpleNamespace(total=total))
        connector = SimpleNamespace(genlab_sigterm_noted=False, received_sigterm=False)
        trainer = SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=loop), global_rank=0, _signal_connector=connector,
                                  strategy=SimpleNamespace(root_device=torch.device("cpu")))
        clock = [0.0]
        monkeypatch.setattr(sigterm.time, "perf_counter", lambda: clock[0])
        sent = []
        broadcast = dist.broadcast
        monkeypatch.setattr(sigterm.dist, "broadcast", lambda t, src: (sent.append((total.ready, int(t.item()))),
                                                                        broadcast(t, src)))

        def batches(step, n: int, seconds_each: float) -> None:
            for _ in range(n):
                step()
                total.ready += 1
                clock[0] += seconds_each

        every_batch = sigterm.SigtermBroadcast(trainer, seconds=0)
        batches(every_batch, 5, 1 / 64)
        assert sent == [(b, 2) for b in range(5)]  # before every batch, interval 1, no SIGTERM
        sent.clear()
        total.ready = 0
        step = sigterm.SigtermBroadcast(trainer, seconds=1.0)
        batches(step, 3, 1 / 64)  # 1/64 s batches: the first two broadcast (no time per batch yet), then every 64
        assert [(b, v // 2) for b, v in sent] == [(0, 1), (1, 64)]
        batches(step, 130, 1 / 64)
        assert [b for b, _ in sent] == [0, 1, 65, 129]
        batches(step, 70, 2.0)  # batches longer than a second: after the interval already sent (up to 193),
        assert [b for b, _ in sent][3:] == [129, *range(193, 203)]  # the broadcast before every one
        assert all(v == 2 for _, v in sent[4:])  # interval 1, no SIGTERM
        batches(step, 1, 1 / 64)
        batches(step, 1, 1 / 64)  # one 1/64 s batch since the last broadcast: the next 64 batches on
        connector.genlab_sigterm_noted = True  # the handler's note: nothing happens until that broadcast
        batches(step, 63, 1 / 64)
        assert not connector.received_sigterm and sent[-1][0] == total.ready - 64
        with pytest.raises(SIGTERMException):
            step()
        assert sent[-1][0] == total.ready and sent[-1][1] % 2 == 1 and connector.received_sigterm
    finally:
        dist.destroy_process_group()


def test_the_sigterm_workaround_applies_only_to_the_lightning_it_was_tested_on() -> None:
    import pytorch_lightning

    from genlab import compat

    assert compat.applies("2.6.6") and not compat.applies("2.5.3") and not compat.applies("2.7.0")
    assert compat.applies() == pytorch_lightning.__version__.startswith("2.6.")


def test_resume_a_run_continues_it_in_its_folder_and_w_and_b_run(tmp_path: Path, uninterrupted) -> None:
    """``resume=<run folder>`` after a SIGKILL mid-epoch: the run goes on in the same folder from
    its last.ckpt, with its own config (a key given on top is applied: here the kill is dropped),
    logs to the same offline W&B run id, keeps one metrics.csv, and ends with the weights of an
    uninterrupted run, bit for bit. ``ckpt_path=last`` after a run of another model is refused with
    one line and leaves no folder."""
    env = {"GENLAB_ROOT": str(tmp_path), "PYTHONPATH": TESTS, "WANDB_MODE": "offline"}
    folder = tmp_path / "outputs" / "train" / "runs" / "killed"
    short = [s for s in SHORT if s != "logger=csv"]  # W&B (offline) and CSV
    killed = run("train.py", *MODELS["vae"], *short, f"hydra.run.dir={folder}",
                 "+callbacks.kill._target_=fault_injection.KillAt", "+callbacks.kill.epoch=2", "+callbacks.kill.batch=3",
                 env=env)
    assert killed.returncode == -signal.SIGKILL
    resumed = run("train.py", f"resume={folder}", "++callbacks.kill=null", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming the run in {folder}" in resumed.stdout + resumed.stderr
    assert sorted(p.name for p in (tmp_path / "outputs" / "train" / "runs").iterdir()) == ["killed"]
    a, b = uninterrupted("vae"), weights(folder)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    runs = sorted(p.name for p in (folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({name.rsplit("-", 1)[1] for name in runs}) == 1, runs
    import csv
    steps = [int(r["step"]) for r in csv.DictReader((folder / "metrics.csv").open()) if r.get("train/elbo")]
    assert steps == sorted(set(steps)) and steps[-1] > 2 * 6 and not list(folder.glob("metrics.*.csv"))
    assert (folder / ".hydra" / "config.yaml").read_text().count("kill") > 0  # the run's own record stays
    from genlab.utils.wandb_files import read_run, run_files

    files = run_files(folder)  # both offline folders are one W&B run, read as one for genlab-compare
    assert len(files) == 1 and len(next(iter(files.values()))) == 2
    wandb_run = read_run(next(iter(files.values())))
    final = json.loads((folder / "run_info.json").read_text())["final_metrics"]
    assert wandb_run["state"] == "finished" and wandb_run["summary"]["val/elbo"] == pytest.approx(final["val/elbo"])
    assert wandb_run["history"]["train/elbo"][-1][0] == steps[-1]

    other = run("train.py", "model=gan", *SHORT, "ckpt_path=last", env=env)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "no run of model=gan data=mnist" in other.stderr and "model=vae" in other.stderr
    assert sorted(p.name for p in (tmp_path / "outputs" / "train" / "runs").iterdir()) == ["killed"]
