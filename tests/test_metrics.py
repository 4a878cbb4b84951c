import math

import torch

from pix2pix.evaluation import l1_error, psnr, ssim


def test_identical_images():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(l1_error(x, x), torch.zeros(2, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, dtype=torch.float64))


def test_psnr_of_a_known_error():
    x = torch.full((1, 3, 16, 16), 0.5)
    y = x + 0.1  # MSE = 0.01 -> 20 dB
    assert math.isclose(float(psnr(x, y)), 20.0, rel_tol=1e-6)
    assert math.isclose(float(l1_error(x, y)), 0.1, rel_tol=1e-5)


def test_psnr_falls_with_noise_level():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    values = [float(psnr(x, (x + s * torch.randn(x.shape, generator=g)))) for s in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2]
    assert abs(values[0] - 40.0) < 0.5  # sigma 0.01 -> MSE 1e-4 -> 40 dB


def test_ssim_of_constant_images_is_the_luminance_term():
    c1 = (0.01) ** 2
    x, y = torch.full((1, 1, 20, 20), 0.2), torch.full((1, 1, 20, 20), 0.6)
    expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
    assert math.isclose(float(ssim(x, y)), expected, rel_tol=1e-6)  # inputs are float32


def test_ssim_drops_with_structure_loss():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 48, 48, generator=g)
    blurred = torch.nn.functional.avg_pool2d(x, 5, 1, 2)
    assert float(ssim(x, blurred)) < 0.5 < float(ssim(x, (x + 0.01 * torch.randn(x.shape, generator=g))))
