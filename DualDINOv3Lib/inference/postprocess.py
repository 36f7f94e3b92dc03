"""Clean-up of predicted label maps."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..data.volume import Volume


def remove_small_components(label: Volume, min_volume_mm3: float) -> Volume:
    """``label`` with every connected region (per label value, 26-connected) smaller than ``min_volume_mm3``
    set to background (0). Returns ``label`` itself when ``min_volume_mm3 <= 0``."""
    if min_volume_mm3 <= 0:
        return label
    voxel_mm3 = float(np.prod(label.spacing))
    min_voxels = int(np.ceil(min_volume_mm3 / voxel_mm3))
    array = np.array(label.array, copy=True)
    for value in np.unique(array):
        if value == 0:
            continue
        mask = sitk.GetImageFromArray((array == value).astype(np.uint8))
        components = sitk.ConnectedComponent(mask, True)
        sizes = np.bincount(sitk.GetArrayViewFromImage(components).ravel())
        small = np.flatnonzero(sizes < min_voxels)
        small = small[small > 0]
        if small.size:
            array[np.isin(sitk.GetArrayViewFromImage(components), small)] = 0
    return label.with_array(array)
