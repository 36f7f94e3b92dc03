"""Synthetic head-and-neck PET/CT phantoms with GTVp/GTVn labels: one case in memory (:func:`make_phantom`),
or a set of cases written in the HECKTOR layout with a table of their facts (:func:`write_phantom_cases`).
numpy and SimpleITK only; exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Phantom": ".phantom",
    "make_phantom": ".phantom",
    "PlannedCase": ".cases",
    "plan_phantom_cases": ".cases",
    "read_cases_table": ".cases",
    "write_phantom_case": ".cases",
    "write_phantom_cases": ".cases",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
