"""Importing checkpoints laid out as the reference code writes them (pytorch-CycleGAN-and-pix2pix).

The reference state_dicts are built by hand from the key and shape description in
REFERENCE.md, independently of this library's modules.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

import pix2pix
from pix2pix.cli.main import main
from pix2pix.errors import CheckpointError
from pix2pix.io.reference import import_reference
from pix2pix.models.patchgan import NLayerDiscriminator, PixelDiscriminator

# ----------------------------------------------------------------------------------------------------
# Hand-built reference trees
# ----------------------------------------------------------------------------------------------------

class Tree:
    """An ordered state_dict of random tensors with given shapes."""

    def __init__(self, seed: int = 0) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def conv(self, key: str, out_ch: int, in_ch: int, k: int, bias: bool) -> None:
        self.state[f"{key}.weight"] = torch.randn(out_ch, in_ch, k, k, generator=self.g)
        if bias:
            self.state[f"{key}.bias"] = torch.randn(out_ch, generator=self.g)

    def convt(self, key: str, in_ch: int, out_ch: int, k: int, bias: bool) -> None:
        # ConvTranspose2d weights are [in, out, k, k]
        self.state[f"{key}.weight"] = torch.randn(in_ch, out_ch, k, k, generator=self.g)
        if bias:
            self.state[f"{key}.bias"] = torch.randn(out_ch, generator=self.g)

    def norm(self, key: str, ch: int, norm: str, legacy_in_stats: bool = False) -> None:
        if norm == "batch":
            self.state[f"{key}.weight"] = torch.rand(ch, generator=self.g) + 0.5
            self.state[f"{key}.bias"] = torch.randn(ch, generator=self.g)
            self.state[f"{key}.running_mean"] = torch.randn(ch, generator=self.g)
            self.state[f"{key}.running_var"] = torch.rand(ch, generator=self.g) + 0.5
            self.state[f"{key}.num_batches_tracked"] = torch.tensor(1234, dtype=torch.long)
        elif norm == "instance" and legacy_in_stats:  # PyTorch < 0.4 saved these for InstanceNorm2d
            self.state[f"{key}.running_mean"] = torch.zeros(ch)
            self.state[f"{key}.running_var"] = torch.ones(ch)


def reference_unet(in_ch: int = 3, out_ch: int = 3, ngf: int = 4, num_downs: int = 8, norm: str = "batch",
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """UnetGenerator keys: level 1 is `model.model`, level k >= 2 `model.model.1` + (k - 2) x `.model.3`."""
    t = Tree(seed)
    bias = norm == "instance"

    def inner(k: int) -> int:
        return ngf * min(2 ** (k - 1), 8)

    def outer(k: int) -> int:
        return ngf * min(2 ** (k - 2), 8)

    # outermost: [downconv, submodule, uprelu, upconv (bias), tanh]
    t.conv("model.model.0", ngf, in_ch, 4, bias)
    for k in range(2, num_downs + 1):
        p = "model.model.1" + ".model.3" * (k - 2) + ".model"
        if k < num_downs:  # [lrelu, downconv, downnorm, sub, relu, upconv, upnorm, (dropout)]
            t.conv(f"{p}.1", inner(k), outer(k), 4, bias)
            t.norm(f"{p}.2", inner(k), norm)
            t.convt(f"{p}.5", 2 * inner(k), outer(k), 4, bias)
            t.norm(f"{p}.6", outer(k), norm)
        else:  # innermost: [lrelu, downconv, relu, upconv, upnorm]
            t.conv(f"{p}.1", inner(k), outer(k), 4, bias)
            t.convt(f"{p}.3", inner(k), outer(k), 4, bias)
            t.norm(f"{p}.4", outer(k), norm)
    t.convt("model.model.3", 2 * ngf, out_ch, 4, True)
    return t.state


def reference_resnet(in_ch: int = 3, out_ch: int = 3, ngf: int = 4, n_blocks: int = 9, norm: str = "instance",
                     dropout: bool = False, legacy_in_stats: bool = False,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    t = Tree(seed)
    bias = norm == "instance"
    t.conv("model.1", ngf, in_ch, 7, bias)
    t.norm("model.2", ngf, norm, legacy_in_stats)
    t.conv("model.4", 2 * ngf, ngf, 3, bias)
    t.norm("model.5", 2 * ngf, norm, legacy_in_stats)
    t.conv("model.7", 4 * ngf, 2 * ngf, 3, bias)
    t.norm("model.8", 4 * ngf, norm, legacy_in_stats)
    second = 6 if dropout else 5
    for b in range(10, 10 + n_blocks):
        t.conv(f"model.{b}.conv_block.1", 4 * ngf, 4 * ngf, 3, bias)
        t.norm(f"model.{b}.conv_block.2", 4 * ngf, norm, legacy_in_stats)
        t.conv(f"model.{b}.conv_block.{second}", 4 * ngf, 4 * ngf, 3, bias)
        t.norm(f"model.{b}.conv_block.{second + 1}", 4 * ngf, norm, legacy_in_stats)
    u = 10 + n_blocks
    t.convt(f"model.{u}", 4 * ngf, 2 * ngf, 3, bias)
    t.norm(f"model.{u + 1}", 2 * ngf, norm, legacy_in_stats)
    t.convt(f"model.{u + 3}", 2 * ngf, ngf, 3, bias)
    t.norm(f"model.{u + 4}", ngf, norm, legacy_in_stats)
    t.conv(f"model.{u + 7}", out_ch, ngf, 7, True)
    return t.state


def reference_basic_d(in_ch: int = 6, ndf: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """NLayerDiscriminator(n_layers=3, BN): convs model.{0,2,5,8,11}, norms model.{3,6,9}."""
    t = Tree(seed)
    t.conv("model.0", ndf, in_ch, 4, True)
    t.conv("model.2", 2 * ndf, ndf, 4, False)
    t.norm("model.3", 2 * ndf, "batch")
    t.conv("model.5", 4 * ndf, 2 * ndf, 4, False)
    t.norm("model.6", 4 * ndf, "batch")
    t.conv("model.8", 8 * ndf, 4 * ndf, 4, False)
    t.norm("model.9", 8 * ndf, "batch")
    t.conv("model.11", 1, 8 * ndf, 4, True)
    return t.state


def reference_pixel_d(in_ch: int = 6, ndf: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """PixelDiscriminator (BN): net.0 conv (bias), net.2 conv, net.3 BN, net.5 conv (no bias)."""
    t = Tree(seed)
    t.conv("net.0", ndf, in_ch, 1, True)
    t.conv("net.2", 2 * ndf, ndf, 1, False)
    t.norm("net.3", 2 * ndf, "batch")
    t.conv("net.5", 1, 2 * ndf, 1, False)
    return t.state


def assert_loaded(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = net.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert own[k].shape == v.shape, k
        assert torch.equal(own[k], v), k


# ----------------------------------------------------------------------------------------------------
# Loading the reference trees
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_256_reference_tree_loads_exactly(norm):
    state = reference_unet(ngf=4, num_downs=8, norm=norm)
    net = import_reference(state, "unet_256", ngf=4, norm=norm)
    assert_loaded(net, state)
    assert not net.training
    assert net.reference_kind == "generator"
    assert net.arch["name"] == "unet_256"


def test_unet_128_and_generic_unet_reference_trees_load():
    state = reference_unet(ngf=2, num_downs=7, in_ch=1, out_ch=2)
    assert_loaded(import_reference(state, "unet_128", ngf=2, in_channels=1, out_channels=2), state)
    state = reference_unet(ngf=2, num_downs=6)
    assert_loaded(import_reference(state, "unet", ngf=2, num_downs=6), state)


@pytest.mark.parametrize("dropout", [False, True])
def test_resnet_reference_tree_loads_and_dropout_is_detected(dropout):
    state = reference_resnet(ngf=4, n_blocks=9, dropout=dropout)
    net = import_reference(state, "resnet_9blocks", ngf=4)
    assert_loaded(net, state)
    assert net.arch["kwargs"]["dropout"] is dropout
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == (9 if dropout else 0)


def test_resnet_6blocks_batch_norm_reference_tree_detects_no_dropout():
    # with BN the second norm of a block (conv_block.6.weight) must not be mistaken for the dropout layout
    state = reference_resnet(ngf=2, n_blocks=6, norm="batch", dropout=False)
    net = import_reference(state, "resnet_6blocks", ngf=2, norm="batch")
    assert_loaded(net, state)
    assert net.arch["kwargs"]["dropout"] is False
    state = reference_resnet(ngf=2, n_blocks=6, norm="batch", dropout=True)
    net = import_reference(state, "resnet_6blocks", ngf=2, norm="batch")
    assert_loaded(net, state)
    assert net.arch["kwargs"]["dropout"] is True


def test_explicit_dropout_overrides_detection_and_mismatch_is_reported():
    state = reference_resnet(ngf=2, n_blocks=6, dropout=True)
    with pytest.raises(CheckpointError, match=r"conv_block\.6\.weight"):
        import_reference(state, "resnet_6blocks", ngf=2, dropout=False)


def test_module_prefix_is_stripped():
    state = reference_unet(ngf=4)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert_loaded(import_reference(prefixed, "unet_256", ngf=4), state)


def test_legacy_instance_norm_running_stats_are_dropped():
    clean = reference_resnet(ngf=2, n_blocks=9, norm="instance")
    legacy = reference_resnet(ngf=2, n_blocks=9, norm="instance", legacy_in_stats=True)
    extra = set(legacy) - set(clean)
    assert len(extra) == 2 * (3 + 2 * 9 + 2)  # stem, 2 downs, 2 per block, 2 ups; mean and var each
    assert all(k.endswith(("running_mean", "running_var")) for k in extra)
    net = import_reference(legacy, "resnet_9blocks", ngf=2)
    assert_loaded(net, clean)


def test_batch_norm_checkpoint_without_num_batches_tracked_loads():
    full = reference_unet(ngf=4)
    old = {k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}
    assert len(old) < len(full)
    net = import_reference(old, "unet_256", ngf=4)
    own = net.state_dict()
    for k, v in old.items():
        assert torch.equal(own[k], v), k
    counters = [k for k in own if k.endswith("num_batches_tracked")]
    assert len(counters) == len(full) - len(old)
    assert all(own[k].item() == 0 for k in counters)


def test_other_architecture_raises_listing_missing_and_unexpected_keys():
    state = reference_resnet(ngf=4)
    with pytest.raises(CheckpointError) as info:
        import_reference(state, "unet_256", ngf=4)
    msg = str(info.value)
    assert "missing keys" in msg and "unexpected keys" in msg
    assert "model.model.0.weight" in msg  # missing: the U-Net's first key
    assert "model.1.weight" in msg  # unexpected: the ResNet's first key


def test_shape_mismatch_is_listed():
    state = reference_unet(ngf=4, in_ch=3)
    with pytest.raises(CheckpointError) as info:
        import_reference(state, "unet_256", ngf=4, in_channels=1)
    msg = str(info.value)
    assert "shape mismatches (1)" in msg
    assert "model.model.0.weight: checkpoint (4, 3, 4, 4) vs model (4, 1, 4, 4)" in msg
    assert "missing keys" not in msg and "unexpected keys" not in msg


def test_wrong_ngf_lists_shape_mismatches():
    state = reference_unet(ngf=4)
    with pytest.raises(CheckpointError, match=r"shape mismatches"):
        import_reference(state, "unet_256", ngf=8)


def test_non_tensor_state_is_refused():
    with pytest.raises(CheckpointError, match=r"not a state_dict of tensors"):
        import_reference({"model.1.weight": [1, 2, 3]}, "resnet_9blocks", ngf=4)


def test_unknown_architecture_suggests_closest():
    with pytest.raises(CheckpointError, match=r"Did you mean 'unet_256'"):
        import_reference(reference_unet(ngf=4), "unet_265", ngf=4)


# ----------------------------------------------------------------------------------------------------
# Discriminators
# ----------------------------------------------------------------------------------------------------

def test_basic_discriminator_maps_to_70x70_patchgan():
    state = reference_basic_d(in_ch=6, ndf=4)
    net = import_reference(state, "basic", in_channels=6, ndf=4)
    assert isinstance(net, NLayerDiscriminator)
    assert net.reference_kind == "discriminator"
    assert net.arch["kwargs"]["n_layers"] == 3
    assert_loaded(net, state)
    with torch.no_grad():
        assert net(torch.randn(1, 6, 256, 256))[0][-1].shape == (1, 1, 30, 30)


def test_pixel_discriminator_maps_to_1x1_patchgan():
    state = reference_pixel_d(in_ch=6, ndf=4)
    net = import_reference(state, "pixel", in_channels=6, ndf=4)
    assert isinstance(net, PixelDiscriminator)
    assert net.arch["kwargs"]["n_layers"] == 0
    assert_loaded(net, state)
    with torch.no_grad():
        assert net(torch.randn(1, 6, 13, 7))[0][-1].shape == (1, 1, 13, 7)


def test_n_layers_discriminator_and_missing_in_channels():
    # n_layers 1: convs model.{0,2,5}, norm model.3
    t = Tree()
    t.conv("model.0", 4, 6, 4, True)
    t.conv("model.2", 8, 4, 4, False)
    t.norm("model.3", 8, "batch")
    t.conv("model.5", 1, 8, 4, True)
    net = import_reference(t.state, "n_layers", in_channels=6, ndf=4, n_layers=1)
    assert_loaded(net, t.state)
    with pytest.raises(CheckpointError, match=r"in_channels"):
        import_reference(reference_basic_d(), "basic", ndf=4)


def test_discriminator_checkpoint_into_pixel_d_fails():
    with pytest.raises(CheckpointError, match=r"missing keys"):
        import_reference(reference_basic_d(), "pixel", in_channels=6, ndf=4)


# ----------------------------------------------------------------------------------------------------
# Files: torch.save with weights_only loading
# ----------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainingOptions:
    lr: float = 2e-4


def not_a_tensor() -> None:
    pass


def test_pth_file_loads(tmp_path: Path):
    state = reference_unet(ngf=4)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    net = import_reference(path, "unet_256", ngf=4)
    assert_loaded(net, state)
    net2 = import_reference(str(path), "unet_256", ngf=4)
    assert_loaded(net2, state)


def test_pth_with_state_dict_wrapper_loads(tmp_path: Path):
    state = reference_basic_d()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    assert_loaded(import_reference(path, "basic", in_channels=6, ndf=4), state)


@pytest.mark.parametrize("payload", [TrainingOptions(), not_a_tensor], ids=["dataclass", "function"])
def test_pth_with_pickled_objects_is_refused(tmp_path: Path, payload):
    state = dict(reference_basic_d())
    state["options"] = payload
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        import_reference(path, "basic", in_channels=6, ndf=4)


def test_missing_and_corrupt_files(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"does not exist"):
        import_reference(tmp_path / "nope.pth", "unet_256", ngf=4)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"could not be loaded"):
        import_reference(bad, "unet_256", ngf=4)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------

def test_cli_import_reference_then_from_pretrained(tmp_path: Path, capsys):
    state = reference_unet(ngf=4)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    out = tmp_path / "model"
    assert main(["import-reference", str(path), "--arch", "unet_256", "--ngf", "4", "-o", str(out)]) == 0
    assert "imported generator unet_256" in capsys.readouterr().out

    loaded = pix2pix.from_pretrained(out)
    imported = import_reference(path, "unet_256", ngf=4)
    assert not loaded.training and not imported.training
    assert_loaded(loaded, state)
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = loaded(x), imported(x)
    assert a.shape == (2, 3, 256, 256)
    assert torch.equal(a, b)
    assert loaded.card.provenance.source == str(path)


def test_cli_import_reference_discriminator(tmp_path: Path):
    state = reference_basic_d(in_ch=6, ndf=4)
    path = tmp_path / "latest_net_D.pth"
    torch.save(state, path)
    out = tmp_path / "model"
    assert main(["import-reference", str(path), "--arch", "basic", "--in-channels", "6", "--ndf", "4",
                 "-o", str(out)]) == 0
    d = pix2pix.from_pretrained(out, kind="discriminator")
    assert isinstance(d, NLayerDiscriminator)
    assert_loaded(d, state)


def test_cli_bad_arch_exits_with_2(tmp_path: Path, capsys):
    path = tmp_path / "latest_net_G.pth"
    torch.save(reference_unet(ngf=4), path)
    out = tmp_path / "model"
    assert main(["import-reference", str(path), "--arch", "unet_265", "--ngf", "4", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unet_265" in err and "Did you mean 'unet_256'" in err
    assert not (out / "generator.safetensors").exists()


def test_cli_mismatched_checkpoint_exits_with_2(tmp_path: Path, capsys):
    path = tmp_path / "latest_net_G.pth"
    torch.save(reference_unet(ngf=4), path)
    assert main(["import-reference", str(path), "--arch", "resnet_9blocks", "--ngf", "4",
                 "-o", str(tmp_path / "m")]) == 2
    assert "missing keys" in capsys.readouterr().err
