"""Offline sample-quality metrics: shipped feature nets, FID/KID/PR behaviour on real images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from genlab.data.image_sources import load_bundled
from genlab.metrics.feature_nets import WEIGHTS_DIR, FeatureCNN, load_feature_net, registry
from genlab.metrics.image_quality import extract, fid_kid, precision_recall_density_coverage
from genlab.utils.errors import GenlabError
from conftest import PROJECT_ROOT, load_script


@pytest.fixture(scope="module")
def mnist_halves() -> tuple[torch.Tensor, torch.Tensor]:
    images, _ = load_bundled()
    x = images.unsqueeze(1).float() / 255
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:2500]], x[order[2500:]]


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_shipped_feature_nets_load_and_are_small(dataset: str) -> None:
    entry = registry()[dataset]
    assert (WEIGHTS_DIR / entry["file"]).stat().st_size < 2_000_000
    net = load_feature_net(dataset)
    assert net.features(torch.rand(2, 1, 28, 28)).shape == (2, FeatureCNN.num_features)


def test_loading_a_feature_net_leaves_the_random_state_alone() -> None:
    """The sample-quality callback loads the net at the start of a fit, once per process: drawing
    from the global generator there would give the first run of a sweep other noise than a rerun."""
    load_feature_net.cache_clear()
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    load_feature_net("mnist")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_feature_net_accuracy_on_bundled_mnist(mnist_halves) -> None:
    images, labels = load_bundled()
    net = load_feature_net("mnist")
    with torch.no_grad():
        pred = net(images.unsqueeze(1).float() / 255).argmax(1)
    assert (pred == labels).float().mean() > 0.98  # images it was trained on: a sanity check of loading


def test_tampered_weights_fail_loudly(tmp_path: Path) -> None:
    original = WEIGHTS_DIR / registry()["mnist"]["file"]
    tampered = tmp_path / "mnist.pt"
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(GenlabError, match="fail their checksum"):
        load_feature_net("mnist", str(tampered))


def test_fid_behaves(mnist_halves) -> None:
    a, b = (half[:1200] for half in mnist_halves)
    net = load_feature_net("mnist")
    fa, fb = extract(net, a), extract(net, b)
    same = fid_kid(fa, fa, kid_subsets=10)["fid"]
    real = fid_kid(fa, fb, kid_subsets=10)
    gen = torch.Generator().manual_seed(1)
    noisy = [fid_kid(fa, extract(net, (b + s * torch.randn(b.shape, generator=gen)).clamp(0, 1)),
                     kid_subsets=10)
             for s in (0.1, 0.3)]
    assert abs(same) < 1e-3
    assert real["fid"] < noisy[0]["fid"] < noisy[1]["fid"]
    assert real["kid"] < noisy[0]["kid"] < noisy[1]["kid"]


def test_fid_kid_warns_about_nothing_the_run_can_change() -> None:
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen) + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torchmetrics' note that KID keeps its features is hidden
        scores = fid_kid(real, fake, kid_subsets=5, kid_subset_size=100)
    assert scores["fid"] > 0 and set(scores) == {"fid", "kid", "kid_std"}


def test_precision_recall_separate_quality_from_diversity(mnist_halves) -> None:
    a, b = mnist_halves
    net = load_feature_net("mnist")
    fa, fb = extract(net, a), extract(net, b)
    real = precision_recall_density_coverage(fa, fb)
    assert real["precision"] > 0.6 and real["recall"] > 0.6 and real["coverage"] > 0.6
    # one repeated image: inside the data manifold (precise) but covers none of its diversity
    collapsed = precision_recall_density_coverage(fa, fb[:1].repeat(500, 1))
    assert collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05


def test_inception_weights_are_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genlab.metrics.inception import find_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert find_weights(None) is None  # nothing cached: skipped, no download attempt
    with pytest.raises(GenlabError, match="metrics.inception_weights='/nope/w.pth': no such file"):
        find_weights("/nope/w.pth")
    cached = tmp_path / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir()
    cached.write_bytes(b"x")
    assert find_weights(None) == cached


def test_fid_orders_corruptions_and_dropped_classes_as_a_person_would() -> None:
    """The calibration on a CI-sized subset (2,000 bundled MNIST images against 2,000 others): clean
    below every other row, noise 0.05 < noise 0.1 < 5 of 10 classes < 1 class, the one-class set
    far above slight noise; the class histogram sees the dropped classes, and the rarest class share
    (class_min) is about a tenth with all classes and about nothing with half of them dropped."""
    calibration = load_script("calibrate_fid")
    images, labels = load_bundled()
    x = images.unsqueeze(1).float() / 255
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    reference, compared = order[:2000], order[2000:4000]
    keys = {"clean", "blur_0.5", "noise_0.05", "noise_0.1", "classes_5", "classes_1", "checkerboard_0.1"}
    rows = calibration.calibrate(x[reference], x[compared], labels[compared], "mnist", keys=keys, log=lambda _: None,
                                 kid_subsets=5)  # the order is asserted on FID
    fid = {key: row["fid"] for key, row in rows.items()}
    assert set(fid) == keys
    assert all(fid["clean"] < value for key, value in fid.items() if key != "clean"), fid
    assert fid["noise_0.05"] < fid["noise_0.1"] < fid["classes_5"] < fid["classes_1"], fid
    assert fid["classes_1"] >= 10 * fid["noise_0.05"], fid
    tv = {key: row["class_tv"] for key, row in rows.items()}
    assert tv["clean"] < 0.05 and 0.4 < tv["classes_5"] < 0.6 and tv["classes_1"] > 0.85, tv
    rarest = {key: row["class_min"] for key, row in rows.items()}
    assert rarest["clean"] > 0.05 and rarest["noise_0.05"] > 0.05 and rarest["classes_5"] < 0.01, rarest


def test_calibration_tables_in_the_docs_are_generated_from_the_shipped_json(tmp_path: Path) -> None:
    """docs/fid_calibration.json holds the full calibration of both datasets, in the order the
    subset test checks, and docs/metrics.md holds exactly the tables rendered from it."""
    calibration = load_script("calibrate_fid")
    results = json.loads((PROJECT_ROOT / "docs" / "fid_calibration.json").read_text())
    for dataset in ("fashion_mnist", "mnist"):
        fid = {key: row["fid"] for key, row in results["datasets"][dataset]["rows"].items()}
        assert all(fid["clean"] < value for key, value in fid.items() if key != "clean"), (dataset, fid)
        assert fid["noise_0.05"] < fid["noise_0.1"] < fid["classes_5"] < fid["classes_1"], (dataset, fid)
        assert fid["classes_1"] >= 10 * fid["noise_0.05"], (dataset, fid)
    docs = PROJECT_ROOT / "docs" / "metrics.md"
    copy = tmp_path / "metrics.md"
    copy.write_text(docs.read_text())
    calibration.write_markdown(copy, calibration.markdown(results))
    assert copy.read_text() == docs.read_text()
