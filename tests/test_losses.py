"""Adversarial losses and the WGAN-GP gradient penalty against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pix2pix.errors import ConfigError
from pix2pix.losses import GAN_MODES, GANLoss, gradient_penalty

X = [0.0, 2.0, -1.0, 0.5]


def logits(values=X) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 2, 2)


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def close(t: torch.Tensor, expected: float) -> None:
    assert t.dim() == 0
    assert t.item() == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_modes_listed():
    assert set(GAN_MODES) == {"vanilla", "lsgan", "hinge", "wgangp"}


def test_vanilla_zero_logits_is_log_two():
    loss = GANLoss("vanilla")
    zeros = torch.zeros(2, 1, 3, 3)
    close(loss(zeros, True), math.log(2))
    close(loss(zeros, False), math.log(2))


def test_vanilla_is_bce_with_logits():
    loss = GANLoss("vanilla")
    # -log(sigmoid(x)) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
    close(loss(logits(), True), mean(softplus(-v) for v in X))
    close(loss(logits(), False), mean(softplus(v) for v in X))
    # the generator form of vanilla is the same as the real-target D form
    close(loss(logits(), True, for_discriminator=False), mean(softplus(-v) for v in X))


def test_lsgan_is_mse_to_one_and_zero():
    loss = GANLoss("lsgan")
    close(loss(logits(), True), mean((v - 1) ** 2 for v in X))
    close(loss(logits(), False), mean(v ** 2 for v in X))
    close(loss(logits(), True, for_discriminator=False), mean((v - 1) ** 2 for v in X))


def test_hinge_discriminator_and_generator_forms():
    loss = GANLoss("hinge")
    close(loss(logits(), True), mean(max(0.0, 1 - v) for v in X))  # (1 + 0 + 2 + 0.5) / 4
    close(loss(logits(), False), mean(max(0.0, 1 + v) for v in X))  # (1 + 3 + 0 + 1.5) / 4
    close(loss(logits(), True), 3.5 / 4)
    close(loss(logits(), False), 5.5 / 4)
    # G: -mean(D(fake)), no hinge
    close(loss(logits(), True, for_discriminator=False), -mean(X))


def test_wgangp_is_signed_mean():
    for name in ("wgangp", "wgan-gp"):
        loss = GANLoss(name)
        assert loss.mode == "wgangp"
        close(loss(logits(), True), -mean(X))
        close(loss(logits(), False), mean(X))
        close(loss(logits(), True, for_discriminator=False), -mean(X))


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge", "wgangp"])
def test_sum_over_scales_uses_each_scales_logits_only(mode):
    loss = GANLoss(mode)
    a = logits([0.0, 2.0, -1.0, 0.5])
    b = torch.tensor([[[[3.0, -2.0]]]])
    feature = torch.full((1, 4, 2, 2), 100.0)  # features must not enter the GAN loss
    pred = [[feature, a], [feature[..., :1, :], b]]
    for real in (True, False):
        for for_d in (True, False):
            expected = loss(a, real, for_d) + loss(b, real, for_d)
            got = loss(pred, real, for_d)
            assert got.item() == pytest.approx(expected.item(), rel=1e-6)
            # a single-scale list output equals the bare tensor
            single = loss([[feature, a]], real, for_d).item()
            assert single == pytest.approx(loss(a, real, for_d).item(), rel=1e-6)


def test_two_scale_vanilla_zero_logits_is_two_log_two():
    pred = [[torch.zeros(1, 1, 4, 4)], [torch.zeros(1, 1, 2, 2)]]
    close(GANLoss("vanilla")(pred, True), 2 * math.log(2))
    close(GANLoss("lsgan")(pred, True), 2.0)


def test_loss_is_fp32_for_half_logits():
    out = GANLoss("lsgan")(logits().half(), True)
    assert out.dtype == torch.float32


def test_loss_gradients_match_hand_derivatives():
    x = logits().requires_grad_(True)
    GANLoss("lsgan")(x, True).backward()
    expected = torch.tensor([2 * (v - 1) / len(X) for v in X]).view_as(x)
    assert torch.allclose(x.grad, expected)


def test_unknown_mode_raises_config_error_with_suggestion():
    with pytest.raises(ConfigError, match=r"Did you mean 'lsgan'"):
        GANLoss("lsgn")
    with pytest.raises(ConfigError, match=r"unknown gan_mode 'bogus'"):
        GANLoss("bogus")


# ----------------------------------------------------------------------------------------------------
# Gradient penalty
# ----------------------------------------------------------------------------------------------------

class OneByOne(nn.Module):
    """A linear 1x1 conv D with known weights and no bias, returning the [[logits]] structure."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(len(w), 1, 1, bias=False).double()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(w, dtype=torch.float64).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        return [[x, self.conv(x)]]


@pytest.mark.parametrize(("weight", "constant"), [(10.0, 1.0), (1.0, 1.0), (2.5, 0.5)])
def test_gradient_penalty_hand_case(weight, constant):
    torch.manual_seed(0)
    w = [0.3, -0.2, 0.5, 0.1]
    b, h, wd = 3, 5, 7
    d = OneByOne(w)
    real = torch.randn(b, 4, h, wd, dtype=torch.float64)
    fake = torch.randn(b, 4, h, wd, dtype=torch.float64)
    # d sum(D(x)) / dx = w at every pixel, whatever the interpolate: norm sqrt(H*W*sum(w^2)) per sample
    norm = math.sqrt(h * wd * sum(v * v for v in w))
    gp = gradient_penalty(d, real, fake, weight=weight, constant=constant)
    assert gp.item() == pytest.approx(weight * (norm - constant) ** 2, rel=1e-12)

    # the penalty is differentiable w.r.t. D's weights (create_graph=True):
    # d/dw [weight * (sqrt(HW)*|w| - c)^2] = weight * 2 * (norm - c) * sqrt(HW) * w / |w|
    gp.backward()
    wt = torch.tensor(w, dtype=torch.float64)
    expected = weight * 2 * (norm - constant) * math.sqrt(h * wd) * wt / wt.norm()
    assert torch.allclose(d.conv.weight.grad.flatten(), expected, rtol=1e-10)


def test_gradient_penalty_is_zero_for_unit_gradient_norm_and_ignores_input_grads():
    h = wd = 4
    # sum(w^2) * H * W = 1  ->  norm 1  ->  penalty 0
    d = OneByOne([0.25, 0.0, 0.0])
    real = torch.randn(2, 3, h, wd, dtype=torch.float64, requires_grad=True)
    fake = torch.randn(2, 3, h, wd, dtype=torch.float64, requires_grad=True)
    gp = gradient_penalty(d, real, fake)
    assert gp.item() == pytest.approx(0.0, abs=1e-12)
    gp.backward()
    assert real.grad is None and fake.grad is None  # real and fake are detached


def test_gradient_penalty_sums_over_scales():
    # two identical 1x1 scales double the gradient: norm 2 * sqrt(HW sum w^2)
    w = [0.1, 0.2]
    conv = OneByOne(w).conv

    def two_scale(x):
        return [[conv(x)], [conv(x)]]

    real = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    gp = gradient_penalty(two_scale, real, real.clone(), weight=1.0)
    norm = 2 * math.sqrt(9 * sum(v * v for v in w))
    assert gp.item() == pytest.approx((norm - 1) ** 2, rel=1e-12)
