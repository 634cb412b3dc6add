"""MNISTDataModule: shapes, ranges and split sizes from every source."""

from __future__ import annotations

import math

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, needs_shared_data
from genlab.data import MNISTDataModule
from genlab.utils.errors import GenlabError


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_local(root: Path, folder: str, split: str, n: int, seed: int = 0, gz: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images, gz)
    write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return images, labels


def batches(dm: MNISTDataModule, stage: str):
    loader = getattr(dm, f"{stage}_dataloader")()
    return [dm.on_after_batch_transfer(b, 0) for b in loader]


def image_set(x: torch.Tensor) -> set[bytes]:
    return {bytes(row) for row in x.reshape(len(x), -1).to(torch.uint8).numpy()}


def test_bundled_shapes_ranges_and_sizes(tmp_path: Path) -> None:
    dm = MNISTDataModule(root=str(tmp_path), source="bundled", batch_size=64, eval_batch_size=500, seed=1)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.info["sizes"] == {"train": 3600, "val": 400, "test": 1000}
    assert dm.info["sources"] == {"train": "bundled", "val": "bundled", "test": "bundled"}
    x, y = batches(dm, "train")[0]
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.shape == (64,)
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9  # real digits reach full ink
    assert sum(len(b[1]) for b in batches(dm, "val")) == 400
    # the bundled test set is class-balanced and disjoint from train and val
    test_y = dm.test_dataloader().dataset.labels
    assert torch.bincount(test_y, minlength=10).tolist() == [100] * 10
    # ... in a shuffled order: the first 100 test images (a measure over the first n, as
    # nll_examples) hold every class, although the file lists its images class by class
    assert (torch.bincount(test_y[:100], minlength=10) > 0).all()
    train, val, test = (image_set(dm._splits[s].images) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)


def test_validation_split_is_deterministic_under_seed(tmp_path: Path) -> None:
    def val_labels(seed: int) -> torch.Tensor:
        dm = MNISTDataModule(root=str(tmp_path), source="bundled", seed=seed)
        dm.setup()
        return dm._splits["val"].images, dm._splits["test"].images

    a_val, a_test = val_labels(3)
    b_val, b_test = val_labels(3)
    c_val, c_test = val_labels(4)
    assert torch.equal(a_val, b_val) and not torch.equal(a_val, c_val)
    assert torch.equal(a_test, c_test)  # the test set never depends on the seed


@pytest.mark.parametrize("gz", [False, True])
def test_local_files(tmp_path: Path, gz: bool) -> None:
    images, labels = make_local(tmp_path, "FashionMNIST", "train", 300, gz=gz)
    make_local(tmp_path, "FashionMNIST", "test", 50, seed=1, gz=gz)
    dm = MNISTDataModule(dataset="fashion_mnist", root=str(tmp_path), source="local", val_size=100, batch_size=32)
    dm.setup()
    assert dm.info["sizes"] == {"train": 200, "val": 100, "test": 50}
    all_train = torch.cat([dm._splits["train"].images, dm._splits["val"].images]).squeeze(1)
    assert image_set(all_train) == image_set(torch.from_numpy(images))
    x, _ = batches(dm, "train")[0]
    assert x.shape == (32, 1, 28, 28)
    expected = {bytes(r) for r in images.reshape(300, -1)}
    assert image_set((x * 255).round()) <= expected  # pixels arrive unchanged, scaled to [0, 1]


def test_auto_resolves_each_split(tmp_path: Path, offline, caplog) -> None:
    make_local(tmp_path, "MNIST", "test", 80)  # only the test split is local
    dm = MNISTDataModule(root=str(tmp_path), source="auto", val_size=0.1)
    with caplog.at_level("WARNING"):
        dm.prepare_data()
        dm.setup()
    assert dm.info["sources"] == {"train": "bundled", "val": "bundled", "test": "local"}
    assert dm.info["sizes"] == {"train": 4500, "val": 500, "test": 80}  # all 5,000 bundled for training
    assert "train 4500 / val 500 (bundled), test 80 (local)" in caplog.text and "held out" not in caplog.text


def test_auto_offline_without_files_uses_bundled_for_both(tmp_path: Path, offline) -> None:
    dm = MNISTDataModule(root=str(tmp_path))
    dm.setup()
    assert dm.info["sources"]["test"] == "bundled" and dm.info["sizes"]["test"] == 1000


def test_local_and_download_never_fall_back(tmp_path: Path, offline) -> None:
    with pytest.raises(GenlabError, match=r"MNIST train split not found: missing .*train-images-idx3-ubyte"):
        MNISTDataModule(root=str(tmp_path), source="local").setup()
    with pytest.raises(GenlabError, match="no network"):
        MNISTDataModule(root=str(tmp_path), source="download").setup()
    with pytest.raises(GenlabError, match="no network"):  # no bundled Fashion-MNIST
        MNISTDataModule(dataset="fashion_mnist", root=str(tmp_path), source="auto").setup()


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GenlabError, match="data.source='web'"):
        MNISTDataModule(source="web")
    with pytest.raises(GenlabError, match="MNIST only"):
        MNISTDataModule(dataset="fashion_mnist", source="bundled")
    with pytest.raises(GenlabError, match="data.dataset='cifar'"):
        MNISTDataModule(dataset="cifar")
    with pytest.raises(GenlabError, match="val_size"):
        MNISTDataModule(val_size=1.5)
    with pytest.raises(GenlabError, match="data.on_device='gpu'"):
        MNISTDataModule(on_device="gpu")
    with pytest.raises(GenlabError, match="num_workers=0"):
        MNISTDataModule(on_device=True, num_workers=2)


def test_images_stay_on_the_host_for_a_cpu_trainer(tmp_path: Path) -> None:
    """``on_device`` moves the splits to the Trainer's GPU (tests/test_gpu.py); with a CPU
    Trainer they stay where they are, and the loader pins memory only for host tensors."""
    from pytorch_lightning import Trainer

    dm = MNISTDataModule(root=str(tmp_path), source="bundled", pin_memory=True)
    dm.trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    dm.setup("fit")
    train = dm._splits["train"]
    assert train.device == torch.device("cpu") and train.to(torch.device("cpu")) is train
    assert dm.train_dataloader().fetcher.pin_memory


def test_translate_moves_each_training_image_by_at_most_its_pixels(tmp_path: Path) -> None:
    """data.translate: every training image is its own copy moved by up to 1 pixel each way, the
    border background; images outside training are never moved."""
    dm = MNISTDataModule(root=str(tmp_path), source="bundled", translate=1, batch_size=256)
    dm.setup()

    class FakeTrainer:
        training = True

    dm.trainer = FakeTrainer()
    images, labels = next(iter(dm.train_dataloader()))
    x, y = dm.on_after_batch_transfer((images.clone(), labels), 0)
    assert torch.equal(y, labels) and x.shape == images.shape
    padded = torch.nn.functional.pad(images.float() / 255, (1, 1, 1, 1))
    offsets = []
    for i in range(len(x)):
        found = [(a, b) for a in range(3) for b in range(3) if torch.equal(x[i], padded[i, :, a:a + 28, b:b + 28])]
        assert found, f"image {i} is not a shifted copy of its original"
        offsets.append(found[0])
    assert len(set(offsets)) == 9  # all nine moves of up to one pixel, over 256 images
    FakeTrainer.training = False
    assert torch.equal(dm.on_after_batch_transfer((images.clone(), labels), 0)[0], images.float() / 255)
    for bad in (-1, 14, 0.5):
        with pytest.raises(GenlabError, match="data.translate"):
            MNISTDataModule(root=str(tmp_path), source="bundled", translate=bad)


def test_corrupt_idx_file_is_named(tmp_path: Path) -> None:
    make_local(tmp_path, "MNIST", "train", 20)
    make_local(tmp_path, "MNIST", "test", 20)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(GenlabError, match=r"train-images-idx3-ubyte is truncated"):
        MNISTDataModule(root=str(tmp_path), source="local", val_size=5).setup()


def test_binarization(tmp_path: Path) -> None:
    dm = MNISTDataModule(root=str(tmp_path), source="bundled", binarize=True, batch_size=256)
    dm.setup()

    class FakeTrainer:
        training = True

    dm.trainer = FakeTrainer()
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    val = dm._splits["val"].images
    assert set(val.unique().tolist()) == {0, 255}  # fixed binarization of val/test
    dm2 = MNISTDataModule(root=str(tmp_path), source="bundled", binarize=True)
    dm2.setup()
    assert torch.equal(val, dm2._splits["val"].images)


@needs_shared_data
def test_reference_fashion_mnist() -> None:
    dm = MNISTDataModule(dataset="fashion_mnist", root=str(SHARED_DATA), source="local", batch_size=128)
    dm.setup()
    assert dm.info["sizes"] == {"train": 54000, "val": 6000, "test": 10000}
    x, y = batches(dm, "test")[0]
    assert x.shape == (128, 1, 28, 28) and 0 <= x.min() and x.max() <= 1 and y.max() <= 9


@needs_shared_data
def test_reference_mnist_test_split_with_bundled_train(offline) -> None:
    dm = MNISTDataModule(dataset="mnist", root=str(SHARED_DATA), source="auto")
    dm.prepare_data()
    dm.setup()
    assert dm.info["sources"] == {"train": "bundled", "val": "bundled", "test": "local"}
    assert dm.info["sizes"] == {"train": 4500, "val": 500, "test": 10000}


def test_partial_and_foreign_idx_files_are_named(tmp_path: Path) -> None:
    make_local(tmp_path, "MNIST", "train", 20)
    make_local(tmp_path, "MNIST", "test", 20)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").unlink()  # a partial copy
    with pytest.raises(GenlabError, match=r"missing .*train-labels-idx1-ubyte"):
        MNISTDataModule(root=str(tmp_path), source="local", val_size=5).setup()
    make_local(tmp_path, "MNIST", "train", 20)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(GenlabError, match=r"train-images-idx3-ubyte is not an unsigned-byte idx file \(bad header\)"):
        MNISTDataModule(root=str(tmp_path), source="local", val_size=5).setup()


def test_bundled_images_are_parsed_once_then_read_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    from genlab.data import image_sources as src

    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    stale = tmp_path / "cache" / "mnist_5k-1-1.npy"  # the copy of an earlier install of the package
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    os.utime(stale, (1, 1))
    first = src.load_bundled()
    [cached] = (tmp_path / "cache").glob("mnist_5k-*.npy")  # the stale copy is gone
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("parsed again despite the cache"))
    second = src.load_bundled()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    cached.write_bytes(b"not an array")  # a damaged copy is parsed again, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "cache"))
    third = src.load_bundled()
    assert torch.equal(first[0], third[0])


def test_a_batch_is_the_examples_it_indexes() -> None:
    from genlab.data.in_memory import batch_indices
    from genlab.data.mnist import InMemoryImages
    from genlab.data.text import InMemoryTokens

    images = InMemoryImages(torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8), torch.arange(50) % 10)
    lengths = torch.randint(1, 9, (50,))
    tokens = InMemoryTokens(torch.randint(1, 20, (50, 8)) * (torch.arange(8) < lengths[:, None]), lengths)
    order = [7, 3, 3, 49, 0]  # a list of ints, as the DataLoader gives it
    assert batch_indices(order).tolist() == order and batch_indices(order).dtype == torch.int64
    for idx in (order, torch.tensor(order)):
        x, y = images.__getitems__(idx)
        assert torch.equal(x, torch.stack([images[i][0] for i in order])) and y.tolist() == [i % 10 for i in order]
        t, n = tokens.__getitems__(idx)
        assert t.shape == (5, int(lengths[order].max())) and torch.equal(n, lengths[order])
        for row, i in zip(t, order):
            assert torch.equal(row[: lengths[i]], tokens[i][0]) and not row[lengths[i]:].any()  # padding beyond


class FakeTrainer:
    """What genlab's data modules read of a trainer: the epoch, the DDP share, overfit_batches."""

    def __init__(self, current_epoch: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        self.current_epoch, self.overfit_batches = current_epoch, 0
        self.distributed_sampler_kwargs = {"num_replicas": num_replicas, "rank": rank} if num_replicas > 1 else None


@pytest.mark.parametrize("n,world", [(50, 2), (51, 4), (3, 8)])
def test_epoch_order_deals_the_epoch_out_to_the_processes_as_torch_pads(n: int, world: int) -> None:
    """Under DDP each process gets the epoch's order dealt out in turn, padded as torch's
    ``DistributedSampler`` pads (for evaluation, in order, exactly its indices); step k's
    batches of all the processes are step k's batch of one process at ``world`` times the batch
    size. The order depends on the seed and the epoch alone."""
    from torch.utils.data import DistributedSampler

    from genlab.data.in_memory import EpochBatches, epoch_order

    for rank in range(world):
        theirs = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
        assert epoch_order(n, 0, shuffle=False, num_replicas=world, rank=rank).tolist() == list(theirs)
    for epoch in (0, 1):
        whole = epoch_order(n, epoch, shuffle=True, seed=3)
        assert torch.equal(whole, epoch_order(n, epoch, shuffle=True, seed=3))
        assert sorted(whole.tolist()) == list(range(n))
        per_process = []
        for rank in range(world):
            batches = EpochBatches(n, 4, shuffle=True, seed=3, num_replicas=world, rank=rank)
            batches.epoch = epoch
            per_process.append(list(batches))
            assert len(per_process[-1]) == len(batches)
        one = EpochBatches(n, 4 * world, shuffle=True, seed=3)
        one.epoch = epoch
        full = n // (4 * world)  # the steps before the padded last one
        for k, big in enumerate(list(one)[:full]):
            step = torch.cat([batches[k] for batches in per_process])
            assert sorted(step.tolist()) == sorted(big.tolist())
    assert not torch.equal(epoch_order(n, 0, True, seed=3), epoch_order(n, 1, True, seed=3)) or n < 4


def test_training_batches_in_one_process_and_under_ddp(tmp_path: Path) -> None:
    """One process: the epoch's batches are slices of its order, evaluation batches in order.
    Under DDP (world size 2) each process gets its share, which Lightning leaves as it is."""
    from genlab.data.in_memory import epoch_order

    dm = MNISTDataModule(root=str(tmp_path), source="bundled", batch_size=100, seed=5)
    dm.setup()
    train = dm._splits["train"]
    for epoch in (0, 3):
        dm.trainer = FakeTrainer(current_epoch=epoch)
        order = epoch_order(len(train), epoch, shuffle=True, seed=5)
        x, y = next(iter(dm.train_dataloader()))
        assert torch.equal(x, train.images[order[:100]]) and torch.equal(y, train.labels[order[:100]])
    assert torch.equal(next(iter(dm.val_dataloader()))[0], dm._splits["val"].images[:dm.eval_batch_size])
    dm.trainer = FakeTrainer(current_epoch=1, num_replicas=2, rank=1)
    loader = dm.train_dataloader()
    shard = epoch_order(len(train), 1, shuffle=True, seed=5, num_replicas=2, rank=1)
    assert torch.equal(shard, epoch_order(len(train), 1, shuffle=True, seed=5)[1::2])
    x, y = next(iter(loader))
    assert torch.equal(x, train.images[shard[:100]]) and torch.equal(y, train.labels[shard[:100]])
    assert len(loader) == math.ceil(len(train) / 2 / 100)
    val = dm._splits["val"]
    assert torch.equal(next(iter(dm.val_dataloader()))[0], val.images[1 : 2 * dm.eval_batch_size : 2])


def test_workers_and_pinned_memory_give_the_same_batches(tmp_path: Path) -> None:
    dm = MNISTDataModule(root=str(tmp_path), source="bundled", batch_size=300, seed=5)
    dm.setup()
    dm.trainer = FakeTrainer(current_epoch=1)
    plain = [y.tolist() for _, y in dm.train_dataloader()]
    for settings in ({"pin_memory": True}, {"num_workers": 1}):
        other = MNISTDataModule(root=str(tmp_path), source="bundled", batch_size=300, seed=5, **settings)
        other.setup()
        other.trainer = FakeTrainer(current_epoch=1)
        loader = other.train_dataloader()
        assert loader.fetcher is not None
        assert [y.tolist() for _, y in loader] == plain and len(loader) == len(plain)


@pytest.mark.parametrize("loader", [{}, {"pin_memory": True}, {"num_workers": 1}],
                         ids=["own-iterator", "pinned-memory", "workers"])
def test_in_memory_loader_goes_on_mid_epoch_from_its_state(tmp_path: Path, loader: dict) -> None:
    """``InMemoryLoader.state_dict`` after 3 of an epoch's batches, loaded into a new loader (as
    Lightning does on a restart): the first pass over that epoch gives the epoch's other batches,
    the next epoch all of its own; a state from an epoch already over skips nothing. The loader
    is created and its iterator too before the trainer's epoch is known, as in Lightning. A state
    that holds no count of batches (written by a loader that did not count them) skips nothing."""
    dm = MNISTDataModule(root=str(tmp_path), source="bundled", batch_size=300, seed=5, **loader)
    dm.setup()
    dm.trainer = FakeTrainer()

    def labels(loader, epoch: int, stop: int | None = None) -> list[list[int]]:
        batches = iter(loader)
        dm.trainer.current_epoch = epoch
        out = []
        for _, y in batches:
            out.append(y.tolist())
            if len(out) == stop:
                break
        return out

    first = dm.train_dataloader()
    whole = labels(first, 2)
    assert whole != labels(dm.train_dataloader(), 0)
    assert labels(first, 2, stop=3) == whole[:3]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 3}
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    assert labels(resumed, 2) == whole[3:]
    assert labels(resumed, 3) == labels(dm.train_dataloader(), 3)  # then whole epochs again
    ended = dm.train_dataloader()
    ended.load_state_dict({"epoch": 2, "batches": len(whole)})  # written at the end of epoch 2
    assert labels(ended, 3) == labels(dm.train_dataloader(), 3)
    uncounted = dm.train_dataloader()
    uncounted.load_state_dict({"epoch": 2, "batches": None})  # from a loader that did not count
    assert labels(uncounted, 2) == whole


def test_overfit_batches_trains_on_one_batch_every_epoch() -> None:
    """``debug=overfit`` (``trainer.overfit_batches=1``): the training batches come in order, as
    Lightning makes its own loaders do, so each epoch trains on the same batch."""
    from hydra.utils import instantiate
    from pytorch_lightning import Callback, Trainer

    from genlab.utils.config import compose_config

    seen = []

    class Labels(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(batch[1].tolist())

    cfg = compose_config("train", ["data.source=bundled", "data.batch_size=32"])
    trainer = Trainer(overfit_batches=1, max_epochs=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[Labels()])
    trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data))
    assert len(seen) == 3 and seen[0] == seen[1] == seen[2]


def test_overfit_batches_resume_mid_epoch(tmp_path: Path) -> None:
    """``trainer.overfit_batches=3`` resumed from a checkpoint written after 2 of an epoch's 3
    batches: the epoch goes on with its third batch, not its first again."""
    from hydra.utils import instantiate
    from pytorch_lightning import Callback, Trainer
    from pytorch_lightning.callbacks import ModelCheckpoint

    from genlab.utils.config import compose_config

    seen: list[float] = []

    class Images(Callback):  # the split in order starts with one class: the images tell batches apart
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(batch[0].double().sum().item())

    cfg = compose_config("train", ["data.source=bundled", "data.batch_size=32"])

    def fit(max_epochs: int, callbacks: list, ckpt_path: str | None = None) -> None:
        trainer = Trainer(overfit_batches=3, max_epochs=max_epochs, limit_val_batches=0, logger=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[Images(), *callbacks],
                          enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks))
        trainer.fit(instantiate(cfg.model), datamodule=instantiate(cfg.data), ckpt_path=ckpt_path)

    fit(2, [])
    whole, seen[:] = list(seen), []
    assert len(whole) == 6 and whole[:3] == whole[3:] and len(set(whole[:3])) == 3
    fit(1, [ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2, save_top_k=-1, filename="{step}")])
    seen[:] = []
    fit(2, [], ckpt_path=str(tmp_path / "step=2.ckpt"))
    assert seen == whole[2:]
