"""Cross-validation splits stratified by tumour-volume stratum (paper sec. 2.5): k folds, each with
train/validation/test shares of (k-2)/k, 1/k and 1/k (60/20/20 for k = 5); every case is tested once."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import write_text

SPLITS_FORMAT = "dualdinov3-crossval-splits"


def make_crossval_splits(strata: Mapping[str, str | None], n_folds: int = 5, seed: int = 0) -> dict:
    """Folds from ``{case_id: stratum}`` (``None`` = no GTVp, its own group).

    Cases of each stratum are shuffled (seeded) and dealt round-robin into ``n_folds`` groups, so every
    group holds a near-equal share of each stratum. Fold ``k`` tests group ``k``, validates on group
    ``k + 1`` (mod ``n_folds``) and trains on the rest. The same inputs and seed give the same splits.
    """
    if n_folds < 3:
        raise DataError(f"cross-validation needs at least 3 folds (train/validation/test), got {n_folds}")
    if len(strata) < n_folds:
        raise DataError(f"{len(strata)} cases cannot be split into {n_folds} folds; use fewer folds or more cases")
    rng = np.random.default_rng(seed)
    groups: list[list[str]] = [[] for _ in range(n_folds)]
    offset = 0
    for stratum in sorted({str(s) for s in strata.values()}):
        members = sorted(c for c, s in strata.items() if str(s) == stratum)
        for i, case in enumerate(rng.permutation(members)):
            groups[(offset + i) % n_folds].append(str(case))
        offset += len(members)  # continue dealing where the last stratum stopped, to balance group sizes
    folds = []
    for k in range(n_folds):
        test, validation = sorted(groups[k]), sorted(groups[(k + 1) % n_folds])
        train = sorted(c for j, g in enumerate(groups) if j not in (k, (k + 1) % n_folds) for c in g)
        folds.append({"fold": k, "train": train, "validation": validation, "test": test})
    return {"format": SPLITS_FORMAT, "n_folds": n_folds, "seed": seed, "strata": dict(sorted(strata.items())),
            "folds": folds}  # fmt: skip


def save_splits(splits: dict, path: str | os.PathLike) -> Path:
    text = json.dumps(splits, indent=2)
    return write_text(path, text)


def load_splits(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        splits = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: splits file not found; check the path (crossval writes OUT/splits.json)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the splits file ({exc})") from exc
    if not isinstance(splits, dict) or splits.get("format") != SPLITS_FORMAT:
        raise DataError(f"{path}: not a DualDINOv3 cross-validation splits file")
    return splits
