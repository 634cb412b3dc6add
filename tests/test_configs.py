"""Every config option composes; the keys users type exist; trainer.gpus is translated."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genlab.utils.config import CONF_DIR
from genlab.utils.errors import GenlabError
from genlab.utils.trainer_setup import resolve_trainer_kwargs

GROUPS = ["data", "model", "trainer", "logger", "callbacks", "monitor", "experiment", "hparams_search", "debug", "paths", "hydra"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_exists_and_top_configs() -> None:
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"
    assert (CONF_DIR / "train.yaml").is_file() and (CONF_DIR / "eval.yaml").is_file()


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in GROUPS if g != "hydra" for o in options(g)],
)
def test_option_composes(train_config, override: str) -> None:
    cfg = train_config(override)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.model._target_ and cfg.data._target_ and cfg.trainer._target_


@pytest.mark.parametrize("preset", options("experiment"))
def test_every_preset_has_a_gpu_budget(train_config, preset: str) -> None:
    """``experiment=gpu/<preset>`` is the preset's recipe on one GPU: only the accelerator differs,
    and a time limit where the preset has one (a GPU's budget is never longer than the 2-core CPU's)."""
    assert (CONF_DIR / "experiment" / "gpu" / f"{preset}.yaml").is_file(), f"conf/experiment/gpu/{preset}.yaml"
    cpu = OmegaConf.to_container(train_config(f"experiment={preset}"))
    gpu = OmegaConf.to_container(train_config(f"experiment=gpu/{preset}"))
    cpu_trainer, gpu_trainer = cpu.pop("trainer"), gpu.pop("trainer")
    assert gpu == cpu
    changed = {key for key in cpu_trainer.keys() | gpu_trainer.keys() if cpu_trainer.get(key) != gpu_trainer.get(key)}
    assert changed <= {"accelerator", "max_time"} and gpu_trainer["accelerator"] == "gpu" and gpu_trainer["devices"] == 1
    if cpu_trainer.get("max_time"):
        assert gpu_trainer["max_time"] <= cpu_trainer["max_time"]  # DD:HH:MM:SS, zero-padded
    else:
        assert "max_time" not in changed


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("data", options("data"))
def test_model_and_data_instantiate(train_config, model: str, data: str) -> None:
    if model.startswith("text_") != (data == "text"):
        pytest.skip("text models go with text data, image models with image data")
    cfg = train_config(f"model={model}", f"data={data}", *(vocab_overrides(model, 50) if data == "text" else []))
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data)
    assert sum(p.numel() for p in module.parameters()) > 0
    assert dm.batch_size == cfg.data.batch_size


@pytest.mark.parametrize("model", [m for m in options("model") if not m.startswith("text_")])
def test_keys_users_type(train_config, model: str) -> None:
    cfg = train_config(
        f"model={model}", "model.latent_dim=8", "model.optimizer.lr=3e-4", "data.batch_size=32",
        "data.root=/tmp/x", "data.source=bundled", "trainer.max_epochs=3", "trainer.precision=bf16-mixed",
        "trainer.gpus=0", "seed=7", "ckpt_path=/tmp/last.ckpt",
    )
    nets = [cfg.model.encoder, cfg.model.decoder] if "encoder" in cfg.model else [cfg.model.generator]
    assert all(net.latent_dim == 8 for net in nets)
    assert cfg.model.optimizer.lr == 3e-4 and cfg.data.batch_size == 32
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.gpus == 0
    assert cfg.data.seed == 7 and cfg.ckpt_path == "/tmp/last.ckpt"


def test_text_keys_users_type(train_config) -> None:
    cfg = train_config("model=text_vae", "data=text", "model.latent_dim=8", "data.tokenizer=char", "data.max_len=80",
                       "model.sample.temperature=0.7", *vocab_overrides("text_vae", 50))
    assert cfg.model.encoder.latent_dim == cfg.model.decoder.latent_dim == 8
    assert cfg.model.decoder.max_len == 80 and cfg.model.encoder.vocab_size == 50
    assert cfg.model.sample.temperature == 0.7 and cfg.model.grad_clip == 5.0
    assert "image_samples" not in instantiate_names(cfg) and "text_samples" in instantiate_names(cfg)
    gan = train_config("model=text_gan", "data=text", "model.latent_dim=8", "model.encoder.latent_dim=32")
    assert gan.model.generator.latent_dim == 8 and gan.model.generator.code_dim == gan.model.decoder.latent_dim == 32


def vocab_overrides(model: str, size: int) -> list[str]:
    """What train.py fills in from the data: the vocabulary size of each text net."""
    return [f"model.decoder.vocab_size={size}"] + ([] if model == "text_lm" else [f"model.encoder.vocab_size={size}"])


def test_model_configs_set_only_the_model_and_choose_their_callbacks_and_monitor(train_config) -> None:
    """A model config configures the model (package ``model``); the callbacks and monitor it goes
    with are chosen in its defaults list and can be overridden from the command line."""
    base = train_config("model=vae")
    for name in options("model"):
        cfg = train_config(f"model={name}", *(["data=text"] if name.startswith("text_") else []))
        assert set(cfg) == set(base), name  # no root keys of its own
        assert cfg.trainer == base.trainer, name
    dcgan, gan = train_config("model=dcgan"), train_config("model=gan")
    assert {k for k in dcgan.model if dcgan.model[k] != gan.model[k]} == {"generator", "discriminator"}
    assert dcgan.callbacks == gan.callbacks and dcgan.monitor.metric == "val/fid"
    cfg = train_config("model=gan", "callbacks=none", "monitor=elbo")
    assert not cfg.callbacks and cfg.monitor.metric == "val/elbo"


def test_text_nets_are_the_classes_of_genlab_nets_text() -> None:
    """train.py tells genlab's text nets by their module before torch is imported; their classes
    say it too (``data_kind``), and no other net of genlab's does."""
    import inspect

    import genlab.nets.image
    import genlab.nets.latent
    import genlab.nets.text
    from genlab.train import TEXT_NETS, model_data_kind

    for module in (genlab.nets.image, genlab.nets.latent, genlab.nets.text):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, torch.nn.Module):
                assert (getattr(cls, "data_kind", None) == "text") == (module.__name__ + ".").startswith(TEXT_NETS), cls
    assert model_data_kind(OmegaConf.create({"decoder": {"_target_": "genlab.nets.text.RNNDecoder"}})) == "text"
    assert model_data_kind(OmegaConf.create({"decoder": {"_target_": "genlab.nets.image.MLPDecoder"}})) == "image"


def instantiate_names(cfg) -> set[str]:
    return {k for k, v in cfg.callbacks.items() if v is not None}


def test_hparams_search_uses_optuna(train_config) -> None:
    from hydra.core.global_hydra import GlobalHydra
    from hydra import compose, initialize_config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("train", overrides=["hparams_search=vae_optuna"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.optimized_metric == "val/elbo" and cfg.hydra.sweeper.direction == "minimize"


# ------------------------------------------------------------------ trainer.gpus alias
def base() -> dict:
    return {"_target_": "pytorch_lightning.Trainer", "accelerator": "cpu", "devices": 1, "strategy": "auto"}


def test_gpus_none_is_plain_lightning() -> None:
    kw = resolve_trainer_kwargs({**base(), "gpus": None, "devices": 3, "strategy": "ddp_spawn"})
    assert kw == {**base(), "devices": 3, "strategy": "ddp_spawn"}


def test_gpus_zero_is_cpu() -> None:
    kw = resolve_trainer_kwargs({**base(), "gpus": 0, "accelerator": "gpu"})
    assert kw["accelerator"] == "cpu" and "gpus" not in kw


def test_gpus_n_translates_to_ddp() -> None:
    kw = resolve_trainer_kwargs({**base(), "gpus": 2}, count_gpus=lambda: 4)
    assert (kw["accelerator"], kw["devices"], kw["strategy"]) == ("gpu", 2, "ddp")
    kw = resolve_trainer_kwargs({**base(), "gpus": 2}, count_gpus=lambda: 2, find_unused_parameters=True)
    assert kw["strategy"] == "ddp_find_unused_parameters_true"
    kw = resolve_trainer_kwargs({**base(), "gpus": 1}, count_gpus=lambda: 1)
    assert (kw["accelerator"], kw["devices"], kw["strategy"]) == ("gpu", 1, "auto")


def test_explicit_strategy_is_kept() -> None:
    kw = resolve_trainer_kwargs({**base(), "gpus": 2, "strategy": "ddp_spawn"}, count_gpus=lambda: 2)
    assert kw["strategy"] == "ddp_spawn"


def test_too_few_gpus_is_a_clear_error() -> None:
    with pytest.raises(GenlabError) as e:
        resolve_trainer_kwargs({**base(), "gpus": 2}, count_gpus=lambda: 0)
    msg = str(e.value)
    assert "trainer.gpus=2" in msg and "2 GPUs" in msg and "0 are visible" in msg and "trainer.gpus=0" in msg
    with pytest.raises(GenlabError, match="at most trainer.gpus=1"):
        resolve_trainer_kwargs({**base(), "gpus": 2}, count_gpus=lambda: 1)


@pytest.mark.parametrize("bad", [-1, 1.5, "two", True])
def test_bad_gpus_value(bad) -> None:
    with pytest.raises(GenlabError, match="trainer.gpus must be"):
        resolve_trainer_kwargs({**base(), "gpus": bad})
