"""Self-supervised pretraining of the CT and PET encoders (paper sec. 2.1, 2.3): which slices of a volume the
encoders see (:mod:`.slices`), the sharded, memory-mapped slice stores they stream from (:mod:`.store`), and
the three-stage DINOv3 recipe: multi-crop (:mod:`.crops`), iBOT masking (:mod:`.masking`), heads, Sinkhorn-Knopp,
the DINO / iBOT / KoLeo / Gram losses, the student / EMA teacher / Gram teacher (:mod:`.meta_arch`), schedules,
parameter groups, streaming crops (:mod:`.data`), the loop (:func:`pretrain`) and its checkpoints and exports.
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
    "DINOHead": ".heads",
    "MultiCrop": ".crops",
    "PretrainConfig": ".config",
    "PretrainResult": ".trainer",
    "SSLMetaArch": ".meta_arch",
    "export_teacher": ".checkpoint",
    "load_pretrain_config": ".config",
    "parse_pretrain_config": ".config",
    "pretrain": ".trainer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
