"""``python train.py`` / ``genlab-train``: fit and test the experiment the config composes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.data.checks import kind_of_data
from genlab.utils import startup
from genlab.utils.config import CONF_DIR, instantiate_group, to_container
from genlab.utils.errors import GenlabError
from genlab.utils.task import format_metrics, run_task
from genlab.utils.trainer_setup import resolve_trainer_kwargs
from genlab.utils.validate import check_config

log = logging.getLogger("genlab.train")
TEXT_NETS = "genlab.nets.text."  # the module of genlab's text nets
startup.mark("python, hydra")


def _choices(cfg: DictConfig) -> dict[str, str]:
    """Hydra's chosen config names (``model=vae`` -> ``{"model": "vae"}``), when run by Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if isinstance(v, str)}
    return {"model": cfg.model._target_.rsplit(".", 1)[-1].lower(), "data": str(cfg.data.get("dataset", ""))}


def sweep_run_names() -> dict[str, str]:
    """In a Hydra multirun: W&B ``group`` = the sweep folder's name, ``name`` = the job's overrides,
    so a sweep's runs sit together in W&B and say what differs between them."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    return {"group": Path(hc.sweep.dir).name, "name": hc.job.override_dirname or f"job{hc.job.num}"}


def make_loggers(cfg: DictConfig, choices: dict[str, str] | None = None, job_type: str | None = None) -> list[Any]:
    """The ``logger`` group's loggers; the W&B one gets its mode, job type and tags here
    (job type = the model's config name unless given; tags = model and data names)."""
    from hydra.utils import instantiate

    from genlab.utils.wandb_setup import prepare_wandb_kwargs, start_or_fall_back

    loggers = []
    choices = choices or _choices(cfg)
    for name, node in (cfg.get("logger") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        kwargs = OmegaConf.to_container(node, resolve=True)
        if kwargs["_target_"].endswith("WandbLogger"):
            kwargs = prepare_wandb_kwargs(
                kwargs,
                tags=[choices.get("model"), choices.get("data"), *cfg.get("tags", [])],
                job_type=job_type or choices.get("model"),
            )
            if kwargs["mode"] == "disabled":
                continue
            kwargs.update({k: v for k, v in sweep_run_names().items() if not kwargs.get(k)})
            loggers.append(start_or_fall_back(instantiate(kwargs), kwargs))
            continue
        loggers.append(instantiate(kwargs))
    return loggers


def model_data_kind(model_cfg: DictConfig) -> str:
    """``"text"`` when one of the model's nets is a text net (its class says ``data_kind = "text"``,
    as genlab's recurrent encoder and decoder do), else ``"image"``.

    genlab's own nets are told apart by their module, ``genlab.nets.text`` holding the text nets
    (a test keeps this true), so a model made of them is checked before torch is imported; a net
    from elsewhere is imported to read its class."""
    targets = [node._target_ for node in model_cfg.values() if isinstance(node, DictConfig) and "_target_" in node]
    nets = [t for t in targets if not t.startswith("torch.")]
    if all(t.startswith("genlab.nets.") for t in nets):
        return "text" if any(t.startswith(TEXT_NETS) for t in nets) else "image"
    from hydra.utils import get_class

    return "text" if any(getattr(get_class(t), "data_kind", None) == "text" for t in nets) else "image"


def check_model_fits_data(cfg: DictConfig, data_kind: str | None) -> None:
    """A text model needs text data, and text data a text model."""
    if data_kind is None:
        return
    text_model = model_data_kind(cfg.model) == "text"
    model_name = _choices(cfg).get("model", cfg.model._target_)
    if text_model and data_kind != "text":
        raise GenlabError(f"model={model_name} is a text model: use it with data=text.")
    if data_kind == "text" and not text_model:
        raise GenlabError(f"data=text needs a text model (model=text_vae, text_gan or text_lm), not model={model_name}.")


def fill_model_settings(cfg: DictConfig, datamodule: Any) -> None:
    """Give the model's nets what only the data knows (a text net's ``vocab_size`` where the config
    leaves it null), so the config saved with the run, and in its checkpoints, rebuilds the model
    on its own."""
    from omegaconf import open_dict

    settings = datamodule.model_settings() if hasattr(datamodule, "model_settings") else {}
    check_model_fits_data(cfg, "text" if "vocab_size" in settings else "image")
    with open_dict(cfg):
        for node in cfg.model.values():
            for key, value in settings.items():
                if isinstance(node, DictConfig) and key in node and node[key] is None:
                    node[key] = value


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path=last``: the newest ``last.ckpt`` of this task's earlier runs (single runs and
    sweep jobs); any other value is a path, checked before training starts."""
    value = cfg.get("ckpt_path")
    if not value:
        return None
    if value != "last":
        if not Path(value).is_file():
            raise GenlabError(f"ckpt_path={value!r}: no such file. Give a .ckpt path, or ckpt_path=last for the newest last.ckpt.")
        return str(value)
    task_dir = Path(cfg.paths.log_dir) / cfg.task_name
    found = [p for p in task_dir.glob("*/*/checkpoints/last.ckpt")] + [p for p in task_dir.glob("*/*/*/checkpoints/last.ckpt")]
    found = [p for p in found if Path(cfg.paths.output_dir) not in p.parents]
    if not found:
        raise GenlabError(f"ckpt_path=last: no last.ckpt under {task_dir}; nothing to resume.")
    newest = max(found, key=lambda p: p.stat().st_mtime)
    log.info("Resuming from %s", newest)
    return str(newest)


def compile_nets(model: Any) -> list[str]:
    """``torch.compile`` each net of the model in place (``nn.Module.compile``): the objectives call
    their nets, not ``forward``, and in-place compilation keeps checkpoint keys unchanged."""
    compiled = []
    for name, child in model.named_children():
        if name != "ema" and any(True for _ in child.parameters()):
            child.compile()
            compiled.append(name)
    log.info("torch.compile: %s", ", ".join(compiled))
    return compiled


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit the model on the data, then test the best checkpoint; return the final metrics."""
    # a bad value or a missing checkpoint is reported before torch and Lightning are imported
    check_config(cfg)
    if cfg.get("nonfinite", "stop") not in ("stop", "skip"):
        raise GenlabError(f"nonfinite={cfg.nonfinite!r} is unknown; choose stop or skip.")
    # a genlab data module says its kind in its config; any other says it once it is built
    check_model_fits_data(cfg, kind_of_data(cfg.data))
    ckpt_path = resolve_ckpt_path(cfg)
    startup.mark("config")
    import pytorch_lightning as pl
    from hydra.utils import get_class, instantiate

    from genlab.callbacks.log_interval import LogInterval
    from genlab.callbacks.nonfinite import NonFiniteLoss
    from genlab.callbacks.progress import with_progress_bar
    from genlab.callbacks.resume import ResumeState
    from genlab.callbacks.run_info import RunInfo
    from genlab.checkpoint import check_resume
    from genlab.compat import agree_on_sigterm

    startup.mark("torch, lightning")

    model_cls = get_class(cfg.model._target_)
    trainer_kwargs = resolve_trainer_kwargs(
        OmegaConf.to_container(cfg.trainer, resolve=True),
        find_unused_parameters=getattr(model_cls, "ddp_find_unused_parameters", False),
    )
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    fill_model_settings(cfg, datamodule)
    config = to_container(cfg)
    model = instantiate(cfg.model)
    if ckpt_path is not None:  # unreadable, foreign or another model's: one clear line, before W&B starts
        check_resume(ckpt_path, model)
    run_info = RunInfo(config)
    callbacks = [*instantiate_group(cfg.get("callbacks")), run_info, ResumeState(), NonFiniteLoss(cfg.get("nonfinite", "stop"))]
    if trainer_kwargs.get("log_every_n_steps") is None:  # fitted to the epoch's length
        callbacks.append(LogInterval())
    callbacks = with_progress_bar(callbacks, trainer_kwargs)
    if cfg.get("compile"):
        compile_nets(model)
    startup.mark("data module, model")
    if trainer_kwargs.get("enable_checkpointing") is None:
        # Lightning would add a checkpoint of its own every epoch when none is configured
        trainer_kwargs["enable_checkpointing"] = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    loggers = make_loggers(cfg)
    startup.mark("loggers (W&B)")
    trainer = instantiate(trainer_kwargs, callbacks=callbacks, logger=loggers or False)
    # under DDP a SIGTERM stops every process after the same batch, agreed on about every ddp_sigterm_seconds
    agree_on_sigterm(trainer, float(cfg.get("ddp_sigterm_seconds", 1.0)))
    for logger in loggers:
        logger.log_hyperparams(config)
    startup.mark("trainer")

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics.update(run_info.timings)

    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train", True) else ""
        if best:
            log.info("Testing the best checkpoint: %s", best)
        else:
            log.info("No best checkpoint; testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})

    if trainer.is_global_zero:
        log.info("Final metrics:\n%s", format_metrics(metrics))
        log.info("Run directory: %s", trainer.default_root_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


if __name__ == "__main__":
    main()
