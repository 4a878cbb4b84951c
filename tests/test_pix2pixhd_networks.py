"""pix2pixHD networks (global, local, multiscale D, feature encoder) and the CRN baseline.

Parameter counts and key layouts come from REFERENCE.md; the reference state_dicts below
are built by hand from that description, independently of the library's modules. Full-size
networks are built on the meta device (shapes only, no memory, no initialisation cost).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pix2pix.errors import CheckpointError, ConfigError, DataError
from pix2pix.io.reference import import_reference
from pix2pix.models import size_multiple
from pix2pix.models.crn import CascadedRefinementNetwork, crn_widths
from pix2pix.models.encoder import FeatureEncoder, instance_average, instance_mean_features
from pix2pix.models.pix2pixhd import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator
from pix2pix.registry import create_discriminator, create_generator


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def meta_generator(name: str, in_ch: int, out_ch: int, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_generator(name, in_ch, out_ch, init=None, **kwargs)


def meta_discriminator(name: str, in_ch: int, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_discriminator(name, in_ch, init=None, **kwargs)


def pool(x: torch.Tensor) -> torch.Tensor:
    """The reference pyramid step, written with the functional API."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


# ----------------------------------------------------------------------------------------------------
# Parameter counts (REFERENCE.md)
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "in_ch", "out_ch", "kwargs", "expected"),
    [
        ("global", 36, 3, {}, 182_546_755),
        ("local", 36, 3, {"ngf": 32}, 182_857_059),
        ("encoder", 3, 3, {}, 788_803),
    ],
)
def test_generator_parameter_counts(name, in_ch, out_ch, kwargs, expected):
    assert n_params(meta_generator(name, in_ch, out_ch, **kwargs)) == expected


@pytest.mark.parametrize(("num_D", "expected"), [(1, 2_801_601), (2, 5_603_202), (3, 8_404_803)])
def test_multiscale_parameter_counts(num_D, expected):
    assert n_params(meta_discriminator("multiscale", 39, num_D=num_D)) == expected


def test_defaults_match_the_reference_recipe():
    g = meta_generator("global", 36, 3)
    assert isinstance(g, GlobalGenerator) and g.size_multiple == 16
    loc = meta_generator("local", 36, 3)
    assert isinstance(loc, LocalEnhancer) and loc.size_multiple == 32
    e = meta_generator("encoder", 3, 3)
    assert isinstance(e, FeatureEncoder) and e.size_multiple == 16
    d = meta_discriminator("multiscale", 39)
    assert isinstance(d, MultiscaleDiscriminator) and d.num_D == 2 and d.n_layers == 3
    c = meta_generator("crn", 36, 3)
    assert isinstance(c, CascadedRefinementNetwork) and c.size_multiple == 64 and c.n_modules == 7


# ----------------------------------------------------------------------------------------------------
# Key layouts, hand-written from REFERENCE.md
# ----------------------------------------------------------------------------------------------------

WB = ("weight", "bias")


def global_keys(prefix: str = "model", final: bool = True) -> set[str]:
    convs = [1, 4, 7, 10, 13, 25, 28, 31, 34] + ([38] if final else [])
    keys = {f"{prefix}.{i}.{p}" for i in convs for p in WB}
    keys |= {f"{prefix}.{b}.conv_block.{c}.{p}" for b in range(16, 25) for c in (1, 5) for p in WB}
    return keys


def test_global_keys_and_shapes():
    sd = meta_generator("global", 36, 3).state_dict()
    assert set(sd) == global_keys()
    assert tuple(sd["model.1.weight"].shape) == (64, 36, 7, 7)
    assert tuple(sd["model.13.weight"].shape) == (1024, 512, 3, 3)
    assert tuple(sd["model.16.conv_block.1.weight"].shape) == (1024, 1024, 3, 3)
    assert tuple(sd["model.24.conv_block.5.bias"].shape) == (1024,)
    assert tuple(sd["model.25.weight"].shape) == (1024, 512, 3, 3)  # ConvTranspose2d: [in, out, k, k]
    assert tuple(sd["model.34.weight"].shape) == (128, 64, 3, 3)
    assert tuple(sd["model.38.weight"].shape) == (3, 64, 7, 7)


def test_local_keys_and_shapes():
    sd = meta_generator("local", 36, 3, ngf=32).state_dict()
    expected = global_keys(final=False)
    expected |= {f"model1_1.{i}.{p}" for i in (1, 4) for p in WB}
    expected |= {f"model1_2.{b}.conv_block.{c}.{p}" for b in (0, 1, 2) for c in (1, 5) for p in WB}
    expected |= {f"model1_2.{i}.{p}" for i in (3, 7) for p in WB}
    assert set(sd) == expected
    assert "model.38.weight" not in sd
    assert tuple(sd["model.1.weight"].shape) == (64, 36, 7, 7)  # global part at ngf * 2
    assert tuple(sd["model1_1.1.weight"].shape) == (32, 36, 7, 7)
    assert tuple(sd["model1_1.4.weight"].shape) == (64, 32, 3, 3)
    assert tuple(sd["model1_2.0.conv_block.1.weight"].shape) == (64, 64, 3, 3)
    assert tuple(sd["model1_2.3.weight"].shape) == (64, 32, 3, 3)
    assert tuple(sd["model1_2.7.weight"].shape) == (3, 32, 7, 7)


def test_local_with_two_enhancers_keys():
    net = meta_generator("local", 3, 3, ngf=2, n_local_enhancers=2)
    sd = net.state_dict()
    assert {k.split(".")[0] for k in sd} == {"model", "model1_1", "model1_2", "model2_1", "model2_2"}
    assert tuple(sd["model.1.weight"].shape) == (8, 3, 7, 7)  # ngf * 2^2
    assert tuple(sd["model1_1.1.weight"].shape) == (4, 3, 7, 7)  # g = ngf * 2^(N - 1)
    assert tuple(sd["model2_1.1.weight"].shape) == (2, 3, 7, 7)  # g = ngf
    assert "model1_2.7.weight" not in sd  # only the outermost enhancer has the output layer
    assert tuple(sd["model2_2.7.weight"].shape) == (3, 2, 7, 7)
    assert net.size_multiple == 2 ** (4 + 2)


def test_encoder_keys_and_shapes():
    sd = meta_generator("encoder", 3, 3).state_dict()
    assert set(sd) == {f"model.{i}.{p}" for i in (1, 4, 7, 10, 13, 16, 19, 22, 25, 29) for p in WB}
    assert tuple(sd["model.1.weight"].shape) == (16, 3, 7, 7)
    assert tuple(sd["model.13.weight"].shape) == (256, 128, 3, 3)
    assert tuple(sd["model.16.weight"].shape) == (256, 128, 3, 3)
    assert tuple(sd["model.29.weight"].shape) == (3, 16, 7, 7)


@pytest.mark.parametrize("num_D", [1, 2, 3])
def test_multiscale_keys_and_shapes(num_D):
    sd = meta_discriminator("multiscale", 39, num_D=num_D).state_dict()
    assert set(sd) == {f"scale{i}_layer{j}.0.{p}" for i in range(num_D) for j in range(5) for p in WB}
    for i in range(num_D):
        assert tuple(sd[f"scale{i}_layer0.0.weight"].shape) == (64, 39, 4, 4)
        assert tuple(sd[f"scale{i}_layer1.0.weight"].shape) == (128, 64, 4, 4)
        assert tuple(sd[f"scale{i}_layer2.0.weight"].shape) == (256, 128, 4, 4)
        assert tuple(sd[f"scale{i}_layer3.0.weight"].shape) == (512, 256, 4, 4)
        assert tuple(sd[f"scale{i}_layer4.0.weight"].shape) == (1, 512, 4, 4)


def test_multiscale_convs_use_padding_2_and_the_512_cap():
    d = meta_discriminator("multiscale", 6, ndf=128, n_layers=4, num_D=1)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.padding == (2, 2) and c.kernel_size == (4, 4) for c in convs)
    assert [c.stride[0] for c in convs] == [2, 2, 2, 2, 1, 1]
    assert [c.out_channels for c in convs] == [128, 256, 512, 512, 512, 1]  # min(nf * 2, 512), as the reference


def test_every_conv_has_a_bias():
    for net in (meta_generator("global", 3, 3), meta_generator("local", 3, 3), meta_generator("encoder", 3, 3),
                meta_discriminator("multiscale", 6)):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert convs and all(c.bias is not None for c in convs)


# ----------------------------------------------------------------------------------------------------
# Forward shapes at tiny widths
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("upsample", ["transpose", "resize_conv"])
def test_global_forward_non_square(upsample):
    net = create_generator("global", 5, 3, ngf=4, n_downsample=2, n_blocks=1, upsample=upsample)
    assert size_multiple(net) == 4
    y = net(torch.randn(2, 5, 16, 24))
    assert y.shape == (2, 3, 16, 24)
    assert y.abs().max() <= 1


@pytest.mark.parametrize(("n_enh", "size"), [(1, (16, 24)), (2, (32, 48))])
def test_local_forward_non_square(n_enh, size):
    net = create_generator("local", 4, 3, ngf=4, n_downsample_global=2, n_blocks_global=1,
                           n_local_enhancers=n_enh, n_blocks_local=1)
    assert size_multiple(net) == 2 ** (2 + n_enh)
    y = net(torch.randn(2, 4, *size))
    assert y.shape == (2, 3, *size)
    assert y.abs().max() <= 1


def test_encoder_forward_non_square():
    net = create_generator("encoder", 3, 3, ngf=4, n_downsample=2)
    x = torch.randn(2, 3, 12, 20)
    assert net(x).shape == (2, 3, 12, 20)
    assert net(x, torch.zeros(2, 1, 12, 20)).shape == (2, 3, 12, 20)


def _patch_side(side: int, n_layers: int) -> int:
    for _ in range(n_layers):
        side = side // 2 + 1  # k4 s2 p2
    return side + 2  # two k4 s1 p2 convs each add one


@pytest.mark.parametrize(("num_D", "n_layers"), [(1, 3), (3, 3), (2, 2)])
def test_multiscale_logits_shapes_non_square(num_D, n_layers):
    d = create_discriminator("multiscale", 6, ndf=4, n_layers=n_layers, num_D=num_D)
    out = d(torch.randn(2, 6, 40, 56))
    assert len(out) == num_D
    h, w = 40, 56
    for scale in out:
        assert len(scale) == n_layers + 2
        assert scale[-1].shape == (2, 1, _patch_side(h, n_layers), _patch_side(w, n_layers))
        assert all(t.shape[1] > 1 for t in scale[:-1])
        h, w = -(-h // 2), -(-w // 2)  # AvgPool2d(3, 2, 1): ceil(side / 2)


# ----------------------------------------------------------------------------------------------------
# LocalEnhancer: composition, enhancer parameters, loading a global generator
# ----------------------------------------------------------------------------------------------------

def tiny_local(n_enh: int = 1, ngf: int = 2) -> LocalEnhancer:
    torch.manual_seed(0)
    return create_generator("local", 3, 3, ngf=ngf, n_downsample_global=2, n_blocks_global=1,
                            n_local_enhancers=n_enh, n_blocks_local=1, init=None).eval()


def test_local_forward_equals_hand_composition():
    net = tiny_local(1)
    x = torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        g = net.model(pool(x))
        assert g.shape == (2, 4, 8, 12)  # global features at half resolution, 2 * ngf channels
        expected = net.model1_2(net.model1_1(x) + g)
        assert torch.allclose(net(x), expected, atol=1e-6)


def test_local_two_enhancers_forward_equals_hand_composition():
    net = tiny_local(2)
    x = torch.randn(1, 3, 64, 32)  # the bottleneck must keep 2 pixels for the blocks' reflection padding
    with torch.no_grad():
        x1 = pool(x)
        x2 = pool(x1)
        inner = net.model1_2(net.model1_1(x1) + net.model(x2))
        expected = net.model2_2(net.model2_1(x) + inner)
        assert torch.allclose(net(x), expected, atol=1e-6)


@pytest.mark.parametrize("n_enh", [1, 2])
def test_enhancer_parameters_are_exactly_the_outermost_enhancer(n_enh):
    net = tiny_local(n_enh)
    params = net.enhancer_parameters()
    expected = [p for name, p in net.named_parameters() if name.startswith(f"model{n_enh}_")]
    assert params and len(params) == len(expected)
    assert {id(p) for p in params} == {id(p) for p in expected}
    outer = [getattr(net, f"model{n_enh}_1"), getattr(net, f"model{n_enh}_2")]
    assert sum(p.numel() for p in params) == sum(n_params(m) for m in outer)
    assert not {id(p) for p in params} & {id(p) for p in net.model.parameters()}


def test_load_global_state_moves_a_global_generator_into_the_local_model():
    torch.manual_seed(1)
    glob = create_generator("global", 3, 3, ngf=4, n_downsample=2, n_blocks=1, init=None).eval()
    net = tiny_local(1, ngf=2)  # its global part is built with ngf * 2 = 4
    net.load_global_state(glob.state_dict())
    own = net.state_dict()
    for k, v in glob.state_dict().items():
        if not k.startswith(f"model.{len(glob.model) - 2}."):  # the dropped output conv
            assert torch.equal(own[k], v), k
    x = torch.randn(1, 3, 8, 12)
    with torch.no_grad():
        assert torch.equal(net.model(x), glob.model[:-3](x))


def test_load_global_state_accepts_a_module_prefix_and_a_file(tmp_path):
    from pix2pix.io.reference import load_reference_state

    glob = create_generator("global", 3, 3, ngf=4, n_downsample=2, n_blocks=1)
    net = tiny_local(1, ngf=2)
    net.load_global_state({f"module.{k}": v for k, v in glob.state_dict().items()})
    path = tmp_path / "latest_net_G.pth"
    torch.save(glob.state_dict(), path)
    net2 = tiny_local(1, ngf=2)
    net2.load_global_state(load_reference_state(path), str(path))  # a file: read by pix2pix.io, weights only
    assert torch.equal(net2.state_dict()["model.1.weight"], glob.state_dict()["model.1.weight"])


def test_load_global_state_is_strict():
    net = tiny_local(1, ngf=2)
    wrong_ngf = create_generator("global", 3, 3, ngf=8, n_downsample=2, n_blocks=1).state_dict()
    with pytest.raises(CheckpointError, match=r"shape mismatches") as info:
        net.load_global_state(wrong_ngf)
    assert "model.1.weight: checkpoint (8, 3, 7, 7) vs model (4, 3, 7, 7)" in str(info.value)
    more_blocks = create_generator("global", 3, 3, ngf=4, n_downsample=2, n_blocks=2).state_dict()
    with pytest.raises(CheckpointError, match=r"unexpected keys"):
        net.load_global_state(more_blocks)
    state = create_generator("global", 3, 3, ngf=4, n_downsample=2, n_blocks=1).state_dict()
    del state["model.4.bias"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): model\.4\.bias"):
        net.load_global_state(state)


# ----------------------------------------------------------------------------------------------------
# MultiscaleDiscriminator: which scale runs where
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_D", [2, 3])
def test_multiscale_runs_the_last_scale_at_full_resolution(num_D):
    torch.manual_seed(0)
    d = create_discriminator("multiscale", 6, ndf=4, n_layers=2, num_D=num_D, init=None).eval()
    x = torch.randn(2, 6, 32, 24)
    seen = {}
    handles = [getattr(d, f"scale{i}_layer0").register_forward_hook(
        lambda m, inp, out, i=i: seen.__setitem__(i, inp[0].shape[-2:])) for i in range(num_D)]
    with torch.no_grad():
        out = d(x)
    for h in handles:
        h.remove()
    assert seen[num_D - 1] == (32, 24)
    assert seen[0] == (32 // 2 ** (num_D - 1), 24 // 2 ** (num_D - 1))
    # the same thing by hand: output k comes from the layers of scale num_D-1-k on x pooled k times
    xk = x
    with torch.no_grad():
        for k in range(num_D):
            h = xk
            for j in range(d.n_layers + 2):
                h = getattr(d, f"scale{num_D - 1 - k}_layer{j}")(h)
                assert torch.equal(out[k][j], h)
            xk = pool(xk)


def test_multiscale_downsampling_excludes_padding_from_the_average():
    d = create_discriminator("multiscale", 1, ndf=2, n_layers=1, num_D=2)
    assert isinstance(d.downsample, nn.AvgPool2d) and d.downsample.count_include_pad is False
    inputs = []
    handle = d.scale0_layer0.register_forward_hook(lambda m, inp, out: inputs.append(inp[0]))
    with torch.no_grad():
        d(torch.ones(1, 1, 9, 7))
    handle.remove()
    # with count_include_pad=True the border of the down-sampled ones would be 4/9 or 6/9
    assert inputs[0].shape == (1, 1, 5, 4)
    assert torch.equal(inputs[0], torch.ones(1, 1, 5, 4))


def test_multiscale_use_sigmoid_keeps_keys():
    plain = create_discriminator("multiscale", 3, ndf=2, num_D=1)
    sig = create_discriminator("multiscale", 3, ndf=2, num_D=1, use_sigmoid=True)
    assert set(plain.state_dict()) == set(sig.state_dict())
    out = sig(torch.randn(1, 3, 16, 16))[0][-1]
    assert out.min() >= 0 and out.max() <= 1


# ----------------------------------------------------------------------------------------------------
# Feature encoder: instance-wise averaging
# ----------------------------------------------------------------------------------------------------

def three_instance_map() -> torch.Tensor:
    """2 x 1 x 8 x 12: item 0 has ids 0, 7, 26001; item 1 has 0 and 26001 in other places (no 7)."""
    inst = torch.zeros(2, 1, 8, 12, dtype=torch.long)
    inst[0, 0, :, 6:] = 7
    inst[0, 0, 5:, :4] = 26001
    inst[1, 0, 2:6, 3:9] = 26001
    return inst


def test_encoder_output_is_the_instance_mean_of_the_raw_output():
    torch.manual_seed(0)
    enc = create_generator("encoder", 3, 3, ngf=4, n_downsample=2, init=None).eval()
    x = torch.randn(2, 3, 8, 12)
    inst = three_instance_map()
    with torch.no_grad():
        raw = enc(x)
        out = enc(x, inst)
    assert out.shape == raw.shape == (2, 3, 8, 12)
    assert not torch.allclose(raw, out)
    regions = 0
    for b in range(2):
        for i in inst[b].unique().tolist():
            mask = inst[b, 0] == i
            inside = out[b][:, mask]  # [C, n]
            mean = raw[b][:, mask].mean(1, keepdim=True)
            assert torch.allclose(inside, mean.expand_as(inside), atol=1e-6)
            regions += 1
    assert regions == 5
    # float maps and [B, H, W] maps give the same result
    with torch.no_grad():
        assert torch.allclose(enc(x, inst.float()), out)
        assert torch.allclose(enc(x, inst[:, 0]), out)


def test_instance_average_is_differentiable():
    feats = torch.randn(2, 3, 8, 12, requires_grad=True)
    inst = three_instance_map()
    weights = torch.randn(2, 3, 8, 12)
    (instance_average(feats, inst) * weights).sum().backward()
    # d/dfeat of sum(w * mean) is the mean of w over the instance, for every pixel of it
    for b in range(2):
        for i in inst[b].unique().tolist():
            mask = inst[b, 0] == i
            expected = weights[b][:, mask].mean(1, keepdim=True).expand(3, int(mask.sum()))
            assert torch.allclose(feats.grad[b][:, mask], expected, atol=1e-6)


def test_instance_mean_features_lists_each_present_instance_once():
    feats = torch.randn(2, 3, 8, 12)
    inst = three_instance_map()
    table = instance_mean_features(feats, inst)
    rows = list(zip(table.batch_index.tolist(), table.instance_id.tolist(), strict=True))
    assert rows == [(0, 0), (0, 7), (0, 26001), (1, 0), (1, 26001)]
    assert table.features.shape == (5, 3)
    for r, (b, i) in enumerate(rows):
        mask = inst[b, 0] == i
        assert table.pixel_count[r].item() == int(mask.sum())
        assert torch.allclose(table.features[r], feats[b][:, mask].mean(1), atol=1e-6)
    assert int(table.pixel_count[table.batch_index == 0].sum()) == 8 * 12


def test_instance_map_of_the_wrong_size_is_refused():
    with pytest.raises(DataError, match=r"instance map"):
        instance_average(torch.randn(1, 3, 8, 8), torch.zeros(1, 1, 8, 4))


# ----------------------------------------------------------------------------------------------------
# CRN
# ----------------------------------------------------------------------------------------------------

def test_crn_width_schedule():
    assert crn_widths(1024, 7) == [1024] * 5 + [512, 512]
    assert crn_widths(1024, 9) == [1024] * 5 + [512, 512, 128, 32]
    assert crn_widths(4, 9) == [4] * 5 + [2, 2, 1, 1]
    net = create_generator("crn", 3, 3, ngf=4, n_modules=3, widths=[5, 3, 2])
    assert [m[0].out_channels for m in net.refine] == [5, 3, 2]
    with pytest.raises(ConfigError, match=r"widths"):
        create_generator("crn", 3, 3, n_modules=3, widths=[5, 3])


def test_crn_forward_backward_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = create_generator("crn", 5, 3, ngf=4, n_modules=3)
    y = net(torch.randn(2, 5, 8, 12))
    assert y.shape == (2, 3, 8, 12)
    assert y.abs().max() <= 1
    (y * torch.randn_like(y)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("size", [(16, 16), (8, 24)])
def test_crn_works_at_any_multiple_of_its_size_multiple(size):
    net = create_generator("crn", 3, 2, ngf=4, n_modules=3, label_downsample="nearest")
    assert size_multiple(net) == 4
    assert net(torch.randn(1, 3, *size)).shape == (1, 2, *size)


def test_crn_coarsest_module_runs_at_input_over_size_multiple():
    net = create_generator("crn", 2, 3, ngf=2, n_modules=6)  # 128 x 256 -> 4 x 8, as in the paper's 256p
    shapes = []
    handle = net.refine[0].register_forward_hook(lambda m, inp, out: shapes.append(inp[0].shape))
    with torch.no_grad():
        net(torch.randn(1, 2, 128, 256))
    handle.remove()
    assert shapes == [(1, 2, 4, 8)]
    with pytest.raises(DataError, match=r"multiples of 32"):
        net(torch.randn(1, 2, 48, 64))


# ----------------------------------------------------------------------------------------------------
# Reference checkpoints built by hand
# ----------------------------------------------------------------------------------------------------

class Tree:
    def __init__(self, seed: int = 0) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def conv(self, key: str, out_ch: int, in_ch: int, k: int) -> None:
        self.state[f"{key}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=self.g)
        self.state[f"{key}.bias"] = torch.randn(out_ch, generator=self.g)

    def convt(self, key: str, in_ch: int, out_ch: int, k: int) -> None:
        self.state[f"{key}.weight"] = torch.randn(in_ch, out_ch, k, k, generator=self.g)
        self.state[f"{key}.bias"] = torch.randn(out_ch, generator=self.g)


def reference_global(in_ch: int = 5, out_ch: int = 3, ngf: int = 2, n_down: int = 4, n_blocks: int = 9,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """GlobalGenerator: stem conv model.1, downs every 3, blocks one index each, ups every 3, conv after a pad."""
    t = Tree(seed)
    t.conv("model.1", ngf, in_ch, 7)
    i = 4
    for d in range(n_down):
        t.conv(f"model.{i}", ngf * 2 ** (d + 1), ngf * 2 ** d, 3)
        i += 3
    dim = ngf * 2 ** n_down
    for _ in range(n_blocks):
        t.conv(f"model.{i}.conv_block.1", dim, dim, 3)
        t.conv(f"model.{i}.conv_block.5", dim, dim, 3)
        i += 1
    for u in range(n_down):
        mult = 2 ** (n_down - u)
        t.convt(f"model.{i}", ngf * mult, ngf * mult // 2, 3)
        i += 3
    t.conv(f"model.{i + 1}", out_ch, ngf, 7)
    return t.state


def reference_multiscale(in_ch: int = 6, ndf: int = 2, num_D: int = 2, flat: bool = False,
                         seed: int = 0) -> dict[str, torch.Tensor]:
    """n_layers 3; getIntermFeat: scale{i}_layer{j}.0; flat (--no_ganFeat_loss): layer{i}.{0,2,5,8,11}."""
    t = Tree(seed)
    chans = [(ndf, in_ch), (2 * ndf, ndf), (4 * ndf, 2 * ndf), (8 * ndf, 4 * ndf), (1, 8 * ndf)]
    for i in range(num_D):
        for j, (o, c) in enumerate(chans):
            t.conv(f"layer{i}.{[0, 2, 5, 8, 11][j]}" if flat else f"scale{i}_layer{j}.0", o, c, 4)
    return t.state


def assert_loaded(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = net.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k


def test_reference_global_loads_exactly():
    state = reference_global(ngf=2)
    assert "model.38.weight" in state and "model.24.conv_block.5.bias" in state
    net = import_reference(state, "global", in_channels=5, ngf=2)
    assert isinstance(net, GlobalGenerator) and net.reference_kind == "generator" and not net.training
    assert_loaded(net, state)
    assert net(torch.randn(1, 5, 32, 48)).shape == (1, 3, 32, 48)


def test_reference_global_with_wrong_ngf_lists_shape_mismatches():
    with pytest.raises(CheckpointError, match=r"shape mismatches") as info:
        import_reference(reference_global(ngf=2), "global", in_channels=5, ngf=4)
    msg = str(info.value)
    assert "model.1.weight: checkpoint (2, 5, 7, 7) vs model (4, 5, 7, 7)" in msg
    assert "missing keys" not in msg and "unexpected keys" not in msg


def test_reference_local_and_encoder_load():
    g = reference_global(ngf=4, n_down=2, n_blocks=1)
    t = Tree(1)
    t.conv("model1_1.1", 2, 5, 7)
    t.conv("model1_1.4", 4, 2, 3)
    for b in range(3):
        t.conv(f"model1_2.{b}.conv_block.1", 4, 4, 3)
        t.conv(f"model1_2.{b}.conv_block.5", 4, 4, 3)
    t.convt("model1_2.3", 4, 2, 3)
    t.conv("model1_2.7", 3, 2, 7)
    state = {k: v for k, v in g.items() if not k.startswith("model.18.")} | t.state  # drop G1's output conv
    net = import_reference(state, "local", in_channels=5, ngf=2, n_downsample_global=2, n_blocks_global=1)
    assert_loaded(net, state)

    e = Tree(2)
    e.conv("model.1", 4, 3, 7)
    e.conv("model.4", 8, 4, 3)
    e.conv("model.7", 16, 8, 3)
    e.convt("model.10", 16, 8, 3)
    e.convt("model.13", 8, 4, 3)
    e.conv("model.17", 3, 4, 7)
    enc = import_reference(e.state, "encoder", ngf=4, n_downsample=2)
    assert isinstance(enc, FeatureEncoder)
    assert_loaded(enc, e.state)


def test_reference_multiscale_loads_exactly():
    state = reference_multiscale(ndf=2, num_D=2)
    d = import_reference(state, "multiscale", in_channels=6, ndf=2)
    assert isinstance(d, MultiscaleDiscriminator) and d.reference_kind == "discriminator"
    assert_loaded(d, state)
    assert len(d(torch.randn(1, 6, 32, 32))) == 2


def test_reference_multiscale_num_D_is_read_from_the_keys():
    state = reference_multiscale(ndf=2, num_D=3)
    d = import_reference(state, "multiscale", in_channels=6, ndf=2)
    assert d.num_D == 3 and d.arch["kwargs"]["num_D"] == 3
    assert_loaded(d, state)
    with pytest.raises(CheckpointError, match=r"unexpected keys"):
        import_reference(state, "multiscale", in_channels=6, ndf=2, num_D=2)


def test_reference_multiscale_flat_layout_is_renamed():
    flat = reference_multiscale(ndf=2, num_D=2, flat=True)
    nested = reference_multiscale(ndf=2, num_D=2, flat=False)
    assert "layer1.11.weight" in flat and set(flat).isdisjoint(nested)
    d = import_reference(flat, "multiscale", in_channels=6, ndf=2)
    assert_loaded(d, nested)  # same random tensors in the same order, under the nested names
