"""The module's logic on the real IBSI PET/CT (STS_042), read by Slicer's own volume reader, and the PET
converted to SUV from its DICOM headers through a stand-in of Slicer's DICOM database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import slicer
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic
from DualDINOv3SegmentLib.Inputs import INSTANCE_UIDS_ATTRIBUTE, checkInputs
from DualDINOv3SegmentLib.MRMLVolumes import ijkToRasMatrix
from slicer_harness import REPO_ROOT, jobLeftovers, sceneSummary

IBSI = REPO_ROOT / "Testing" / "data" / "ibsi-sts-petct"
PET_DICOM = IBSI / "STS_042_dicom" / "PET" / "image"


def loadVolume(scene, path: Path, name: str):
    """What Slicer's Add Data does for a volume file: an archetype storage node reads it."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


class DicomDatabaseStandIn:
    """The one method of ctkDICOMDatabase the logic uses: the file of an instance UID."""

    def __init__(self, files):
        self.files = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): str(f) for f in files}

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")


@pytest.fixture
def ibsiNodes(slicerApp):
    ct = loadVolume(slicerApp.scene, IBSI / "STS_042_nifti" / "CT_image.nii.gz", "STS_042 CT")
    pet = loadVolume(slicerApp.scene, IBSI / "STS_042_nifti" / "PET_image.nii.gz", "STS_042 PET")
    return ct, pet


def _asFromDicom(pet, database):
    pet.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(database.files))
    return pet


def test_pet_in_suv_from_dicom_is_kept_and_said_so(ibsiNodes):
    ct, pet = ibsiNodes
    database = DicomDatabaseStandIn(sorted(PET_DICOM.glob("*.dcm")))
    checked = checkInputs(ct, _asFromDicom(pet, database), database)
    assert any("already in SUV (Units GML)" in note for note in checked.notes)
    np.testing.assert_array_equal(checked.pet.array, slicer.util.arrayFromVolume(pet))


def test_pet_in_bq_per_ml_from_dicom_is_converted_to_suvbw(ibsiNodes, tmp_path):
    ct, pet = ibsiNodes
    files = []
    for source in sorted(PET_DICOM.glob("*.dcm")):
        dataset = pydicom.dcmread(source)
        dataset.Units = "BQML"  # as most scanners store it; ADMIN decay correction: SUV = Bq/ml x weight / dose
        dataset.save_as(tmp_path / source.name)
        files.append(tmp_path / source.name)
    database = DicomDatabaseStandIn(files)
    original = slicer.util.arrayFromVolume(pet).copy()
    checked = checkInputs(ct, _asFromDicom(pet, database), database)
    factor = 71.0 * 1000.0 / 367008000.0  # PatientWeight (g) / RadionuclideTotalDose (Bq) of these files
    np.testing.assert_allclose(checked.pet.array, original * factor, rtol=1e-5)
    assert any("converted from DICOM to SUVbw" in note for note in checked.notes)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(pet), original)  # the node is untouched


def test_dicom_pet_without_database_files_is_refused(ibsiNodes, slicerApp):
    ct, pet = ibsiNodes
    pet.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, "1.2.3.4")
    before = sceneSummary(slicerApp.scene)
    with pytest.raises(Exception, match="no longer in Slicer's DICOM database"):
        DualDINOv3SegmentLogic(dicomDatabase=DicomDatabaseStandIn([])).segment(ct, pet)
    assert sceneSummary(slicerApp.scene) == before


@pytest.mark.slow
def test_segment_the_ibsi_case(ibsiNodes, slicerApp, tmp_path):
    ct, pet = ibsiNodes
    before = slicer.util.arrayFromVolume(ct).copy()
    segmentation = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path)).segment(ct, pet, device="cpu")
    seg = segmentation.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == ["GTVp", "GTVn"]
    assert [seg.GetNthSegment(i).GetLabelValue() for i in range(seg.GetNumberOfSegments())] == [1, 2]
    assert segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is ct
    geometry = seg.GetConversionParameter(slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    reference = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, reference)
    import vtk

    matrix = vtk.vtkMatrix4x4()
    reference.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix), ijkToRasMatrix(ct), atol=1e-5)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct), before)
    assert jobLeftovers(tmp_path) == []
