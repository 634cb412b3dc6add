"""``python train.py`` / ``genlab-train``: fit and test the experiment the config composes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from genlab.data.checks import kind_of_data
from genlab.utils import command_line, run_folder, startup
from genlab.utils.config import CONF_DIR, instantiate_group, to_container
from genlab.utils.errors import GenlabError
from genlab.utils.task import format_metrics, multirun_job, run_task
from genlab.utils.trainer_setup import resolve_trainer_kwargs
from genlab.utils.validate import check_config

log = logging.getLogger("genlab.train")
DONE = "done.json"  # written into a run folder as its run ends: the final metrics
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
    so a sweep's runs sit together in W&B and say what differs between them, and ``job_type`` =
    the overrides without ``seed``, so W&B's grouping by group and job type makes the seeds of one
    configuration one line with a band (W&B allows 64 characters: a longer one is cut and keeps
    a digest of the whole)."""
    import hashlib

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hc = HydraConfig.get()
    config = ",".join(o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+") not in ("seed", "resume")) or "default"
    if len(config) > 64:
        config = f"{config[:55]}~{hashlib.sha1(config.encode()).hexdigest()[:8]}"
    return {"group": Path(hc.sweep.dir).name, "name": hc.job.override_dirname or f"job{hc.job.num}",
            "job_type": config}


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
            sweep = sweep_run_names()
            kwargs = prepare_wandb_kwargs(
                kwargs,
                tags=[choices.get("model"), choices.get("data"), *cfg.get("tags", [])],
                job_type=job_type or sweep.pop("job_type", None) or choices.get("model"),
            )
            if kwargs["mode"] == "disabled":
                continue
            kwargs.update({k: v for k, v in sweep.items() if not kwargs.get(k)})
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
    leaves it null; a conditional model's ``num_classes``), so the config saved with the run, and
    in its checkpoints, rebuilds the model on its own."""
    from omegaconf import open_dict

    settings = datamodule.model_settings() if hasattr(datamodule, "model_settings") else {}
    check_model_fits_data(cfg, "text" if "vocab_size" in settings else "image")
    with open_dict(cfg):
        if cfg.model.get("conditional") and not cfg.model.get("num_classes"):
            if not settings.get("num_classes"):
                raise GenlabError("model.conditional=true needs data with classes (data=mnist, fashion_mnist, or "
                                  "data=text with data.label=genre|column).")
            cfg.model.num_classes = settings["num_classes"]
        for node in cfg.model.values():
            for key, value in settings.items():
                if isinstance(node, DictConfig) and key in node and node[key] is None:
                    node[key] = value


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path=last``: the newest ``last.ckpt`` of this task's earlier runs (single runs and
    sweep jobs) that trained the same model on the same data; any other value is a path, checked
    before training starts."""
    from genlab.utils import runs

    value = cfg.get("ckpt_path")
    if not value:
        return None
    if value != "last":
        if not Path(value).is_file():
            raise GenlabError(f"ckpt_path={value!r}: no such file. Give a .ckpt path, ckpt_path=last for the newest "
                              "last.ckpt of the same model and data, or resume=<run folder>.")
        return str(value)
    choices = _choices(cfg)
    newest = runs.newest_last_checkpoint(Path(cfg.paths.log_dir) / cfg.task_name, choices.get("model"),
                                         choices.get("data"), skip=Path(cfg.paths.output_dir))
    log.info("Resuming from %s", newest)
    return str(newest)


def continue_wandb_run(cfg: DictConfig, folder: Path) -> None:
    """Point the W&B logger of ``cfg`` (open for new keys) at the W&B run logged into ``folder``,
    if there is one: same id, ``resume="allow"``."""
    from genlab.utils import runs

    wandb, run_id = (cfg.get("logger") or {}).get("wandb"), runs.wandb_run_id(folder)
    if isinstance(wandb, DictConfig) and run_id:
        wandb.id, wandb.resume = run_id, "allow"


def resumed_config(cfg: DictConfig) -> DictConfig:
    """``resume=<run folder>`` (or ``last``): that run's own config (its ``.hydra/config.yaml``),
    the command line's key overrides applied on top, ``ckpt_path`` its ``last.ckpt`` and the W&B
    logger set to continue its W&B run (same id, ``resume="allow"``). ``RunFolder`` has made the
    run folder this run's ``hydra.run.dir``. Groups (``model=gan``) cannot change on a resume."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import open_dict

    from genlab.utils import runs

    folder = runs.run_to_resume(str(cfg.resume), Path(cfg.paths.log_dir) / cfg.task_name)
    stored = OmegaConf.load(folder / ".hydra" / "config.yaml")
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    given = list(hydra_cfg.overrides.task) if hydra_cfg else []
    groups = set(hydra_cfg.runtime.choices) if hydra_cfg else set()
    applied = []
    for override in OverridesParser.create().parse_overrides(given):
        key = override.key_or_group
        if key == "resume":
            continue
        if key in groups or override.package is not None or override.is_delete():
            raise GenlabError(f"resume={cfg.resume} continues {folder} with its own config; it takes keys on top "
                              f"(e.g. trainer.max_epochs=20), not {override.input_line}.")
        OmegaConf.update(stored, key, override.value(), merge=True, force_add=True)
        applied.append(override.input_line)
    with open_dict(stored):
        stored.paths, stored.resume, stored.ckpt_path = cfg.paths, None, str(folder / runs.LAST)
        continue_wandb_run(stored, folder)
    log.info("Resuming the run in %s from its last.ckpt%s", folder,
             f", with {' '.join(applied)} on top" if applied else "")
    return stored


def resumed_job_config(cfg: DictConfig, job: Path) -> tuple[DictConfig, bool]:
    """A job of a resumed sweep (``python train.py -m ... resume=<sweep folder>``, the same command):
    with a ``last.ckpt`` it goes on from it, in its folder and W&B run; without one it runs from
    the start. Returns the config and whether it resumes."""
    from omegaconf import open_dict

    from genlab.utils import runs

    last = job / runs.LAST
    with open_dict(cfg):
        cfg.resume = None
        if last.is_file():
            cfg.ckpt_path = str(last)
            continue_wandb_run(cfg, job)
    log.info("Job %s %s", job.name, "goes on from its last.ckpt" if last.is_file() else "had not begun: runs from the start")
    return cfg, last.is_file()


def stash_metrics_csv(folder: Path) -> None:
    """Before a resumed run's CSV logger starts a fresh ``metrics.csv``: keep the file as
    ``metrics.<n>.csv`` (``merge_metrics_csv`` puts the parts together again)."""
    current = folder / "metrics.csv"
    if current.is_file():
        n = 1 + len(list(folder.glob("metrics.*.csv")))
        current.rename(folder / f"metrics.{n}.csv")


def merge_metrics_csv(folder: Path, resumed_step: int) -> None:
    """One ``metrics.csv`` for a resumed run: the rows of the parts before it logged before the step
    it resumed from (Lightning logs a batch's row at the step count before it; later rows were
    trained again), then its own rows, under one header."""
    import csv

    parts = sorted(folder.glob("metrics.*.csv"), key=lambda p: int(p.suffixes[0][1:]))
    if not parts:
        return
    current = folder / "metrics.csv"
    rows: list[dict[str, str]] = []
    for part in [*parts, current] if current.is_file() else parts:
        with part.open(newline="") as f:  # each part's rows take over from the step it resumed from
            rows = [r for r in rows if int(r.get("step") or 0) < resumed_step] + list(csv.DictReader(f))
    keys = sorted({k for r in rows for k in r})
    with current.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    for part in parts:
        part.unlink()


def build_model(model_cfg: DictConfig) -> Any:
    """The model from its config; a key the model's class does not take (``+model.foo=1``) is one
    line naming the arguments it takes."""
    import inspect

    from hydra.errors import InstantiationException
    from hydra.utils import get_class, instantiate

    try:
        return instantiate(model_cfg)
    except InstantiationException as e:
        if "unexpected keyword argument" not in str(e):
            raise
        cls = get_class(model_cfg._target_)
        takes = []
        for klass in cls.__mro__:  # **kwargs pass on to the base class's arguments
            params = inspect.signature(klass.__init__).parameters.values()
            takes += [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"]
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
        takes = list(dict.fromkeys(takes))
        unknown = [k for k in model_cfg if not str(k).startswith("_") and k not in takes]
        raise GenlabError(f"model.{', model.'.join(map(str, unknown)) or '?'}: {cls.__name__} takes no such argument; "
                          f"its arguments: {', '.join(takes)}.") from None


def to_channels_last(model: Any) -> int:
    """Store the model's 4-D weights (its convolutions, the EMA copy's too) channels-last (NHWC),
    in place; return how many. Convolutions in bfloat16 on CPUs with AMX or AVX-512 BF16 and in
    16-bit on tensor-core GPUs are faster in that layout, and their outputs follow it; values,
    state-dict keys and checkpoints are unchanged (``nn.Module.to(memory_format=...)``)."""
    import torch

    model.to(memory_format=torch.channels_last)
    converted = sum(1 for p in model.parameters() if p.dim() == 4)
    log.info("channels_last: %d convolution weights", converted)
    return converted


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
    sweep_job = multirun_job(cfg)
    job = Path(sweep_job["folder"]) if sweep_job else None
    if cfg.get("resume") and job is not None:  # a sweep resumed: this job is done, half done or not begun
        if (job / DONE).is_file():
            log.info("Job %s finished before the sweep stopped: not run again", job.name)
            return json.loads((job / DONE).read_text())["metrics"]
        cfg, resuming = resumed_job_config(cfg, job)
    else:
        resuming = bool(cfg.get("resume"))
        if resuming:
            cfg = resumed_config(cfg)
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
    model = build_model(cfg.model)
    resumed_step = 0
    if ckpt_path is not None:  # unreadable, foreign or another model's: one clear line, before W&B starts
        resumed_step = check_resume(ckpt_path, model)
    run_info = RunInfo(config)
    callbacks = [*instantiate_group(cfg.get("callbacks")), run_info, ResumeState(), NonFiniteLoss(cfg.get("nonfinite", "stop"))]
    # monitor=none: the best-checkpoint callback keeps nothing (save_top_k 0) and is left out; beside
    # last.ckpt's it would share its state key, which Lightning refuses
    callbacks = [c for c in callbacks if not (isinstance(c, pl.callbacks.ModelCheckpoint) and c.save_top_k == 0)]
    if trainer_kwargs.get("log_every_n_steps") is None:  # fitted to the epoch's length
        callbacks.append(LogInterval())
    callbacks = with_progress_bar(callbacks, trainer_kwargs)
    if cfg.get("channels_last"):
        to_channels_last(model)
    if cfg.get("compile"):
        compile_nets(model)
    startup.mark("data module, model")
    if trainer_kwargs.get("enable_checkpointing") is None:
        # Lightning would add a checkpoint of its own every epoch when none is configured
        trainer_kwargs["enable_checkpointing"] = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    folder = Path(cfg.paths.output_dir)
    if resuming and not run_folder.is_secondary_rank():
        stash_metrics_csv(folder)  # Lightning's CSV logger starts metrics.csv afresh
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
    if resuming and trainer.is_global_zero:
        merge_metrics_csv(folder, resumed_step)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics.update(run_info.timings)

    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train", True) else ""
        if best:
            log.info("Testing the best checkpoint: %s", best)
        else:
            log.info("No best checkpoint; testing the current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)  # the final table below has them
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})

    if trainer.is_global_zero:
        log.info("Final metrics:\n%s", format_metrics(metrics))
        log.info("Run directory: %s", trainer.default_root_dir)
        (folder / DONE).write_text(json.dumps({"metrics": metrics}, indent=2))  # a resumed sweep skips this job
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    return run_task(train, cfg)


def main() -> None:
    """``python train.py`` / ``genlab-train``: the command line checked, then Hydra's run."""
    command_line.check("train")
    hydra_main()


if __name__ == "__main__":
    main()
