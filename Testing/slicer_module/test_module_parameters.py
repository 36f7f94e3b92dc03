"""The parameter node: typed values and node references survive a save and a scene write/read."""

from __future__ import annotations

from DualDINOv3SegmentLib import Parameters


def test_parameters_round_trip_and_bad_values_fall_back_to_defaults(slicerApp, phantomNodes):
    ct, pet = phantomNodes
    node = Parameters.parameterNode(slicerApp.scene)
    assert Parameters.parameterNode(slicerApp.scene) is node  # a singleton
    chosen = Parameters.SegmentParameters(
        ctVolume=ct,
        petVolume=pet,
        device="cpu",
        batchSize=8,
        skipEmptySlices=False,
        minComponentMm3=50.0,
        headNeckOnly=False,
        petEncoder=False,
        model="/models/mine.safetensors",
        modelIsFile=True,
    )
    Parameters.save(node, chosen)
    back = Parameters.load(node)
    assert back == chosen and back.ctVolume is ct and back.outputSegmentation is None
    assert back.encoders() == ["ct"]

    for name, text in (("device", "tpu"), ("batchSize", "0"), ("minComponentMm3", "-3"), ("skipEmptySlices", "yes")):
        node.SetParameter(name, text)
    back = Parameters.load(node)
    defaults = Parameters.SegmentParameters()
    assert (back.device, back.batchSize, back.minComponentMm3, back.skipEmptySlices) == (
        defaults.device,
        defaults.batchSize,
        defaults.minComponentMm3,
        defaults.skipEmptySlices,
    )
