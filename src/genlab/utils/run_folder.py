"""The run folder: made by this process or not, and locked while a run writes to it.

``RunFolder`` is a Hydra callback (``conf/hydra/default.yaml``). Before Hydra writes anything into
a run's folder (``hydra.run.dir``, or a multirun's ``hydra.sweep.dir``) it

- creates the folder itself, atomically, and remembers whether this process made it: genlab may
  remove a folder it made when a user error stops the run, and never touches one that was there
  before (``created_here``);
- gives a timestamped folder that is already taken (two runs started in the same second) a
  suffix, ``_1``, ``_2``, ... A folder the user named (``hydra.run.dir=...``) is used as it is;
- locks the folder: an advisory ``flock`` on ``.genlab.lock`` holding the PID. A second run into
  a locked folder stops with one line naming the first's PID. The kernel drops the lock when its
  process ends, however it ends, so a lock left by a killed run is free again.

DDP processes that Lightning starts for ranks above 0 run inside rank 0's folder and lock: they
take no lock of their own.
"""

from __future__ import annotations

import atexit
import os
import time
import socket
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

LOCK_NAME = ".genlab.lock"
RANK_VARIABLES = ("LOCAL_RANK", "RANK", "NODE_RANK", "SLURM_PROCID")

_CREATED: set[str] = set()  # folders this process made
_LOCKS: dict[str, int] = {}  # folder -> the open file descriptor holding its lock


class RunFolderError(Exception):
    """The run folder cannot be made or is locked by another run: reported as one line, exit 2."""


def absolute(folder: str | Path) -> Path:
    return Path(os.path.abspath(folder))  # as Hydra gives runtime.output_dir: normalised


def created_here(folder: str | Path) -> bool:
    """Whether this process made ``folder`` (it did not exist when the run started)."""
    return str(absolute(folder)) in _CREATED


def is_secondary_rank() -> bool:
    """A process of a distributed run other than its first, as launchers mark them."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in RANK_VARIABLES)


def make_folder(folder: Path, suffix_if_taken: bool) -> Path:
    """Create ``folder`` (its parents as needed); with ``suffix_if_taken``, a folder that exists
    already gives way to ``<folder>_1``, ``<folder>_2``, ... The folder returned is recorded as
    made by this process when it was; an existing one is returned as it is."""
    folder = absolute(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    candidates = [folder, *(folder.with_name(f"{folder.name}_{n}") for n in range(1, 1000))]
    for candidate in candidates if suffix_if_taken else candidates[:1]:
        try:
            os.mkdir(candidate)  # atomic: exactly one process makes a given folder
        except FileExistsError:
            if not suffix_if_taken:
                if not candidate.is_dir():
                    raise NotADirectoryError(f"{candidate} exists and is not a folder") from None
                return candidate
            continue
        _CREATED.add(str(candidate))
        return candidate
    raise FileExistsError(f"{folder} and its suffixes _1 to _999 are all taken")


def lock_folder(folder: Path) -> None:
    """Take the run lock of ``folder`` for this process, or raise ``RunFolderError`` naming the
    process that holds it. Released at exit (``release``)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; runs are not guarded against each other
        return
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"run folder {folder} is in use by another run (PID {holder})") from None
        # the holder before us may have removed the file as it released it: lock the file on disk
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode())
    _LOCKS[str(folder)] = fd
    atexit.register(release, folder)


def release(folder: str | Path) -> None:
    """Give up the run lock of ``folder`` and remove the lock file (nothing when not held)."""
    fd = _LOCKS.pop(str(absolute(folder)), None)
    if fd is None:
        return
    try:
        os.unlink(Path(folder) / LOCK_NAME)  # while still locked, so no one locks a file on its way out
    except OSError:
        pass
    os.close(fd)


def claim(folder: str | Path, named_by_user: bool) -> Path:
    """Make (or take) and lock the run folder; return the folder the run uses."""
    made = make_folder(Path(folder), suffix_if_taken=not named_by_user)
    if not is_secondary_rank():
        try:
            lock_folder(made)
        except OSError:
            if created_here(made):
                made.rmdir()  # still empty: nothing was written into it
            raise
    return made


def _named_by_user(config: DictConfig, key: str) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in config.hydra.overrides.hydra)


def _claim_or_exit(config: DictConfig, key: str, named_by_user: bool | None = None) -> Path:
    folder = Path(str(OmegaConf.select(config, key)))
    try:
        made = claim(folder, _named_by_user(config, key) if named_by_user is None else named_by_user)
    except RunFolderError as e:
        _exit(f"{e}; wait for it to end, or choose another {key}.")
    except OSError as e:  # a name too long, a read-only or foreign folder, a file in the way ...
        _exit(f"{key}={str(folder)!r}: cannot make or use the run folder ({e.strerror or e}). Choose another {key}.")
    return made


def _exit(message: str) -> None:
    print(f"genlab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _set_sweep_dir(config: DictConfig, folder: Path) -> None:
    """Make ``folder`` the sweep's folder: in the config and in the hydra overrides, from which
    each job's config is composed again."""
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = str(folder)
        config.hydra.overrides.hydra.append(f'hydra.sweep.dir="{folder}"')


def resume_optuna_study(config: DictConfig, folder: Path) -> None:
    """A resumed Optuna search: its study (in the sweep folder's SQLite file, as the
    ``hparams_search`` presets store it) keeps its finished trials, a trial the stop cut short is
    marked failed, and the sweeper runs the trials still missing (``n_trials`` less the completed
    ones). Its new jobs go to ``resumed_<n>/<job>``: the sweeper numbers jobs from 0 again, and the
    folders of the finished trials stay as they are."""
    import optuna

    storage = config.hydra.sweeper.get("storage")
    if not storage or not str(storage).startswith("sqlite:"):
        _exit("resume of an Optuna search needs its study stored in SQLite (hydra.sweeper.storage=sqlite:///...; "
              "the hparams_search presets store it in the sweep folder).")
    study = optuna.load_study(study_name=config.hydra.sweeper.study_name, storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # its process is gone
    complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    generation = 1 + len(list(folder.glob("resumed_*")))
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweeper.n_trials = max(0, int(config.hydra.sweeper.n_trials) - complete)
        config.hydra.sweep.subdir = f"resumed_{generation}/${{hydra.job.num}}"
        config.hydra.overrides.hydra.append(f"hydra.sweep.subdir=resumed_{generation}/${{hydra.job.num}}")
    print(f"Resuming the Optuna study {study.study_name!r}: {complete} trials complete, "
          f"{config.hydra.sweeper.n_trials} to run, into {folder}/resumed_{generation}/", file=sys.stderr)


class RunFolder(Callback):
    """Hydra callback: claims ``hydra.run.dir`` (single runs) or ``hydra.sweep.dir`` (multiruns)
    before Hydra writes to it, and releases it when the run ends."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume"):  # train.py resume=<run folder>|last: the run goes on in its folder
            from genlab.utils.errors import GenlabError
            from genlab.utils.runs import run_to_resume

            try:
                folder = run_to_resume(str(config.resume), Path(config.paths.log_dir) / config.task_name)
            except GenlabError as e:
                _exit(str(e))
            with read_write(config.hydra), open_dict(config.hydra):
                config.hydra.run.dir = str(folder)
                # Hydra's record of this start goes beside the run's own .hydra/config.yaml, not over it
                config.hydra.output_subdir = f".hydra/resumed_{time.strftime('%Y-%m-%d_%H-%M-%S')}"
            _claim_or_exit(config, "hydra.run.dir", named_by_user=True)
            return
        made = _claim_or_exit(config, "hydra.run.dir")
        if made != absolute(str(config.hydra.run.dir)):
            with read_write(config.hydra.run), open_dict(config.hydra.run):
                config.hydra.run.dir = str(made)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.get("resume"):  # the same sweep command with resume=<sweep folder>: its jobs go on there
            folder = absolute(str(config.resume))
            marks = ("multirun.yaml", "optuna.db", "*/.hydra/config.yaml")  # Optuna's sweeper writes no multirun.yaml
            if not folder.is_dir() or not any(next(folder.glob(mark), None) for mark in marks):
                _exit(f"resume={config.resume}: {folder} is not a sweep folder (no multirun.yaml, study or jobs); "
                      "with -m, resume takes the folder of the sweep to go on with.")
            _set_sweep_dir(config, folder)
            _claim_or_exit(config, "hydra.sweep.dir", named_by_user=True)
            if "optuna" in str(config.hydra.sweeper.get("_target_", "")).lower():
                resume_optuna_study(config, folder)
            return
        made = _claim_or_exit(config, "hydra.sweep.dir")
        if made != absolute(str(config.hydra.sweep.dir)):
            _set_sweep_dir(config, made)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        release(config.hydra.sweep.dir)
