# Extension meta-information, included by the top-level CMakeLists.txt before find_package(Slicer).
# The Slicer Extensions Index and the Extensions Manager show these values.

set(EXTENSION_HOMEPAGE "https://github.com/dualdinov3/SlicerDualDINOv3")
set(EXTENSION_CATEGORY "Segmentation")
set(EXTENSION_CONTRIBUTORS "DualDINOv3 developers")
set(EXTENSION_DESCRIPTION "Segments head-and-neck tumours (GTVp and GTVn) on PET/CT with dual CT and PET DINOv3 encoders fused by cross-attention, and shows PCA maps of the encoder features.")
set(EXTENSION_ICONURL "https://raw.githubusercontent.com/dualdinov3/SlicerDualDINOv3/main/DualDINOv3Segment/Resources/Icons/DualDINOv3Segment.png")
# The screenshot is still to be added to the repository at this path.
set(EXTENSION_SCREENSHOTURLS "https://raw.githubusercontent.com/dualdinov3/SlicerDualDINOv3/main/docs/screenshots/slice_views.png")
# Extension names, as a list or space separated; "PyTorch" is the SlicerPyTorch extension that provides torch.
set(EXTENSION_DEPENDS "PyTorch")
set(EXTENSION_BUILD_SUBDIRECTORY ".")
set(EXTENSION_STATUS "Experimental")
