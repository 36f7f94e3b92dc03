"""Self-supervised pretraining of the CT and PET encoders (paper sec. 2.1): which slices of a volume the
encoders see (:mod:`.slices`) and the sharded, memory-mapped slice stores they stream from (:mod:`.store`).
Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "CtSliceParams": ".slices",
    "PetSliceParams": ".slices",
    "PretrainingSlices": ".slices",
    "VolumeReport": ".slices",
    "find_inputs": ".inputs",
    "parse_slice_settings": ".inputs",
    "build_pretraining_store": ".slices",
    "ct_pretraining_slices": ".slices",
    "pet_pretraining_slices": ".slices",
    "pretraining_slices": ".slices",
    "slice_params": ".slices",
    "SliceProvenance": ".store",
    "SliceStore": ".store",
    "SliceStoreWriter": ".store_writer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
