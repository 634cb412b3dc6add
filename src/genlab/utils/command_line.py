"""Mistakes on the command line, caught before Hydra composes the run: a misspelt group, option
or key gets one line with "did you mean ...", taken from the config's own groups, options and keys."""

from __future__ import annotations

import difflib
import sys
from typing import Any

from omegaconf import DictConfig

from genlab.utils.config import CONF_DIR


def config_groups() -> dict[str, list[str]]:
    """Each config group under ``conf/`` (``model``, ``model/encoder``, ...) and its options."""
    groups: dict[str, list[str]] = {}
    for path in CONF_DIR.rglob("*.yaml"):
        if path.parent != CONF_DIR:
            groups.setdefault(path.parent.relative_to(CONF_DIR).as_posix(), []).append(path.stem)
    return {g: sorted(options) for g, options in groups.items()}


def did_you_mean(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f"did you mean {close[0]}?" if close else f"choose one of {', '.join(sorted(candidates))}."


def adds(override: Any) -> bool:
    """``+key=`` or ``++key=``: the override may add a key the config does not have."""
    return override.is_add() or override.is_force_add()


def problems(config_name: str, overrides: list[str]) -> list[str]:
    """What Hydra would refuse in ``overrides`` (or, for ``+model.<key>``, what is surely a typo of
    one of the model's keys), each as a sentence with a suggestion."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # a syntax error: Hydra says where
        return []
    groups = config_groups()
    found, group_overrides = [], []
    for o in parsed:
        key = o.key_or_group
        if key.startswith("hydra") or o.package is not None:
            continue
        if key in groups and not adds(o) and not o.is_delete():
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
            bad = [v for v in values if isinstance(v, str) and v != "null" and not (CONF_DIR / key / f"{v}.yaml").is_file()]
            for v in bad:
                # an option in a subfolder (experiment=gpu/<preset>) is matched among that subfolder's
                sub = v.rpartition("/")[0]
                candidates = [f"{sub}/{option}" for option in groups.get(f"{key}/{sub}", [])] if sub else groups[key]
                found.append(f"{key}={v}: no option {v!r} in the group {key}; "
                             f"{did_you_mean(v, candidates or groups[key])}")
            if not bad:
                group_overrides.append(o.input_line)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose(config_name=config_name, overrides=group_overrides)
    except Exception:  # anything else Hydra reports itself
        return found
    finally:
        GlobalHydra.instance().clear()
    for o in parsed:
        key = o.key_or_group
        if key.startswith("hydra") or o.package is not None or key in groups or o.is_delete():
            continue
        parts = key.split(".")
        node: Any = cfg
        for depth, part in enumerate(parts):
            if not isinstance(node, DictConfig):
                break
            if part not in node:
                where = ".".join(parts[:depth]) or "the config"
                keys = [str(k) for k in node.keys()] + ([g for g in groups if "/" not in g] if depth == 0 else [])
                close = difflib.get_close_matches(part, keys, n=1, cutoff=0.75)
                if adds(o) and (depth < len(parts) - 1 or not close or close[0] == part):
                    break  # adding a new key: fine unless it is a near miss of one that exists
                prefix = ".".join(parts[:depth] + [close[0]]) if close else None
                hint = f"did you mean {prefix}?" if prefix else f"its keys: {', '.join(sorted(keys))}."
                found.append(f"{o.input_line}: {where} has no key {part!r}; {hint}")
                break
            node = node[part]
    return found


def check(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line per problem (exit code 2) when the command line has a misspelt group,
    option or key. Costs one composition of the config (a fraction of a second)."""
    argv = sys.argv[1:] if argv is None else argv
    overrides = [a for a in argv if not a.startswith("-")]
    if not overrides or any(a in ("--help", "-h", "--hydra-help", "--info") for a in argv):
        return
    for problem in problems(config_name, overrides):
        print(f"genlab: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
