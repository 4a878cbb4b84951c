"""Generators and discriminators: reference parameter counts, shapes, receptive fields and key layouts."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pix2pix.errors import ConfigError
from pix2pix.models import run_padded, size_multiple
from pix2pix.models.unet import UnetSkipConnectionBlock
from pix2pix.registry import (
    DISCRIMINATORS,
    GENERATORS,
    create_discriminator,
    create_generator,
    list_discriminators,
    list_generators,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------------------------------
# Parameter counts of the full-size networks (REFERENCE.md)
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("unet_256", {"norm": "batch"}, 54_413_955),
        ("unet_128", {"norm": "batch"}, 41_828_995),
        ("unet_256", {"norm": "instance"}, 54_409_603),
        ("resnet_9blocks", {"norm": "instance"}, 11_378_179),
        ("resnet_6blocks", {"norm": "instance"}, 7_837_699),
    ],
)
def test_generator_parameter_counts_match_reference(name, kwargs, expected):
    net = create_generator(name, 3, 3, init=None, **kwargs)
    assert n_params(net) == expected


def test_generic_unet_and_resnet_match_named_variants():
    assert n_params(create_generator("unet", num_downs=8, init=None)) == 54_413_955
    assert n_params(create_generator("resnet", n_blocks=9, init=None)) == 11_378_179


@pytest.mark.parametrize(("n_layers", "expected"), [(3, 2_768_705), (0, 9_024)])
def test_discriminator_parameter_counts_match_reference(n_layers, expected):
    net = create_discriminator("patchgan", 6, n_layers=n_layers, norm="batch", init=None)
    assert n_params(net) == expected


# ----------------------------------------------------------------------------------------------------
# Every registered network at tiny settings
# ----------------------------------------------------------------------------------------------------

# Options that shrink a network, applied only where the registered builder accepts them.
TINY = {"ngf": 4, "ndf": 4, "num_downs": 3, "n_blocks": 2, "n_blocks_global": 2, "n_blocks_local": 1,
        "n_downsample_global": 2, "n_local_enhancers": 1, "num_D": 2}


def tiny_kwargs(fn) -> dict:
    params = inspect.signature(fn).parameters
    return {k: v for k, v in TINY.items() if k in params}


def _check_gradients(net: nn.Module) -> None:
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        if name.endswith("weight"):
            # (biases right before a normalisation legitimately get ~0 gradient; weights never do)
            assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("name", list_generators())
def test_every_generator_forward_range_and_gradients(name):
    torch.manual_seed(0)
    net = create_generator(name, 3, 2, **tiny_kwargs(GENERATORS[name]))
    net.train()
    side = max(size_multiple(net), 32)
    x = torch.randn(2, 3, side, side)
    y = net(x)
    assert y.shape == (2, 2, side, side)
    assert not torch.isnan(y).any()
    assert y.min() >= -1.0 and y.max() <= 1.0
    (y * torch.randn_like(y)).sum().backward()
    _check_gradients(net)


@pytest.mark.parametrize("name", list_discriminators())
def test_every_discriminator_returns_scales_of_features_with_logits_last(name):
    torch.manual_seed(0)
    net = create_discriminator(name, 6, **tiny_kwargs(DISCRIMINATORS[name]))
    net.train()
    x = torch.randn(2, 6, 64, 64)
    out = net(x)
    assert isinstance(out, list) and len(out) >= 1
    for scale in out:
        assert isinstance(scale, list) and len(scale) >= 1
        assert all(isinstance(t, torch.Tensor) and t.shape[0] == 2 for t in scale)
        logits = scale[-1]
        assert logits.dim() == 4 and logits.shape[1] == 1
        assert all(t.shape[1] > 1 for t in scale[:-1])  # features before the 1-channel logits
        assert not torch.isnan(logits).any()
    sum(scale[-1].sum() for scale in out).backward()
    _check_gradients(net)


def test_pixel_discriminator_forward_and_gradients():
    net = create_discriminator("patchgan", 6, ndf=4, n_layers=0)
    x = torch.randn(2, 6, 9, 11)
    out = net(x)
    assert len(out) == 1
    assert [t.shape[1] for t in out[0]] == [4, 8, 1]
    assert out[0][-1].shape == (2, 1, 9, 11)
    out[0][-1].sum().backward()
    _check_gradients(net)


# ----------------------------------------------------------------------------------------------------
# PatchGAN receptive fields
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n_layers", "field", "side"), [(0, 1, 8), (1, 16, 32), (3, 70, 128), (5, 286, 512)])
def test_patchgan_receptive_field(n_layers, field, side):
    torch.manual_seed(0)
    net = create_discriminator("patchgan", 3, ndf=2, n_layers=n_layers).double().eval()
    x = torch.randn(1, 3, side, side, dtype=torch.float64, requires_grad=True)
    logits = net(x)[0][-1]
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    nonzero = (x.grad[0].abs().sum(0) != 0)
    rows = nonzero.any(1).nonzero().flatten()
    cols = nonzero.any(0).nonzero().flatten()
    r0, r1, c0, c1 = rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()
    assert (r1 - r0 + 1, c1 - c0 + 1) == (field, field)
    # the region is a full square, not just its bounding box ...
    assert nonzero.sum().item() == field * field
    assert nonzero[r0:r1 + 1, c0:c1 + 1].all()
    # ... and lies inside the image, so padding did not clip it
    if field > 1:
        assert r0 > 0 and c0 > 0 and r1 < side - 1 and c1 < side - 1


def test_basic_patchgan_256_input_gives_30x30_logits():
    net = create_discriminator("patchgan", 6, ndf=2, n_layers=3).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 6, 256, 256))
    assert out[0][-1].shape == (1, 1, 30, 30)


# ----------------------------------------------------------------------------------------------------
# U-Net structure
# ----------------------------------------------------------------------------------------------------

def _count(net: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in net.modules())


@pytest.mark.parametrize(("name", "dropout", "expected"),
                         [("unet_256", True, 3), ("unet_128", True, 2),
                          ("unet_256", False, 0), ("unet_128", False, 0)])
def test_unet_dropout_layers(name, dropout, expected):
    net = create_generator(name, ngf=2, dropout=dropout)
    assert _count(net, nn.Dropout) == expected


def test_unet_256_dropout_sits_in_the_512_channel_levels_next_to_the_innermost():
    ngf = 2
    net = create_generator("unet_256", ngf=ngf, dropout=True)
    blocks = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)]  # outermost first
    assert len(blocks) == 8
    with_dropout = [i + 1 for i, b in enumerate(blocks)
                    if any(isinstance(m, nn.Dropout) for m in b.model.children())]
    assert with_dropout == [5, 6, 7]  # levels 5..num_downs-1
    for level in with_dropout:
        block = blocks[level - 1]
        assert isinstance(block.model[7], nn.Dropout) and block.model[7].p == 0.5
        assert block.model[1].in_channels == block.model[1].out_channels == 8 * ngf


def test_unet_skip_concatenation_is_skip_then_up():
    torch.manual_seed(0)
    net = create_generator("unet", num_downs=5, ngf=4, init=None).eval()  # PyTorch init: O(1) activations
    blocks = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock) and not m.outermost]
    assert len(blocks) == 4
    originals, outputs = {}, {}

    def pre_hook(module, inputs):
        originals[module] = inputs[0].clone()

    def hook(module, inputs, output):
        c = inputs[0].shape[1]
        assert torch.equal(output[:, :c], inputs[0])  # the tensor concatenated first is the block's input
        outputs[module] = output.clone()

    handles = [b.register_forward_pre_hook(pre_hook) for b in blocks]
    handles += [b.register_forward_hook(hook) for b in blocks]
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    for h in handles:
        h.remove()
    assert set(outputs) == set(blocks)
    for block in blocks:
        orig, output = originals[block], outputs[block]
        c = orig.shape[1]
        with torch.no_grad():
            up = block.model(orig.clone())  # eval mode: the up path is deterministic
        assert output.shape[1] == 2 * c == c + up.shape[1]
        # [skip, up]: channels 0..c-1 carry the skip, the rest the up-sampled path
        assert torch.allclose(output[:, c:], up, atol=1e-6)
        assert not torch.allclose(output[:, :c], up, atol=1e-3)
        # as in the reference, the down path's in-place LeakyReLU also rewrites the skip tensor
        assert torch.allclose(output[:, :c], F.leaky_relu(orig, 0.2))


def test_unet_innermost_block_outputs_twice_its_outer_channels():
    ngf = 4
    net = create_generator("unet_256", ngf=ngf).eval()
    innermost = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)][-1]
    shapes = []
    handle = innermost.register_forward_hook(lambda m, i, o: shapes.append((i[0].shape, o.shape)))
    with torch.no_grad():
        net(torch.randn(1, 3, 256, 256))
    handle.remove()
    (in_shape, out_shape), = shapes
    assert in_shape == (1, 8 * ngf, 2, 2)
    assert out_shape == (1, 16 * ngf, 2, 2)  # [skip (8 ngf), up (8 ngf)]
    # the next level's up ConvT takes exactly those channels
    parent = [m for m in net.modules() if isinstance(m, UnetSkipConnectionBlock)][-2]
    assert parent.model[5].in_channels == 16 * ngf


def test_unet_resize_conv_has_no_transposed_convs_and_keeps_shape():
    torch.manual_seed(0)
    net = create_generator("unet", num_downs=4, ngf=4, upsample="resize_conv")
    ref = create_generator("unet", num_downs=4, ngf=4, upsample="transpose")
    assert _count(net, nn.ConvTranspose2d) == 0
    assert _count(ref, nn.ConvTranspose2d) == 4
    assert _count(net, nn.Upsample) == 4
    x = torch.randn(2, 3, 32, 48)
    assert net(x).shape == ref(x).shape == (2, 3, 32, 48)


def test_resnet_resize_conv_has_no_transposed_convs_and_keeps_shape():
    net = create_generator("resnet", n_blocks=1, ngf=4, upsample="resize_conv")
    assert _count(net, nn.ConvTranspose2d) == 0
    assert net(torch.randn(1, 3, 20, 28)).shape == (1, 3, 20, 28)


def test_unet_input_skip_hands_the_full_resolution_input_to_the_head():
    torch.manual_seed(0)
    net = create_generator("unet", 3, 2, num_downs=4, ngf=4, input_skip=True)
    ref = create_generator("unet", 3, 2, num_downs=4, ngf=4)
    # the reference's keys are untouched: the skip adds the head and widens the last up-sampling
    assert set(ref.state_dict()) - set(net.state_dict()) == set()
    assert net.model.model[3].out_channels == 4 and net.head[0].in_channels == 4 + 3
    x = torch.rand(2, 3, 16, 32) * 2 - 1
    assert net(x).shape == (2, 2, 16, 32)
    # a head that copies input channels 0 and 2 (centre tap) returns tanh of them exactly:
    # single pixels of the input reach the output, whatever the U-Net below computes
    with torch.no_grad():
        conv = net.head[0]
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 4 + 0, 1, 1] = 1
        conv.weight[1, 4 + 2, 1, 1] = 1
    torch.testing.assert_close(net(x), torch.tanh(x[:, [0, 2]]), rtol=0, atol=0)
    # and gradients reach the encoder through the widened last up-sampling
    net.zero_grad()
    with torch.no_grad():
        conv.weight[0, 0, 1, 1] = 1
    net(x).sum().backward()
    assert net.model.model[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("num_downs", [3, 4, 5, 6, 7, 8])
def test_unet_num_downs_builds_with_matching_size_multiple(num_downs):
    net = create_generator("unet", 3, 1, num_downs=num_downs, ngf=2)
    assert net.size_multiple == 2 ** num_downs == size_multiple(net)
    assert sum(isinstance(m, UnetSkipConnectionBlock) for m in net.modules()) == num_downs
    side = 2 ** num_downs
    assert net(torch.randn(2, 3, side, side)).shape == (2, 1, side, side)


def test_named_unets_and_resnets_size_multiples():
    assert size_multiple(create_generator("unet_256", ngf=2)) == 256
    assert size_multiple(create_generator("unet_128", ngf=2)) == 128
    assert size_multiple(create_generator("resnet_6blocks", ngf=2)) == 4


@pytest.mark.parametrize(("dropout", "convs"), [(True, (1, 6)), (False, (1, 5))])
def test_resnet_block_keys(dropout, convs):
    net = create_generator("resnet_9blocks", ngf=2, dropout=dropout)
    keys = set(net.state_dict())
    for b in range(10, 19):
        block_convs = {int(k.split(".")[3]) for k in keys if k.startswith(f"model.{b}.conv_block.")}
        assert block_convs == set(convs)
        for i in convs:
            assert isinstance(net.model[b].conv_block[i], nn.Conv2d)
    assert _count(net, nn.Dropout) == (9 if dropout else 0)


# ----------------------------------------------------------------------------------------------------
# Any size: run_padded
# ----------------------------------------------------------------------------------------------------

def test_run_padded_odd_sizes_returns_input_size():
    torch.manual_seed(0)
    net = create_generator("unet", num_downs=5, ngf=4).eval()
    assert size_multiple(net) == 32
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        y = run_padded(net, x)
        # padded at the bottom/right to 64x64 by reflection, then cropped back
        manual = net(F.pad(x, (0, 64 - 53, 0, 64 - 37), mode="reflect"))[..., :37, :53]
    assert y.shape == (1, 3, 37, 53)
    assert torch.equal(y, manual)


def test_run_padded_tiny_image_uses_replication():
    net = create_generator("unet", num_downs=5, ngf=4).eval()
    x = torch.randn(1, 3, 5, 40)  # 5 rows cannot be reflect-padded by 27
    with torch.no_grad():
        y = run_padded(net, x)
        manual = net(F.pad(x, (0, 24, 0, 27), mode="replicate"))[..., :5, :40]
    assert y.shape == (1, 3, 5, 40)
    assert torch.equal(y, manual)


def test_run_padded_is_identity_wrapper_at_the_right_size():
    torch.manual_seed(0)
    net = create_generator("unet", num_downs=5, ngf=4).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(run_padded(net, x), net(x))


# ----------------------------------------------------------------------------------------------------
# Registry errors
# ----------------------------------------------------------------------------------------------------

def test_unknown_generator_name_suggests_closest():
    with pytest.raises(ConfigError, match=r"Did you mean 'unet_256'"):
        create_generator("unet_265")


def test_unknown_generator_kwarg_suggests_closest():
    with pytest.raises(ConfigError, match=r"Did you mean 'ngf'") as info:
        create_generator("unet_256", nfg=4)
    assert "'nfg'" in str(info.value)
    with pytest.raises(ConfigError, match=r"Did you mean 'dropout'"):
        create_generator("resnet_9blocks", dropuot=False)


def test_unknown_discriminator_name_and_kwarg():
    with pytest.raises(ConfigError, match=r"Did you mean 'patchgan'"):
        create_discriminator("patchgn", 6)
    with pytest.raises(ConfigError, match=r"Did you mean 'n_layers'"):
        create_discriminator("patchgan", 6, n_layer=3)


def test_unknown_norm_and_upsample_raise_config_error():
    with pytest.raises(ConfigError, match=r"Did you mean 'batch'"):
        create_generator("unet", num_downs=3, norm="bacth")
    with pytest.raises(ConfigError, match=r"Did you mean 'resize_conv'"):
        create_generator("unet", num_downs=3, upsample="resize_cnv")


# ----------------------------------------------------------------------------------------------------
# Reference key layout
# ----------------------------------------------------------------------------------------------------

def test_unet_256_reference_keys():
    num_downs = 8
    keys = set(create_generator("unet_256", ngf=2).state_dict())
    for k in ["model.model.0.weight", "model.model.1.model.1.weight", "model.model.1.model.2.weight",
              "model.model.1.model.2.running_mean", "model.model.1.model.2.num_batches_tracked",
              "model.model.1.model.5.weight", "model.model.1.model.6.running_var",
              "model.model.3.weight", "model.model.3.bias"]:
        assert k in keys, k
    # BN U-Net: the outer down conv and every conv before a norm have no bias
    assert "model.model.0.bias" not in keys
    assert "model.model.1.model.1.bias" not in keys
    # level k >= 2 sits at model.model.1 followed by (k - 2) times .model.3
    innermost = "model.model.1" + ".model.3" * (num_downs - 2)
    for k in [".model.1.weight", ".model.3.weight", ".model.4.weight", ".model.4.bias",
              ".model.4.running_mean"]:
        assert innermost + k in keys, innermost + k
    # nothing nests deeper than the innermost block, and the innermost block has no submodule
    assert not any(k.startswith(innermost + ".model.3.model") for k in keys)
    inner_layers = {k[len(innermost) + 1:].split(".")[1] for k in keys if k.startswith(innermost + ".")}
    assert inner_layers == {"1", "3", "4"}


def test_unet_256_instance_norm_keys_have_biases_and_no_norm_buffers():
    keys = set(create_generator("unet_256", ngf=2, norm="instance").state_dict())
    assert "model.model.1.model.1.bias" in keys
    assert not any("running_mean" in k for k in keys)
    assert "model.model.1.model.2.weight" not in keys


def test_resnet_9blocks_reference_keys():
    keys = set(create_generator("resnet_9blocks", ngf=2, dropout=False).state_dict())
    for prefix in ["model.1", "model.4", "model.7", "model.10.conv_block.1", "model.10.conv_block.5",
                   "model.18.conv_block.1", "model.18.conv_block.5", "model.19", "model.22", "model.26"]:
        assert f"{prefix}.weight" in keys, prefix
        assert f"{prefix}.bias" in keys, prefix  # instance norm: every conv has a bias
    top = {int(k.split(".")[1]) for k in keys}
    assert top == {1, 4, 7, *range(10, 19), 19, 22, 26}
    assert "model.19.weight" in keys and tuple(
        create_generator("resnet_9blocks", ngf=2).state_dict()["model.19.weight"].shape) == (8, 4, 3, 3)


def test_basic_discriminator_reference_keys():
    net = create_discriminator("patchgan", 6, ndf=2, n_layers=3, norm="batch")
    sd = net.state_dict()
    convs = {int(k.split(".")[1]) for k in sd if k.endswith(".weight") and sd[k].dim() == 4}
    norms = {int(k.split(".")[1]) for k in sd if k.endswith("running_mean")}
    assert convs == {0, 2, 5, 8, 11}
    assert norms == {3, 6, 9}
    assert "model.0.bias" in sd and "model.11.bias" in sd
    assert "model.2.bias" not in sd
    assert tuple(sd["model.0.weight"].shape) == (2, 6, 4, 4)
    assert tuple(sd["model.8.weight"].shape) == (16, 8, 4, 4)
    assert tuple(sd["model.11.weight"].shape) == (1, 16, 4, 4)


def test_created_networks_record_their_arch():
    net = create_generator("unet", 3, 1, num_downs=4, ngf=4)
    assert net.arch == {"name": "unet", "in_channels": 3, "out_channels": 1,
                        "kwargs": {"num_downs": 4, "ngf": 4}}
    d = create_discriminator("patchgan", 4, n_layers=2)
    assert d.arch == {"name": "patchgan", "in_channels": 4, "kwargs": {"n_layers": 2}}
