"""The evaluation protocol against the literature (MATLAB bicubic, BT.601 Y, border crop)."""
import numpy as np
import pytest

from edgesr.imageio import read_rgb
from edgesr.metrics import degrade, imresize, mod_crop, psnr_y, ssim_y

from conftest import DATA


@pytest.mark.parametrize("folder,scale,lit", [("Set5", 4, 28.42), ("Set5", 2, 33.66), ("Set5", 3, 30.39)])
def test_bicubic_matches_literature(folder, scale, lit):
    scores = []
    for f in sorted((DATA / "val" / folder).glob("*.png")):
        hr = mod_crop(read_rgb(f), scale)
        scores.append(psnr_y(imresize(degrade(hr, scale), scale), hr, scale))
    assert np.mean(scores) == pytest.approx(lit, abs=0.05)


def test_imresize_known_values():
    # Worked by hand from MATLAB's contributions(): shrink by 0.5 -> kernel width 8, weights
    # 0.5*cubic(0.5*d) normalised, symmetric border. [1 2 3 4] -> 1.4609375, 3.5390625.
    np.testing.assert_allclose(imresize(np.array([[1, 2, 3, 4.0]]), 0.5)[0], [1.4609375, 3.5390625], atol=1e-9)
    # x2 of [1 2; 3 4]: 1-D weights of output 1 are (1.09375, -0.09375), so the corner is
    # 1.09375*(1.09375*1 - 0.09375*2) - 0.09375*(1.09375*3 - 0.09375*4) = 0.71875
    up = imresize(np.array([[1, 2], [3, 4.0]]), 2)
    assert up.shape == (4, 4) and up[0, 0] == pytest.approx(0.71875)
    assert imresize(np.full((7, 9, 3), 200, np.uint8), 0.25).dtype == np.uint8


def test_psnr_ssim_behave(photo):
    assert ssim_y(photo, photo) == pytest.approx(1.0)
    assert psnr_y(photo, photo) == float("inf")
    noisy = np.clip(photo.astype(int) + np.random.default_rng(0).normal(0, 5, photo.shape), 0, 255).astype(np.uint8)
    assert 30 < psnr_y(noisy, photo) < 40 and ssim_y(noisy, photo) < 0.99
    with pytest.raises(ValueError, match="sizes differ"):
        psnr_y(photo[:10], photo)
