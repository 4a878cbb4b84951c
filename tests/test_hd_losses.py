"""pix2pixHD losses: feature matching against hand computations, and the VGG19 perceptual loss
(torchvision-compatible parameter names, checkpoint loading, weight resolution order, loss values)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from pix2pix.errors import CheckpointError, Pix2PixError
from pix2pix.losses import (
    VGG19_FILENAME,
    VGG19_URL,
    VGG19Features,
    VGGLoss,
    feature_matching_loss,
    resolve_vgg_weights,
)

# ----------------------------------------------------------------------------------------------------
# Feature matching
# ----------------------------------------------------------------------------------------------------


def t(values, shape=(1, 1, 2, 2)) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(*shape)


def test_feature_matching_hand_case():
    # two scales, two features each plus logits (which must not count)
    f00, r00 = t([1.0, 2.0, 3.0, 4.0]), t([1.0, 0.0, 3.0, 8.0])    # |d| = 0,2,0,4 -> mean 1.5
    f01, r01 = t([0.5, 0.5], (1, 1, 1, 2)), t([0.0, -0.5], (1, 1, 1, 2))  # |d| = 0.5,1 -> mean 0.75
    f10, r10 = t([2.0], (1, 1, 1, 1)), t([-1.0], (1, 1, 1, 1))            # |d| = 3     -> mean 3
    f11, r11 = t([0.0, 0.0, 0.0, 1.0]), t([0.0, 0.0, 0.0, 0.0])    # |d| = 0,0,0,1 -> mean 0.25
    logit_f, logit_r = torch.full((1, 1, 2, 2), 100.0), torch.full((1, 1, 2, 2), -100.0)
    fake = [[f00, f01, logit_f], [f10, f11, logit_f]]
    real = [[r00, r01, logit_r], [r10, r11, logit_r]]
    total_l1 = 1.5 + 0.75 + 3.0 + 0.25
    # (1/num_D) * (4/(n_layers_D+1)) * lambda_feat = 1/2 * 1 * 10 = 5 for the pix2pixHD defaults
    got = feature_matching_loss(fake, real, n_layers_d=3)
    assert got.dim() == 0 and got.dtype == torch.float32
    assert got.item() == pytest.approx(5.0 * total_l1, rel=1e-6)
    # other n_layers_d / lambda: 1/2 * 4/6 * 2
    assert feature_matching_loss(fake, real, n_layers_d=5, lambda_feat=2.0).item() == pytest.approx(
        0.5 * (4 / 6) * 2.0 * total_l1, rel=1e-6)
    # a single scale: weight 1 * 1 * 10
    one = feature_matching_loss([fake[0]], [real[0]], n_layers_d=3)
    assert one.item() == pytest.approx(10.0 * (1.5 + 0.75), rel=1e-6)
    # only logits: nothing to match
    assert feature_matching_loss([[logit_f]], [[logit_r]], n_layers_d=3).item() == 0.0


def test_feature_matching_gradients_reach_fake_only_and_reduce_in_fp32():
    fake = t([1.0, 2.0, 3.0, 4.0]).requires_grad_(True)
    real = t([0.0, 3.0, 3.0, 5.0]).requires_grad_(True)
    loss = feature_matching_loss([[fake, fake.sum().view(1, 1, 1, 1)]], [[real, real.sum().view(1, 1, 1, 1)]],
                                 n_layers_d=3, lambda_feat=10.0)
    loss.backward()
    assert real.grad is None  # the real features are detached
    # d/dfake of 10 * mean|fake - real| = 10 * sign(fake - real) / 4 (sign(0) = 0)
    assert torch.allclose(fake.grad, t([2.5, -2.5, 0.0, -2.5]))
    half = feature_matching_loss([[fake.detach().half(), fake]], [[real.detach().half(), real]], n_layers_d=3)
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(10.0 * 0.75, rel=1e-3)


def test_feature_matching_rejects_mismatched_structures():
    a = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="scales"):
        feature_matching_loss([[a, a]], [[a, a], [a, a]], n_layers_d=3)
    with pytest.raises(ValueError, match="bare tensor"):
        feature_matching_loss(a, a, n_layers_d=3)


# ----------------------------------------------------------------------------------------------------
# VGG19 features: torchvision-compatible names and checkpoint loading
# ----------------------------------------------------------------------------------------------------

CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
EXPECTED_KEYS = [f"{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")]
CONV_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def shape_of(key: str) -> tuple[int, ...]:
    k = CONV_INDICES.index(int(key.split(".")[0]))
    c_out, c_in = CONV_CHANNELS[k], ([3] + CONV_CHANNELS)[k]
    return (c_out, c_in, 3, 3) if key.endswith("weight") else (c_out,)


def constant_state(value_of) -> dict[str, torch.Tensor]:
    """A features state_dict of stride-0 tensors (tiny to save): key -> constant value_of(key)."""
    return {k: torch.full((1,), float(value_of(k))).expand(shape_of(k)) for k in EXPECTED_KEYS}


def marked(mark: float) -> dict[str, torch.Tensor]:
    return constant_state(lambda k: mark if k == "0.bias" else 0.0)


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    torch.manual_seed(0)
    return VGG19Features()


def test_parameter_names_are_torchvision_keys(vgg):
    assert len(EXPECTED_KEYS) == 32
    assert list(vgg.state_dict().keys()) == EXPECTED_KEYS
    assert [name for name, _ in vgg.named_parameters()] == EXPECTED_KEYS
    assert all(tuple(p.shape) == shape_of(n) for n, p in vgg.named_parameters())
    assert len(vgg) == 37
    assert all(isinstance(vgg[i], nn.MaxPool2d) for i in (4, 9, 18, 27, 36))
    assert all(isinstance(vgg[i + 1], nn.ReLU) for i in CONV_INDICES)
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training  # stays in eval mode


def test_forward_returns_the_five_reference_slices(vgg):
    feats = vgg(torch.randn(1, 3, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4),
                                               (1, 512, 2, 2), (1, 512, 1, 1)]
    assert all((f >= 0).all() for f in feats)  # each slice ends on a ReLU


def test_full_torchvision_checkpoint_loads_and_weights_land_where_expected(tmp_path):
    feats = constant_state(lambda k: int(k.split(".")[0]) * (1 if k.endswith("weight") else -1))
    first = torch.randn(64, 3, 3, 3)
    feats["0.weight"] = first
    full = {f"features.{k}": v for k, v in feats.items()}
    full.update({"classifier.0.weight": torch.zeros(4, 2), "classifier.0.bias": torch.zeros(4),
                 "classifier.6.weight": torch.zeros(3, 4)})
    path = tmp_path / "vgg19-full.pth"
    torch.save(full, path)

    state = resolve_vgg_weights(path)
    assert sorted(state) == sorted(EXPECTED_KEYS)  # classifier.* dropped, features. prefix stripped
    net = VGG19Features()
    net.load_weights(state)
    assert net.pretrained
    assert torch.equal(net[0].weight, first)
    for i in CONV_INDICES[1:]:
        assert (net[i].weight == i).all() and (net[i].bias == -i).all()
    assert not any(p.requires_grad for p in net.parameters())

    # a features-only state_dict loads too, and so does the raw full checkpoint given directly
    net.load_weights({k: 2 * v for k, v in feats.items()})
    assert (net[34].bias == -68).all() and (net[2].weight == 4).all()
    loss = VGGLoss(full)
    assert loss.pretrained and torch.equal(loss.vgg[0].weight, first)
    # keys beyond layer 29 are unused: a state_dict without them is accepted (those layers keep their values)
    net.load_weights({k: v for k, v in feats.items() if int(k.split(".")[0]) < 30})
    assert (net[28].weight == 28).all() and (net[30].weight == 60).all()


def test_missing_unexpected_and_misshaped_keys_raise_checkpoint_error(tmp_path):
    state = constant_state(lambda k: 0.0)
    del state["12.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): 12\.weight"):
        VGG19Features().load_weights(state)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"bad\.pth(.|\n)*missing keys \(1\): 12\.weight"):
        resolve_vgg_weights(path)

    state = constant_state(lambda k: 0.0)
    state["5.weight"] = torch.zeros(128, 64, 1, 1)
    state["99.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        VGG19Features().load_weights(state, source="mine.pth")
    msg = str(err.value)
    assert "mine.pth" in msg and "unexpected keys (1): 99.weight" in msg and "5.weight" in msg


def test_unreadable_or_missing_file_is_checkpoint_error_naming_it(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        resolve_vgg_weights(bad)
    with pytest.raises(CheckpointError, match="nope.pth"):
        resolve_vgg_weights(tmp_path / "nope.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="tensor.pth"):
        resolve_vgg_weights(tmp_path / "tensor.pth")


# ----------------------------------------------------------------------------------------------------
# Weight resolution order
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub dir and a download function that records its calls."""
    hub_dir = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    calls = []

    def fake_download(url, *args, **kwargs):
        calls.append((url, kwargs))
        return {f"features.{k}": v for k, v in marked(3.0).items()}

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    return hub_dir, calls


def mark_of(state) -> float:
    return state["0.bias"][0].item()


def test_resolve_order(tmp_path, hub, caplog):
    hub_dir, calls = hub
    cached = hub_dir / "checkpoints" / VGG19_FILENAME
    explicit = tmp_path / "explicit.pth"
    torch.save(marked(1.0), explicit)

    # nothing anywhere: error naming the three ways and how to turn the loss off
    with pytest.raises(Pix2PixError) as err:
        resolve_vgg_weights()
    msg = str(err.value)
    assert str(cached) in msg and "loss.vgg_weights=FILE" in msg and "lambda_vgg=0" in msg
    assert VGG19_URL in msg and "loss.vgg_random=true" in msg and "allow_download" in msg
    assert calls == []

    # random only when allowed, with a warning; the download is not attempted
    with caplog.at_level(logging.WARNING, logger="pix2pix.losses.perceptual"):
        assert resolve_vgg_weights(allow_random=True) is None
    assert "random" in caplog.text
    assert calls == []

    # the download when allowed (before random)
    assert mark_of(resolve_vgg_weights(allow_download=True, allow_random=True)) == 3.0
    assert [url for url, _ in calls] == [VGG19_URL]
    assert calls[0][1].get("weights_only") is True

    # the hub cache beats the download
    cached.parent.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in marked(2.0).items()}, cached)
    assert mark_of(resolve_vgg_weights(allow_download=True)) == 2.0
    assert mark_of(resolve_vgg_weights()) == 2.0
    assert len(calls) == 1

    # an explicit path beats everything
    assert mark_of(resolve_vgg_weights(explicit, allow_download=True, allow_random=True)) == 1.0
    assert len(calls) == 1
    # and a path given to VGGLoss goes through the same loader
    assert VGGLoss(explicit).vgg[0].bias[0].item() == 1.0


def test_failed_download_explains_the_alternatives(hub, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(Pix2PixError, match=r"(?s)no network.*loss.vgg_weights.*lambda_vgg=0"):
        resolve_vgg_weights(allow_download=True)


# ----------------------------------------------------------------------------------------------------
# VGGLoss
# ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg_loss(vgg) -> VGGLoss:
    return VGGLoss(vgg)


def images(seed: int, shape=(1, 3, 16, 16)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def test_vgg_loss_zero_for_identical_positive_otherwise(vgg_loss):
    x = images(0)
    zero = vgg_loss(x, x.clone())
    assert zero.dim() == 0 and zero.dtype == torch.float32 and zero.item() == 0.0
    assert vgg_loss(x, images(1)).item() > 0


def test_vgg_loss_gradients_reach_fake_only(vgg_loss):
    fake = images(0).requires_grad_(True)
    real = images(1).requires_grad_(True)
    vgg_loss(fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None
    assert all(p.grad is None and not p.requires_grad for p in vgg_loss.vgg.parameters())


def manual_vgg_loss(vgg, fake, real, lam, slices=((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))):
    layers = list(vgg.children())
    w = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    total = 0.0
    x, y = fake, real
    for k, (a, b) in enumerate(slices):
        block = nn.Sequential(*layers[a:b])
        x, y = block(x), block(y)
        total += w[k] * (x - y).abs().mean().item()
    return lam * total


def test_vgg_loss_applies_layer_weights_and_lambda(vgg):
    fake, real = images(2), images(3)
    with torch.no_grad():
        expected = manual_vgg_loss(vgg, fake, real, 10.0)
        assert VGGLoss(vgg)(fake, real).item() == pytest.approx(expected, rel=1e-5)
        assert VGGLoss(vgg, lambda_vgg=2.5)(fake, real).item() == pytest.approx(expected / 4, rel=1e-5)
        assert VGGLoss(vgg, lambda_vgg=0)(fake, real).item() == 0.0


def test_normalize_input_maps_to_imagenet_statistics(vgg):
    seen = []
    handle = vgg.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    try:
        x = images(4)
        VGGLoss(vgg)(x, x)
        assert torch.equal(seen[0], x)  # the reference: [-1, 1] as it is
        seen.clear()
        VGGLoss(vgg, normalize_input=True)(x, x)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        assert torch.allclose(seen[0], ((x + 1) / 2 - mean) / std, atol=1e-6)
        # -1 -> (0 - mean) / std, 1 -> (1 - mean) / std
        extremes = torch.tensor([-1.0, 1.0]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
        ends = VGGLoss(vgg, normalize_input=True).preprocess(extremes)
        assert torch.allclose(ends[0, :, 0, 0], -mean.flatten() / std.flatten())
        assert torch.allclose(ends[0, :, 0, 1], (1 - mean.flatten()) / std.flatten())
    finally:
        handle.remove()


def test_vgg_loss_dtype_and_channels(vgg_loss):
    x, y = images(5), images(6)
    ref = vgg_loss(x, y)
    low = vgg_loss(x.bfloat16(), y.bfloat16())
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(ref.item(), rel=0.1)
    gray = vgg_loss(x[:, :1], y[:, :1])
    assert gray.item() > 0 and ref.item() > 0
    with pytest.raises(Pix2PixError, match="lambda_vgg=0"):
        vgg_loss(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))


def test_vgg_loss_random_init_from_none():
    loss = VGGLoss(None)
    assert not loss.pretrained
    assert list(loss.state_dict()) == [f"vgg.{k}" for k in EXPECTED_KEYS]  # no ImageNet mean/std buffers
