"""What genlab never does to a user's files: remove a folder it did not make, build anything but its
own classes from a checkpoint, let two runs write into one folder; and bad input is one line."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genlab.checkpoint import load_checkpoint, model_from_checkpoint
from genlab.utils import run_folder
from genlab.utils.config import PROJECT_ROOT
from genlab.utils.errors import GenlabError
from test_cli import run

TESTS = str(Path(__file__).parent)
FAST = ["debug=fast", "data.source=bundled", "logger=csv"]


def one_clear_line(proc: subprocess.CompletedProcess, message: str) -> None:
    """Exit code 2, no traceback, and one ``genlab: error:`` line that says ``message``."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("genlab: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]


def no_run_folder_left(root: Path) -> bool:
    runs = list(root.glob("outputs/*/runs/*"))
    return not runs


@pytest.fixture(scope="module")
def contested(tmp_path_factory) -> dict:
    """Run A (``debug=fast``) into a folder; while it trains, run B into the same folder.
    Several tests read the outcome, and A's checkpoint is what the others tamper with."""
    folder = tmp_path_factory.mktemp("contested") / "run"
    env = {**os.environ, "WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": ""}
    first = subprocess.Popen([sys.executable, str(PROJECT_ROOT / "train.py"), *FAST, f"hydra.run.dir={folder}"],
                             cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = folder / run_folder.LOCK_NAME
    deadline = time.monotonic() + 60
    while not lock.is_file() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert lock.is_file(), "run A never locked its folder"
    second = run("train.py", *FAST, "seed=7", f"hydra.run.dir={folder}")
    still_running = first.poll() is None
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    return {"folder": folder, "pid": first.pid, "second": second, "overlapped": still_running}


@pytest.fixture(scope="module")
def checkpoint(contested) -> Path:
    return contested["folder"] / "checkpoints" / "last.ckpt"


# ---------------------------------------------------------------------------- one run per folder
def test_a_second_run_into_a_locked_folder_is_refused_and_the_first_is_intact(contested) -> None:
    folder = contested["folder"]
    assert contested["overlapped"], "run B must have been tried while run A was running"
    one_clear_line(contested["second"], f"is in use by another run (PID {contested['pid']}")
    assert (folder / ".hydra" / "overrides.yaml").read_text().count("seed=7") == 0  # A's, not B's
    assert "seed=7" not in (folder / "debug.log").read_text()
    load_checkpoint(folder / "checkpoints" / "last.ckpt")
    lines = (folder / "metrics.csv").read_text().splitlines()
    assert all(line.count(",") == lines[0].count(",") for line in lines)  # one writer
    assert not (folder / run_folder.LOCK_NAME).exists()  # released at the end


def test_two_resumes_started_together_get_two_folders(tmp_path: Path, checkpoint: Path) -> None:
    """The timestamped folders of the next seconds are taken already, as by runs started in the
    same second: both resumes get a suffixed folder of their own and finish."""
    runs = tmp_path / "outputs" / "debug" / "runs"
    now = datetime.datetime.now()
    taken = {(now + datetime.timedelta(seconds=s)).strftime("%Y-%m-%d_%H-%M-%S") for s in range(-1, 90)}
    for name in taken:
        (runs / name).mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": "", "GENLAB_ROOT": str(tmp_path)}
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), *FAST, "trainer.max_epochs=2", "test=false",
               f"ckpt_path={checkpoint}"]
    procs = [subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    made = sorted(p for p in runs.iterdir() if p.name not in taken)
    assert len(made) == 2 and all(p.name.rsplit("_", 1)[-1].isdigit() for p in made), made
    assert all(load_checkpoint(p / "checkpoints" / "last.ckpt")["epoch"] == 1 for p in made)
    assert all(not any((runs / name).iterdir()) for name in taken)


def test_a_taken_folder_gets_a_suffix_and_a_named_one_is_used_as_it_is(tmp_path: Path) -> None:
    first = run_folder.make_folder(tmp_path / "2026-01-01_00-00-00", suffix_if_taken=True)
    second = run_folder.make_folder(tmp_path / "2026-01-01_00-00-00", suffix_if_taken=True)
    assert (first.name, second.name) == ("2026-01-01_00-00-00", "2026-01-01_00-00-00_1")
    assert run_folder.created_here(first) and run_folder.created_here(second)
    (tmp_path / "mine").mkdir()
    assert run_folder.make_folder(tmp_path / "mine", suffix_if_taken=False) == tmp_path / "mine"
    assert not run_folder.created_here(tmp_path / "mine")


def test_a_lock_left_by_a_dead_process_is_free(tmp_path: Path) -> None:
    (tmp_path / run_folder.LOCK_NAME).write_text("999999999 on elsewhere\n")  # no process holds it
    run_folder.lock_folder(tmp_path)
    try:
        assert (tmp_path / run_folder.LOCK_NAME).read_text().startswith(f"{os.getpid()} on ")
    finally:
        run_folder.release(tmp_path)
    assert not (tmp_path / run_folder.LOCK_NAME).exists()


# ---------------------------------------------------------------------------- folders that were there
@pytest.mark.parametrize("stop", ["config-value", "bad-checkpoint", "non-finite-loss", "locked"])
def test_a_folder_that_was_there_survives_every_early_stop(tmp_path: Path, stop: str) -> None:
    """``hydra.run.dir`` names a folder of the user's: whatever stops the run early, the folder
    and what was in it stay."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    args, message = {
        "config-value": (["data.batch_size=0"], "data.batch_size=0 is not valid"),
        "bad-checkpoint": ([f"ckpt_path={tmp_path / 'bad.ckpt'}"], "is not a readable checkpoint"),
        "non-finite-loss": (["+callbacks.nan._target_=fault_injection.NaNWeightsAt"], "non-finite loss"),
        "locked": ([], "is in use by another run"),
    }[stop]
    if stop == "locked":
        run_folder.lock_folder(folder)
    try:
        proc = run("train.py", *FAST, *args, "hydra.run.dir=.", env={"PYTHONPATH": TESTS}, cwd=folder)
    finally:
        run_folder.release(folder)
    one_clear_line(proc, message)
    assert (folder / "notes.txt").read_text() == "keep"


def test_a_folder_genlab_made_for_a_stopped_run_is_removed(tmp_path: Path) -> None:
    proc = run("train.py", *FAST, "data.batch_size=0", env={"GENLAB_ROOT": str(tmp_path)})
    one_clear_line(proc, "data.batch_size=0 is not valid")
    assert (tmp_path / "outputs" / "debug" / "runs").is_dir() and no_run_folder_left(tmp_path)


@pytest.mark.parametrize("folder, message", [
    ("x" * 300, "cannot make or use the run folder (File name too long)"),
    ("read-only", "cannot make or use the run folder"),
], ids=["name-too-long", "read-only"])
def test_a_run_folder_that_cannot_be_made_is_one_clear_line(tmp_path: Path, folder: str, message: str) -> None:
    path = tmp_path / folder
    if folder == "read-only":
        path.mkdir()
        path.chmod(0o555)
        if os.geteuid() == 0:  # root writes into any folder whatever its mode: take one of a read-only file system
            path = Path("/proc/1")
    proc = run("train.py", "debug=fast", f"hydra.run.dir={path}")
    one_clear_line(proc, message)


# ---------------------------------------------------------------------------- what a checkpoint may build
def payloads(out: Path) -> dict[str, dict]:
    """Configs that write a file when instantiated (Hydra's own blocklist lets them through)."""
    (out / "source.txt").write_text("import os\n")
    return {
        "numpy.savetxt": {"_target_": "numpy.savetxt", "_args_": [str(out / "savetxt.pth"), ["import os"]], "fmt": "%s"},
        "shutil.copy": {"_target_": "shutil.copy", "_args_": [str(out / "source.txt"), str(out / "copy.pth")]},
        "builtins.open": {"_target_": "builtins.open", "_args_": [str(out / "open.pth"), "w"]},
    }


def written(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("*.pth"))


def tampered(checkpoint: Path, out: Path, where: str, payload: dict) -> Path:
    """``checkpoint`` with ``payload`` at ``where`` of its stored config (``model``,
    ``model.encoder``, ``model.optimizer`` or ``data``)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    node = ckpt["genlab"]["config"]
    *parents, last = where.split(".")
    for key in parents:
        node = node[key]
    node[last] = payload
    path = out / f"{payload['_target_']}-{where}.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("target", ["numpy.savetxt", "shutil.copy", "builtins.open"])
@pytest.mark.parametrize("where", ["model", "model.encoder", "model.optimizer", "data"])
def test_a_checkpoint_that_would_build_anything_else_is_refused(tmp_path: Path, checkpoint: Path, target: str,
                                                                where: str) -> None:
    from hydra.utils import instantiate

    from genlab.train import train
    from genlab.utils.config import compose_config

    payload = payloads(tmp_path)[target]
    instantiate(payload)  # the payload is live: building it writes its file ...
    assert len(written(tmp_path)) == 1
    for path in tmp_path.glob("*.pth"):
        path.unlink()
    path = tampered(checkpoint, tmp_path, where, payload)
    refused = f"is refused: its config asks to build '{target}' ({where}._target_)"
    with pytest.raises(GenlabError, match=re.escape(refused)):  # generate.py, eval.py
        model_from_checkpoint(path)
    cfg = compose_config("train", [*FAST, f"ckpt_path={path}"], tmp_path / "run")
    with pytest.raises(GenlabError, match="is refused"):  # train.py ckpt_path=
        train(cfg)
    assert written(tmp_path) == []  # ... and refused, it writes nothing


@pytest.mark.parametrize("script, target, where", [
    ("eval.py", "numpy.savetxt", "model.encoder"),
    ("generate.py", "shutil.copy", "model"),
    ("train.py", "builtins.open", "data"),
])
def test_each_command_refuses_such_a_checkpoint(tmp_path: Path, checkpoint: Path, script: str, target: str,
                                                where: str) -> None:
    path = tampered(checkpoint, tmp_path, where, payloads(tmp_path)[target])
    extra = FAST if script == "train.py" else []
    proc = run(script, *extra, f"ckpt_path={path}", env={"GENLAB_ROOT": str(tmp_path)})
    one_clear_line(proc, f"is refused: its config asks to build '{target}'")
    assert written(tmp_path) == [] and no_run_folder_left(tmp_path)


# ---------------------------------------------------------------------------- bad checkpoints for train.py
def damaged(checkpoint: Path, out: Path, kind: str) -> Path:
    data = checkpoint.read_bytes()
    path = out / f"{kind}.ckpt"
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zeroed":
        path.write_bytes(bytes(len(data)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bit-flipped":  # one bit in the middle of the weights: torch.load alone reads it
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(flipped))
    elif kind == "crafted-pickle":
        torch.save({"state_dict": {}, "genlab": {}, "payload": Exploit()}, path)
    return path


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


BAD_CHECKPOINTS = [
    ("truncated", [], "not the zip archive torch.save writes"),
    ("zeroed", [], "not the zip archive torch.save writes"),
    ("empty", [], "the file is empty"),
    ("bit-flipped", [], "fails its CRC-32 check"),
    ("crafted-pickle", [], "holds Python objects other than tensors and plain data"),
    ("another-model", ["model=gan"], "holds a VAE that does not fit this run's GAN"),
    ("other-settings", ["model.latent_dim=8"], "decoder.body.0.weight is (256, 32) there, (256, 8) here"),
]


@pytest.mark.parametrize("kind, overrides, message", BAD_CHECKPOINTS, ids=[c[0] for c in BAD_CHECKPOINTS])
def test_a_bad_checkpoint_to_resume_is_one_clear_error(tmp_path: Path, checkpoint: Path, kind: str,
                                                       overrides: list[str], message: str) -> None:
    from genlab.train import train
    from genlab.utils.config import compose_config

    path = damaged(checkpoint, tmp_path, kind) if kind in ("truncated", "zeroed", "empty", "bit-flipped",
                                                           "crafted-pickle") else checkpoint
    cfg = compose_config("train", [*FAST, *overrides, f"ckpt_path={path}"], tmp_path / "run")
    with pytest.raises(GenlabError, match=re.escape(message)):
        train(cfg)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize("kind", ["bit-flipped", "another-model"])
def test_a_bad_checkpoint_to_resume_is_one_line_on_the_command_line(tmp_path: Path, checkpoint: Path,
                                                                    kind: str) -> None:
    path, overrides = (damaged(checkpoint, tmp_path, kind), []) if kind == "bit-flipped" else (checkpoint, ["model=gan"])
    proc = run("train.py", *FAST, *overrides, f"ckpt_path={path}", env={"GENLAB_ROOT": str(tmp_path)})
    one_clear_line(proc, dict((k, m) for k, _, m in BAD_CHECKPOINTS)[kind])
    assert no_run_folder_left(tmp_path)


# ---------------------------------------------------------------------------- bad text files
@pytest.mark.parametrize("kind, message", [("folder", "is a folder"), ("nul", "holds NUL bytes (first at offset 5)")])
def test_a_text_corpus_that_is_no_text_file_is_one_clear_line(tmp_path: Path, kind: str, message: str) -> None:
    path = tmp_path / "corpus"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"hello\0world\nsecond line\n")
    proc = run("train.py", "debug=fast", "model=text_lm", "data=text", "data.corpus=file", f"data.path={path}",
               env={"GENLAB_ROOT": str(tmp_path)})
    one_clear_line(proc, message)
    assert no_run_folder_left(tmp_path)
