"""docs/results.md is what scripts/benchmark.py writes from docs/results.json, provenance included."""
import copy
import json

from conftest import PROJECT_ROOT, load_script


def test_results_md_is_the_report_of_results_json() -> None:
    """The committed table is regenerated from its JSON unchanged: no figure edited by hand in one of them."""
    benchmark = load_script("benchmark")
    md = (PROJECT_ROOT / "docs" / "results.md").read_text()
    results = json.loads((PROJECT_ROOT / "docs" / "results.json").read_text())
    assert benchmark.results_report(results, md.splitlines()[2]) == md


def test_a_row_run_from_uncommitted_changes_keeps_its_dirty_mark() -> None:
    """A row measured from a tree with uncommitted changes names its commit with -dirty, and the report
    says what the mark means; a clean row's commit is shown without it."""
    benchmark = load_script("benchmark")
    results = json.loads((PROJECT_ROOT / "docs" / "results.json").read_text())
    first, second = results["rows"][0], copy.deepcopy(results["rows"][0])
    second.update(preset="other_preset", commit="a" * 40 + "-dirty")
    first.update(commit="b" * 40)
    text = benchmark.results_report(dict(results, rows=[first, second]), "head")
    assert "at aaaaaaa-dirty" in text and "at bbbbbbb " in text and "bbbbbbb-dirty" not in text
    assert "-dirty: the run started from that commit with uncommitted changes" in text


def test_the_gpu_table_says_so_and_links_its_own_grids() -> None:
    """The table ``--device cuda`` writes (docs/results-cuda.md) links the grids in its own folder
    and says its rows ran the presets' GPU variants; the CPU table points to it."""
    benchmark = load_script("benchmark")
    results = json.loads((PROJECT_ROOT / "docs" / "results.json").read_text())
    cpu = benchmark.results_report(results, "head")
    gpu = benchmark.results_report(dict(results, device="cuda", images="results-cuda"), "head")
    assert "](images/results/" in cpu and "](images/results-cuda/" not in cpu and "results-cuda.md" in cpu
    assert "](images/results-cuda/" in gpu and "](images/results/" not in gpu
    assert "This table is the GPU one" in gpu and "This table is the GPU one" not in cpu
    assert benchmark.preset_config("dcgan_mnist", "cuda") == "gpu/dcgan_mnist"
    assert benchmark.preset_config("dcgan_mnist", "cpu") == "dcgan_mnist"
