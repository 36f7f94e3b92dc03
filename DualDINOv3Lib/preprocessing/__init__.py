"""The paper's preprocessing (sec. 2.2) of a PET/CT case into model inputs, its exact inverse back onto the
CT grid (:class:`CasePreprocessor`), the spec a segmenter stores (:class:`PreprocessingSpec`), and the one
body rule (:func:`body_mask`). Exports are lazy; only :mod:`.slices` needs torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    "AIR_HU": ".body",
    "BODY_THRESHOLD_HU": ".body",
    "body_mask": ".body",
    "largest_region": ".body",
    "PreprocessingSpec": ".spec",
    "CasePreprocessor": ".slices",
    "Normalization": ".slices",
    "SliceGeometry": ".slices",
    "preprocess_case": ".slices",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
