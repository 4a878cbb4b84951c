import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix import Translator, create_generator, from_pretrained, save_pretrained
from pix2pix.errors import CheckpointError, Pix2PixError
from pix2pix.inference.translator import paper_test_mode


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    net = create_generator("unet", 3, 3, num_downs=4, ngf=4)
    with torch.no_grad():  # non-trivial running statistics, so eval and train mode differ
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save_pretrained(net, tmp_path / "model")
    return tmp_path / "model"


def test_save_and_load_round_trip_is_exact(model_dir):
    net = from_pretrained(model_dir)
    again = from_pretrained(model_dir)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), again(x))
    assert not net.training and net.arch["kwargs"] == {"num_downs": 4, "ngf": 4}


def test_from_pretrained_is_strict(model_dir, tmp_path):
    import json

    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["generator"]["kwargs"]["ngf"] = 8
    (model_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        from_pretrained(model_dir)
    with pytest.raises(CheckpointError, match="config.json does not exist"):
        from_pretrained(tmp_path / "nothing")


def test_translator_accepts_pil_arrays_and_tensors_of_any_size(model_dir):
    tr = Translator.from_pretrained(model_dir, device="cpu")
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out_pil = tr(Image.fromarray(arr))
    assert isinstance(out_pil, Image.Image) and out_pil.size == (53, 37)
    out_arr = tr(arr)
    assert out_arr.shape == (37, 53, 3) and out_arr.dtype == np.uint8
    assert np.array_equal(out_arr, np.asarray(out_pil))
    assert np.array_equal(tr(arr.astype(np.float32) / 255.0), out_arr)
    t = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1
    out_t = tr(t)
    assert out_t.shape == (3, 37, 53) and tr(t[None]).shape == (1, 3, 37, 53)
    assert np.array_equal(((out_t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy(), out_arr)
    gray = Image.fromarray(arr[:, :, 0])  # converted to the model's 3 channels
    assert tr(gray).size == (53, 37)
    with pytest.raises(Pix2PixError, match="expected a \\[B, 3, H, W\\]"):
        tr(torch.zeros(1, 1, 8, 8))
    with pytest.raises(Pix2PixError, match="cannot translate"):
        tr("image.png")


def test_paper_mode_uses_batch_statistics_and_dropout_without_changing_the_model(model_dir):
    x = torch.randn(1, 3, 32, 32)
    eval_tr = Translator.from_pretrained(model_dir, device="cpu")
    paper_tr = Translator.from_pretrained(model_dir, device="cpu", paper_mode=True)
    before = {k: v.clone() for k, v in paper_tr.generator.state_dict().items()}
    assert torch.equal(eval_tr(x), eval_tr(x))  # eval mode is deterministic
    assert not torch.allclose(paper_tr(x), eval_tr(x))
    after = paper_tr.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "num_batches_tracked" not in k)
    assert not paper_tr.generator.training


def test_paper_mode_turns_dropout_on():
    net = create_generator("unet", 3, 3, num_downs=6, ngf=4, dropout=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), paper_test_mode(net):
        a, b = net(x), net(x)
    assert not torch.equal(a, b)  # dropout noise
    assert not net.training and all(not m.training for m in net.modules())


def test_translate_files_batches_by_size(model_dir, tmp_path):
    tr = Translator.from_pretrained(model_dir, device="cpu")
    paths = []
    for i, size in enumerate([(20, 20), (20, 20), (33, 17), (20, 20)]):
        p = tmp_path / f"in{i}.png"
        Image.new("RGB", size, (i * 40, 0, 0)).save(p)
        paths.append(p)
    written = tr.translate_files(paths, tmp_path / "out", batch_size=2)
    assert [p.name for p in written] == ["in0.png", "in1.png", "in2.png", "in3.png"]
    assert Image.open(written[2]).size == (33, 17)
    single = tr(Image.open(paths[0]))
    assert np.array_equal(np.asarray(Image.open(written[0])), np.asarray(single))
