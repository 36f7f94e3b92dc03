"""Sets of phantom cases on disk: which cases a set holds (ids, seeds, strata), writing them in the HECKTOR
layout, and the ``cases.json`` / ``cases.csv`` table of their facts (seed, stratum, volumes...)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.hecktor import HecktorCase, check_case_outputs, write_hecktor_case
from ..domain import STRATA
from ..errors import ConfigError, DataError
from ..files import write_text
from .phantom import Phantom, make_phantom

log = logging.getLogger(__name__)

CASES_JSON, CASES_CSV = "cases.json", "cases.csv"
CASES_FORMAT = "dualdinov3-phantom-cases"


def write_phantom_case(phantom: Phantom, folder: str | os.PathLike, *, overwrite: bool = False) -> HecktorCase:
    """Writes a :class:`~.phantom.Phantom` as ``CASE__CT.nii.gz`` (int16 HU), ``CASE__PT.nii.gz`` (float32
    SUV) and ``CASE.nii.gz`` (uint8 label) into ``folder`` (created if missing), and adds its facts
    (``phantom.facts()``) to ``cases.json`` and ``cases.csv`` there.

    Each file is written atomically; existing files are only replaced with ``overwrite=True``
    (:class:`~DualDINOv3Lib.errors.OutputExistsError` otherwise, before anything is written). A
    ``cases.json`` already in ``folder`` must be one this package wrote. Returns the written case's paths.
    """
    check_phantom_outputs(folder, [phantom.case_id], overwrite=overwrite)
    case = write_hecktor_case(folder, phantom.case_id, phantom.ct, phantom.pet, phantom.label, overwrite=overwrite)
    records = {r["case_id"]: r for r in _read_cases_table(Path(folder))}
    records[phantom.case_id] = phantom.facts()
    _write_cases_table(Path(folder), [records[k] for k in sorted(records)])
    return case


def check_phantom_outputs(folder: str | os.PathLike, case_ids: list[str], *, overwrite: bool = False) -> None:
    """:func:`~DualDINOv3Lib.data.hecktor.check_case_outputs`, and a ``cases.json`` there must be ours."""
    check_case_outputs(folder, case_ids, overwrite=overwrite)
    _read_cases_table(Path(folder))


def _read_cases_table(folder: Path) -> list[dict]:
    """The records of ``folder/cases.json`` ([] if there is none); refuses a file this package did not write."""
    path = folder / CASES_JSON
    if not path.exists():
        if (folder / CASES_CSV).exists():
            raise DataError(
                f"{folder / CASES_CSV}: exists without {CASES_JSON}, so it was not written here and would be "
                "replaced; move it away or choose another folder"
            )
        return []
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: is not a readable case table ({exc}); move it away or choose another folder") from exc
    if not isinstance(table, dict) or table.get("format") != CASES_FORMAT or not isinstance(table.get("cases"), list):
        raise DataError(
            f"{path}: was not written by dualdinov3 (no format {CASES_FORMAT!r}) and would be replaced; "
            "move it away or choose another folder"
        )
    return table["cases"]


def _write_cases_table(folder: Path, records: list[dict]) -> None:
    text = json.dumps({"format": CASES_FORMAT, "version": 1, "cases": records}, indent=2) + "\n"
    write_text(folder / CASES_JSON, text)
    columns = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    write_text(folder / CASES_CSV, buffer.getvalue())


def read_cases_table(folder: str | os.PathLike) -> list[dict]:
    """The per-case facts (``case_id``, ``seed``, ``stratum``, ``gtvp_cm3``...) of a phantom folder's
    ``cases.json``, or [] when the folder has none (e.g. real HECKTOR data)."""
    return list(_read_cases_table(Path(folder)))


@dataclass(frozen=True)
class PlannedCase:
    """One case of a phantom set: its id, its own seed (for :func:`make_phantom`) and its GTVp stratum."""

    case_id: str
    seed: int
    stratum: str


def plan_phantom_cases(n_cases: int, seed: int = 0, first_index: int = 1) -> list[PlannedCase]:
    """Ids ``PHANTOM-001``..., per-case seeds and strata for a set of ``n_cases`` phantoms.

    Every run of three consecutive cases (1-3, 4-6, ...) holds one small, one medium and one large GTVp, in
    an order drawn from ``seed``; a longer set starts with the same cases as a shorter one.
    """
    if isinstance(n_cases, bool) or not isinstance(n_cases, (int, np.integer)) or n_cases < 1:
        raise ConfigError(f"the number of phantom cases must be an integer >= 1, got {n_cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"the phantom seed must be an integer >= 0, got {seed!r}")
    plan = []
    for i in range(n_cases):
        order = np.random.default_rng([int(seed), i // 3]).permutation(3)
        case_seed = int(np.random.SeedSequence([int(seed), i]).generate_state(1)[0])
        plan.append(PlannedCase(f"PHANTOM-{first_index + i:03d}", case_seed, STRATA[order[i % 3]]))
    return plan


def write_phantom_cases(
    folder: str | os.PathLike,
    n_cases: int,
    *,
    seed: int = 0,
    overwrite: bool = False,
    on_case: Callable[[Phantom], None] | None = None,
    **phantom_options,
) -> list[dict]:
    """Makes ``n_cases`` phantoms (see :func:`plan_phantom_cases`) and writes them to ``folder`` in the
    HECKTOR layout (:func:`write_phantom_case`), with ``cases.json``/``cases.csv`` of their facts.

    Existing case files are only replaced with ``overwrite=True``; this is checked for every case before the
    first is made. ``on_case(phantom)`` is called after each case is written. ``phantom_options`` go to
    :func:`make_phantom` (``shape``, ``spacing``, ``pet_spacing``, ``n_nodes``).
    Returns the cases' facts (:meth:`Phantom.facts`), in order; one case at a time is held in memory.
    """
    plan = plan_phantom_cases(n_cases, seed)
    folder = Path(folder)
    check_phantom_outputs(folder, [case.case_id for case in plan], overwrite=overwrite)
    facts = []
    for case in plan:
        phantom = make_phantom(case.seed, stratum=case.stratum, case_id=case.case_id, **phantom_options)
        write_phantom_case(phantom, folder, overwrite=overwrite)
        log.info("wrote phantom %s (%s GTVp %.1f cm3)", case.case_id, case.stratum, phantom.gtvp_cm3)
        if on_case is not None:
            on_case(phantom)
        facts.append(phantom.facts())
    return facts
