"""The GAN objective under manual optimization: two optimizers, alternating steps.

Per batch: ``n_critic`` discriminator steps on detached fakes, then one generator step. Each step
toggles its optimizer, so the generator step never changes discriminator weights and the
discriminator step never changes generator weights.

Counting: Lightning's ``trainer.global_step`` advances once per optimizer step, i.e.
``n_critic + 1`` times per batch here, so ``trainer.max_steps`` counts optimizer steps, not
batches. genlab's own ``batches_seen`` counts batches and drives logging of the schedule.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from genlab.models import gan_losses
from genlab.models.augment import diff_augment, parse_policy
from genlab.models.base import GenerativeModule, OptimizerFactory
from genlab.models.ema import EMA
from genlab.utils.errors import GenlabError


class GAN(GenerativeModule):
    """Generative adversarial network (Goodfellow et al. 2014) on images in [0, 1].

    Args:
        generator: maps ``z [B, latent_dim]`` to images in [-1, 1] (tanh).
        discriminator: maps images in [-1, 1] to one logit per image.
        optimizer: partially applied optimizer for both nets (``model.optimizer.lr`` sets both).
        optimizer_g, optimizer_d: per-net optimizers that replace ``optimizer`` for one net
            (e.g. a two-timescale rule with a faster discriminator).
        latent_dim: size of the noise z ~ N(0, I).
        loss: ``nonsaturating`` | ``hinge`` | ``wgan-gp``.
        n_critic: discriminator steps per generator step.
        gp_weight: weight of the gradient penalty (``wgan-gp`` only).
        label_smoothing: one-sided: real targets become ``1 - label_smoothing`` (``nonsaturating``).
        grad_clip: clip each net's gradient norm to this value (true, unscaled gradients).
        ema_decay: keep an exponential moving average of the generator for sampling (e.g. 0.999).
        scheduler_g, scheduler_d: optional partially applied LR schedulers, stepped every epoch.
        conditional: class-conditional GAN: the generator takes the one-hot label with the noise,
            the discriminator the label through a projection (Miyato & Koyama 2018); fakes are
            drawn for the labels of the real batch, so a WGAN-GP penalty is on interpolates of
            the same class.
        num_classes: the data's number of classes (``train.py`` fills it in from the data).
        aux_weight: with a discriminator that has a class head (``aux_classifier=true``), the
            AC-GAN terms (Odena et al. 2017): the discriminator also learns to classify real
            images (cross-entropy with their labels, times ``aux_weight``), and the generator to
            make fakes it classifies as their requested class. The head learns on real images
            only: trained on fakes too, it rewards fakes that are merely easy to classify.
        r1_gamma: weight of the R1 penalty on real images (Mescheder et al. 2018), gamma/2 x
            E||grad D(x)||^2; 0 turns it off.
        r1_every: lazy R1 (Karras et al. 2020): computed every this many batches, weighted by
            it, so its average pull is the same at a fraction of the cost.
        diffaugment: DiffAugment policy (Zhao et al. 2020), e.g. ``[color, translation, cutout]``:
            the discriminator sees real and fake images through the same random augmentations
            in both steps (``genlab.models.augment``); null: none.
    """

    # each of the two steps leaves one net without gradients: DDP must expect that
    ddp_find_unused_parameters = True

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer: OptimizerFactory | None = None,
        optimizer_g: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
        latent_dim: int = 100,
        loss: str = "nonsaturating",
        n_critic: int = 1,
        gp_weight: float = 10.0,
        label_smoothing: float = 0.0,
        grad_clip: float | None = None,
        ema_decay: float | None = None,
        scheduler_g: Callable[..., Any] | None = None,
        scheduler_d: Callable[..., Any] | None = None,
        conditional: bool = False,
        num_classes: int | None = None,
        aux_weight: float = 1.0,
        r1_gamma: float = 0.0,
        r1_every: int = 16,
        diffaugment: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(  # nets and factories are config, not hyperparameters (subclasses' too)
            ignore=["generator", "discriminator", "optimizer", "optimizer_g", "optimizer_d", "scheduler_g", "scheduler_d",
                    "encoder", "decoder", "optimizer_ae"],
            logger=False,
        )
        self.automatic_optimization = False
        if n_critic < 1:
            raise GenlabError(f"model.n_critic must be at least 1, got {n_critic}.")
        if not 0.0 <= label_smoothing < 0.5:
            raise GenlabError(f"model.label_smoothing must be in [0, 0.5), got {label_smoothing}.")
        if ema_decay is not None and not 0.0 < ema_decay < 1.0:
            raise GenlabError(f"model.ema_decay must be in (0, 1) or null, got {ema_decay}.")
        self.generator, self.discriminator = generator, discriminator
        self.optimizer_g, self.optimizer_d = optimizer_g or optimizer, optimizer_d or optimizer
        if self.optimizer_g is None or self.optimizer_d is None:
            raise GenlabError("set model.optimizer (both nets) or both model.optimizer_g and model.optimizer_d.")
        self.scheduler_g, self.scheduler_d = scheduler_g, scheduler_d
        self.latent_dim, self.loss_name = latent_dim, gan_losses.check_loss(loss)
        self.n_critic, self.gp_weight, self.label_smoothing = n_critic, gp_weight, label_smoothing
        self.grad_clip = grad_clip
        self.set_classes(conditional, num_classes)
        # AC-GAN: when the conditional discriminator has a class head
        self.aux_weight = aux_weight if self.conditional and getattr(discriminator, "aux", None) is not None else 0.0
        if r1_gamma < 0 or r1_every < 1:
            raise GenlabError(f"model.r1_gamma must be >= 0 and model.r1_every >= 1, got {r1_gamma} and {r1_every}.")
        self.r1_gamma, self.r1_every = r1_gamma, r1_every
        self.last_r1: torch.Tensor | None = None  # the latest R1 penalty computed (logged as train/r1)
        self.augment_policy = parse_policy(diffaugment)
        self.ema: EMA | None = None
        if ema_decay is not None:
            self.ema = EMA(generator, ema_decay)
            self.ema.requires_grad_(False)
        self.batches_seen = 0  # genlab's own counter (global_step counts optimizer steps)

    # ----------------------------------------------------------------- training
    def _fake(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(self.condition(torch.randn(n, self.latent_dim, device=self.device), labels))

    def critic(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The discriminator's logits (given the labels, for a conditional model)."""
        return self.discriminator(x, labels) if self.conditional else self.discriminator(x)

    def _step(self, optimizer: Any, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()  # gradients are clipped in on_before_optimizer_step, after unscaling

    def real_input(self, batch: Any) -> torch.Tensor:
        """What the discriminator sees as real: images scaled from [0, 1] to the generator's tanh range."""
        return batch[0] * 2.0 - 1.0

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminator sees of a batch in training: ``x`` through the DiffAugment policy."""
        return diff_augment(x, self.augment_policy) if self.augment_policy else x

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor,
                           labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's loss on a real and a fake batch (both augmented alike), and its
        parts: the logits ``d_real``, ``d_fake``, the gradient penalty ``gp`` (``wgan-gp``), the
        R1 penalty ``r1`` (on the batches it is due) and the class loss ``d_aux`` on the real
        images (AC-GAN)."""
        real, fake = self.augment(real), self.augment(fake)
        parts: dict[str, torch.Tensor] = {}
        if self.aux_weight:
            parts["d_real"], class_real = self.discriminator(real, labels, classes=True)
        else:
            parts["d_real"] = self.critic(real, labels)
        parts["d_fake"] = self.critic(fake, labels)
        loss = gan_losses.d_loss(self.loss_name, parts["d_real"], parts["d_fake"], real_label=1.0 - self.label_smoothing)
        if self.loss_name == "wgan-gp":
            parts["gp"] = gan_losses.gradient_penalty(lambda x: self.critic(x, labels), real, fake)
            loss = loss + self.gp_weight * parts["gp"]
        if self.r1_gamma and self.batches_seen % self.r1_every == 0:
            parts["r1"] = gan_losses.r1_penalty(lambda x: self.critic(x, labels), real)
            loss = loss + 0.5 * self.r1_gamma * self.r1_every * parts["r1"]
            self.last_r1 = parts["r1"].detach()
        if self.aux_weight:
            parts["d_aux"] = F.cross_entropy(gan_losses.at_least_float32(class_real), labels.long())
            loss = loss + self.aux_weight * parts["d_aux"]
        return loss, parts

    def generator_loss(self, fake: torch.Tensor,
                       labels: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's loss on a fake batch (augmented as the discriminator's), and the class
        loss ``g_aux`` of its fakes (AC-GAN)."""
        fake = self.augment(fake)
        if not self.aux_weight:
            return gan_losses.g_loss(self.loss_name, self.critic(fake, labels)), {}
        logit, classes = self.discriminator(fake, labels, classes=True)
        aux = F.cross_entropy(gan_losses.at_least_float32(classes), labels.long())
        return gan_losses.g_loss(self.loss_name, logit) + self.aux_weight * aux, {"g_aux": aux}

    def adversarial_step(self, real: torch.Tensor, opt_g: Any, opt_d: Any,
                         labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``n_critic`` discriminator steps, then one generator step (fakes of the real batch's
        ``labels`` for a conditional model); returns the values to log on the steps whose logs
        are written (``step_logs_due``), else an empty dict."""
        n = real.shape[0]
        # One generator forward serves the first discriminator step (detached) and the generator
        # step: the generator's weights do not change in between.
        fake = self._fake(n, labels)
        for i in range(self.n_critic):
            if i == 0:
                fake_d = fake.detach()
            else:  # the further critic steps' fakes need no graph through the generator
                with torch.no_grad():
                    fake_d = self._fake(n, labels)
            # toggled: only the discriminator's parameters require gradients in this step
            with self.toggled_optimizer(opt_d):
                d_loss, d_parts = self.discriminator_loss(real, fake_d, labels)
                self._step(opt_d, d_loss)

        with self.toggled_optimizer(opt_g):  # the discriminator is frozen for this step
            g_loss, g_parts = self.generator_loss(fake, labels)
            self._step(opt_g, g_loss)
        if self.ema is not None:
            self.ema.update_parameters(self.generator)

        if not self.step_logs_due():
            return {}
        metrics = {
            "train/d_loss": d_loss, "train/g_loss": g_loss,
            "train/d_real": gan_losses.mean_output(self.loss_name, d_parts.pop("d_real")),
            "train/d_fake": gan_losses.mean_output(self.loss_name, d_parts.pop("d_fake")),
        }
        metrics.update({f"train/{k}": v for k, v in {**d_parts, **g_parts}.items()})
        if self.last_r1 is not None:
            # Lazy R1 is computed every r1_every batches and the logs are written every
            # log_every_n_steps: the two need not meet (16 and 50 never do), so the latest value is logged.
            metrics["train/r1"] = self.last_r1
        return metrics

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        real = self.real_input(batch)
        metrics = self.adversarial_step(real, opt_g, opt_d, self.labels_of(batch))
        self.batches_seen += 1
        if metrics:
            self.log_train_step(metrics, batch_size=real.shape[0], prog_bar=("train/d_loss", "train/g_loss"))

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this after the AMP grad scaler has unscaled the gradients (with clipping,
        # genlab's optimizers are the plain ones, which it unscales), so the threshold applies to
        # the true gradients under 16-mixed too.
        if self.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Schedulers step after the epoch's last batch. Not in on_train_epoch_end: checkpoint
        # callbacks save before the module's on_train_epoch_end runs, and a resumed run would then
        # miss that epoch's step.
        if batch_idx + 1 < self.trainer.num_training_batches:
            return
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()

    # ----------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Any, stage: str) -> None:
        self._log_discriminator(self.real_input(batch), stage, self.labels_of(batch))

    def _log_discriminator(self, real: torch.Tensor, stage: str, labels: torch.Tensor | None = None) -> None:
        """``{stage}/d_real`` and ``{stage}/d_fake``: the discriminator on ``real`` and on as many samples."""
        d_real = self.critic(real, labels)
        z = self.condition(torch.randn(real.shape[0], self.latent_dim, device=self.device), labels)
        d_fake = self.critic(self.sampler(z), labels)
        for name, logits in (("d_real", d_real), ("d_fake", d_fake)):
            self.log(f"{stage}/{name}", gan_losses.mean_output(self.loss_name, logits), on_epoch=True,
                     batch_size=real.shape[0], sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # ----------------------------------------------------------------- sampling
    @property
    def sampler(self) -> nn.Module:
        """The net that draws samples: the EMA generator when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for noise ``z`` (of class ``labels`` for a conditional model; every
        class in turn when not given)."""
        code = self.condition(z.to(self.device), self.requested_labels(labels, len(z)))
        return (self.sampler(code).float() + 1.0) / 2.0

    # ----------------------------------------------------------------- optimisation and state
    def configure_optimizers(self) -> Any:
        opt_g = self.build_optimizer(self.optimizer_g, self.generator.parameters())
        opt_d = self.build_optimizer(self.optimizer_d, self.discriminator.parameters())
        schedulers = [f(optimizer=o) for f, o in ((self.scheduler_g, opt_g), (self.scheduler_d, opt_d)) if f is not None]
        return [opt_g, opt_d], schedulers

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["gan_batches_seen"] = self.batches_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.batches_seen = int(checkpoint.get("gan_batches_seen", 0))
