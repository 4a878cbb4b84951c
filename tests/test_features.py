"""Instance features of pix2pixHD: k-means, saved clusters, feature maps, the label translator and CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.clusters import Clusters, cluster_purity, cluster_purity_by_class, kmeans
from pix2pix.data.labels import instance_classes
from pix2pix.errors import CheckpointError, ConfigError, DataError
from pix2pix.inference.feature_map import feature_map
from pix2pix.io.model_card import LabelSpec, ModelCard

# ----------------------------------------------------------------------------- k-means


def _blobs(seed: int = 0, n: int = 25) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0, 0.0], [0.8, 0.8, 0.8], [-0.8, 0.8, 0.0], [0.8, -0.8, 0.4]])
    sizes = [n, n + 5, n - 5, n + 10]  # distinct sizes, so the size order of the clusters is known
    x = torch.cat([c + 0.03 * torch.randn(s, 3, generator=g) for c, s in zip(centres, sizes, strict=True)])
    truth = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    return x, truth


def test_kmeans_recovers_separated_blobs_exactly():
    x, truth = _blobs()
    centres, assign = kmeans(x, 4, seed=0)
    assert centres.shape == (4, 3) and assign.shape == (len(x),)
    assert cluster_purity(assign, truth) == 1.0
    assert cluster_purity(truth, assign) == 1.0  # and each blob is one cluster
    # clusters are ordered by size, largest first
    assert torch.bincount(assign).tolist() == sorted(torch.bincount(truth).tolist(), reverse=True)
    for c in range(4):
        assert torch.allclose(centres[c], x[assign == c].mean(0), atol=1e-5)


def test_kmeans_is_deterministic_and_order_independent():
    x, _ = _blobs(seed=1)
    c1, a1 = kmeans(x, 6, seed=3)
    c2, a2 = kmeans(x, 6, seed=3)
    assert torch.equal(c1, c2) and torch.equal(a1, a2)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    c3, a3 = kmeans(x[perm], 6, seed=3)
    assert torch.equal(c1, c3) and torch.equal(a1[perm], a3)


def test_kmeans_caps_k_at_distinct_points():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    centres, assign = kmeans(x, 10, seed=0)
    assert centres.shape == (2, 2)
    assert torch.equal(centres[0], torch.tensor([1.0, 2.0]))  # the larger cluster first
    assert assign.tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError):
        kmeans(torch.zeros(0, 3), 2)


def test_cluster_purity_pooled_over_classes():
    assignments = {7: [0, 0, 1, 1], 8: [0, 0]}
    styles = {7: [0, 0, 1, 0], 8: [1, 2]}
    assert cluster_purity_by_class(assignments, styles) == {7: (3, 4), 8: (1, 2)}
    assert cluster_purity(assignments, styles) == pytest.approx(4 / 6)
    assert cluster_purity([0, 1, 2], [5, 5, 5]) == 1.0
    assert cluster_purity([0, 0, 0], [1, 2, 3]) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- saved clusters


def _clusters() -> Clusters:
    return Clusters(feat_num=3,
                    centres={7: torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [-0.7, -0.8, -0.9]]),
                             1: torch.tensor([[0.9, 0.9, 0.9], [-0.1, -0.2, -0.3]])},
                    counts={7: [5, 3, 1], 1: [2, 2]}, k=3, meta={"model": "somewhere"})


def test_clusters_save_load_round_trip(tmp_path: Path):
    clusters = _clusters()
    path = clusters.save(tmp_path)
    assert path == tmp_path / "clusters.safetensors"
    info = json.loads((tmp_path / "clusters.json").read_text())
    assert info["feat_num"] == 3 and info["k"] == 3 and info["classes"] == [1, 7]
    assert info["counts"] == {"1": [2, 2], "7": [5, 3, 1]} and info["model"] == "somewhere"
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind
    for where in (tmp_path, path, tmp_path / "clusters.json"):
        loaded = Clusters.load(where, feat_num=3)
        assert loaded.feat_num == 3 and loaded.k == 3 and loaded.classes == [1, 7]
        assert loaded.counts == clusters.counts
        for c in clusters.classes:
            assert torch.equal(loaded.centres[c], clusters.centres[c])
    # the weights alone (no json) still load
    (tmp_path / "clusters.json").unlink()
    assert Clusters.load(tmp_path).feat_num == 3


def test_clusters_feat_num_mismatch_and_missing_are_clear_errors(tmp_path: Path):
    _clusters().save(tmp_path)
    with pytest.raises(CheckpointError, match="feat_num 5"):
        Clusters.load(tmp_path, feat_num=5)
    with pytest.raises(CheckpointError, match="pix2pix features"):
        Clusters.load(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="feat_num"):
        feature_map(None, torch.zeros(1, 1, 2, 2, dtype=torch.long), _clusters(), feat_num=4)


# ----------------------------------------------------------------------------- feature maps


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """8x8: sky (id 1) on top, two cars (7000, 7001), a truck (9000, no clusters), road (4, no clusters)."""
    label = torch.full((8, 8), 1, dtype=torch.long)
    inst = torch.full((8, 8), 1, dtype=torch.long)
    label[4:, :] = 4
    inst[4:, :] = 4
    label[4:7, 0:3] = 7
    inst[4:7, 0:3] = 7000
    label[4:7, 3:5] = 7
    inst[4:7, 3:5] = 7001
    label[4:8, 6:8] = 9
    inst[4:8, 6:8] = 9000
    return label[None, None], inst[None, None]


def test_feature_map_paints_chosen_clusters_and_vectors_exactly():
    label, inst = _scene()
    clusters = _clusters()
    fm = feature_map(label, inst, clusters, {7000: np.int64(2), 7001: [0.25, -0.5, 1.0]}, mode="cluster")
    assert fm.shape == (1, 3, 8, 8) and fm.dtype == torch.float32
    pix = fm[0].permute(1, 2, 0)  # [H, W, 3]
    ii = inst[0, 0]
    assert torch.equal(pix[ii == 7000], clusters.centres[7][2].expand(9, 3))
    assert torch.equal(pix[ii == 7001], torch.tensor([0.25, -0.5, 1.0]).expand(6, 3))
    assert torch.equal(pix[ii == 1], clusters.centres[1][0].expand(int((ii == 1).sum()), 3))  # default cluster 0
    assert torch.equal(pix[ii == 9000], torch.zeros(8, 3))  # truck: no clusters -> zeros
    assert torch.equal(pix[ii == 4], torch.zeros(int((ii == 4).sum()), 3))
    # --cluster K: K modulo each class's cluster count
    fm1 = feature_map(label, inst, clusters, mode="cluster", default_cluster=1)[0].permute(1, 2, 0)
    assert torch.equal(fm1[ii == 7000][0], clusters.centres[7][1])
    assert torch.equal(fm1[ii == 1][0], clusters.centres[1][1])
    assert torch.equal(feature_map(label, inst, clusters, mode="zero"), torch.zeros(1, 3, 8, 8))
    # a chosen id that is not in the map is ignored; a cluster the class lacks is an error
    feature_map(label, inst, clusters, {12345: 0})
    with pytest.raises(ConfigError, match="clusters 0..2"):
        feature_map(label, inst, clusters, {7000: 3})
    with pytest.raises(ConfigError, match="no clusters"):
        feature_map(label, inst, clusters, {9000: 0})
    with pytest.raises(ConfigError, match="feat_num 3"):
        feature_map(label, inst, clusters, {7000: [1.0, 2.0]})


def test_feature_map_random_is_reproducible_by_seed():
    label, inst = _scene()
    clusters = _clusters()
    a = feature_map(label, inst, clusters, mode="random", seed=5)
    assert torch.equal(a, feature_map(label, inst, clusters, mode="random", seed=5))
    ii = inst[0, 0]
    picks = set()
    for seed in range(12):
        fm = feature_map(label, inst, clusters, mode="random", seed=seed)[0].permute(1, 2, 0)
        car = fm[ii == 7000]
        assert torch.equal(car, car[:1].expand_as(car))  # one vector per instance
        picks.add(tuple(car[0].tolist()))
        assert torch.equal(fm[ii == 9000], torch.zeros(8, 3))
    assert len(picks) > 1 and all(any(torch.allclose(torch.tensor(p), c) for c in clusters.centres[7])
                                  for p in picks)
    # batched maps: every item gets its own draws; an explicit choice still wins
    batch = feature_map(label.repeat(2, 1, 1, 1), inst.repeat(2, 1, 1, 1), clusters, {7000: 1}, mode="random",
                        seed=0)
    assert batch.shape == (2, 3, 8, 8)
    assert torch.equal(batch[1].permute(1, 2, 0)[ii == 7000][0], clusters.centres[7][1])


def test_instance_class_is_the_majority_label():
    label, inst = _scene()
    inst = inst.clone()
    inst[inst == 7000] = 55  # not Cityscapes-coded: the label under it says car
    label = label.clone()
    label[0, 0, 4, 0] = 4  # one stray pixel does not change the majority
    assert instance_classes(label, inst)[55] == 7
    assert instance_classes(None, inst)[9000] == 9  # without labels: id // 1000
    fm = feature_map(label, inst, _clusters(), {55: 1})[0].permute(1, 2, 0)
    assert torch.equal(fm[inst[0, 0] == 55][0], _clusters().centres[7][1])


def test_feature_map_encode_mode_uses_the_encoder():
    from pix2pix.models.encoder import instance_mean_features
    from pix2pix.registry import create_generator

    torch.manual_seed(0)
    enc = create_generator("encoder", 3, 3, ngf=4, n_downsample=2).eval()
    label, inst = _scene()
    style = torch.rand(1, 3, 8, 8) * 2 - 1
    fm = feature_map(label, inst, None, {7001: [0.0, 0.0, 0.0]}, 3, mode="encode", encoder=enc, style_image=style)
    rows = instance_mean_features(enc(style), inst)
    ii = inst[0, 0]
    for i, f in zip(rows.instance_id.tolist(), rows.features, strict=True):
        got = fm[0].permute(1, 2, 0)[ii == i]
        want = torch.zeros(3) if i == 7001 else f
        assert torch.allclose(got, want.expand_as(got), atol=1e-6)
    with pytest.raises(DataError):
        feature_map(label, inst, None, None, 3, mode="encode", encoder=enc, style_image=style[..., :4])


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def hd_run(tmp_path_factory) -> dict[str, Path]:
    """A tiny synthetic world and a tiny_hd model with the feature encoder, trained for 2 steps."""
    from pix2pix.cli.main import main
    from pix2pix.data.synthetic import write_synthetic_dataset

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("hd")
    data = root / "data"
    write_synthetic_dataset(data, num=4, size=64)
    rc = main(["train", "--preset", "tiny_hd", "--data", str(data), "--runs-dir", str(root / "runs"),
               "--set", "use_features=true", "--set", "device=cpu", "--set", "max_steps=2",
               "--set", "tensorboard=false", "--no-progress"])
    assert rc == 0
    run = next((root / "runs").iterdir())
    return {"root": root, "data": data, "run": run, "model": run / "model"}


def test_features_command_writes_clusters(hd_run, capsys):
    from pix2pix.cli.main import main

    assert main(["features", str(hd_run["run"]), "--device", "cpu", "--min-pixels", "4"]) == 0  # data from the run
    out = capsys.readouterr().out
    assert "class   7 car" in out and "clusters" in out
    model = hd_run["model"]
    clusters = Clusters.load(model, feat_num=3)
    info = json.loads((model / "clusters.json").read_text())
    assert info["feat_num"] == 3 and info["k"] == 10 and info["min_pixels"] == 4
    assert 7 in clusters.classes and all(1 <= clusters.num_clusters(c) <= 10 for c in clusters.classes)
    assert sum(clusters.counts[7]) == info["instances"] - sum(sum(clusters.counts[c]) for c in clusters.classes
                                                             if c != 7)


def test_translate_cli_with_clusters(hd_run, capsys):
    from pix2pix.cli.main import main

    assert main(["features", str(hd_run["model"]), "--data", str(hd_run["data"]), "--device", "cpu",
                 "--min-pixels", "4"]) == 0
    data, root = hd_run["data"], hd_run["root"]
    for mode, extra in (("cluster", ["--cluster", "1"]), ("random", ["--seed", "3"])):
        out = root / f"out_{mode}"
        rc = main(["translate", str(data / "test_label"), "--model", str(hd_run["model"]), "-o", str(out),
                   "--instances", str(data / "test_inst"), "--features", mode, "--device", "cpu", *extra])
        assert rc == 0
        files = sorted(out.glob("*.png"))
        assert [f.name for f in files] == sorted(p.name for p in (data / "test_label").glob("*.png"))
        with Image.open(files[0]) as img:
            assert img.size == (64, 64) and img.mode == "RGB"
    # random features are reproducible: the same seed gives the same file
    again = root / "out_random_again"
    assert main(["translate", str(data / "test_label"), "--model", str(hd_run["run"]), "-o", str(again),
                 "--features", "random", "--seed", "3", "--device", "cpu"]) == 0  # instances found beside labels
    name = next((root / "out_random").glob("*.png")).name
    assert np.array_equal(np.asarray(Image.open(root / "out_random" / name)), np.asarray(Image.open(again / name)))
    # encode mode needs real images
    enc = root / "out_encode"
    assert main(["translate", str(data / "test_label"), "--model", str(hd_run["model"]), "-o", str(enc),
                 "--features", "encode", "--style-images", str(data / "test_img"), "--device", "cpu"]) == 0
    assert len(list(enc.glob("*.png"))) == 1


def test_changing_one_instance_cluster_is_local(hd_run):
    from pix2pix.cli.main import main
    from pix2pix.data.label_dataset import open_map
    from pix2pix.inference import LabelTranslator, load_translator

    assert main(["features", str(hd_run["run"]), "--device", "cpu", "--min-pixels", "4"]) == 0
    tr = load_translator(hd_run["run"], device="cpu")
    assert isinstance(tr, LabelTranslator) and tr.clusters is not None
    data = hd_run["data"]
    # a training image: its cars were clustered, so the car class has clusters
    name = sorted((data / "train_label").glob("*.png"))[0].name
    label = torch.from_numpy(np.asarray(open_map(data / "train_label" / name)).astype(np.int64))
    inst = torch.from_numpy(np.asarray(open_map(data / "train_inst" / name)).astype(np.int64))
    classes = instance_classes(label[None, None], inst[None, None])
    target = max((i for i, c in classes.items() if tr.clusters.num_clusters(c) >= 2),
                 key=lambda i: int((inst == i).sum()))
    c = classes[target]
    lab4, inst4 = label[None, None], inst[None, None]
    f0 = tr.feature_channels(lab4, inst4, choices={target: 0})
    f1 = tr.feature_channels(lab4, inst4, choices={target: 1})
    inside = (inst == target)
    diff = (f0 - f1).abs().sum(1)[0]
    assert bool((diff[~inside] == 0).all())  # the feature maps differ only inside the instance
    assert torch.allclose(f1[0, :, inside].T, tr.clusters.centres[c][1].expand(int(inside.sum()), 3))
    out0 = tr(label, inst, choices={target: 0})
    out1 = tr(label, inst, choices={target: 1})
    assert isinstance(out0, torch.Tensor) and out0.shape == (3, 64, 64)
    assert not torch.equal(out0, out1)  # the output changes


def test_label_translator_inputs_and_sizes(hd_run):
    from pix2pix.data.label_dataset import open_map
    from pix2pix.inference import LabelTranslator

    tr = LabelTranslator.from_pretrained(hd_run["model"], device="cpu", clusters=_clusters())
    data = hd_run["data"]
    name = sorted((data / "test_label").glob("*.png"))[0].name
    label_img = Image.open(data / "test_label" / name)
    inst_img = Image.open(data / "test_inst" / name)  # 16-bit ids
    out = tr(label_img, inst_img, features="random", seed=1)
    assert isinstance(out, Image.Image) and out.size == (64, 64)
    arr_out = tr(np.asarray(label_img)[:37, :50], np.asarray(open_map(data / "test_inst" / name))[:37, :50])
    assert isinstance(arr_out, Image.Image) and arr_out.size == (50, 37)  # any size, cropped back
    lab = torch.from_numpy(np.asarray(label_img).astype(np.int64))
    inst = torch.from_numpy(np.asarray(open_map(data / "test_inst" / name)).astype(np.int64))
    batched = tr(lab[None, None].repeat(2, 1, 1, 1), inst[None, None].repeat(2, 1, 1, 1), features="zero")
    assert batched.shape == (2, 3, 64, 64) and batched.min() >= -1 and batched.max() <= 1
    assert torch.allclose(batched[0], batched[1])
    single = tr(lab, inst, features="zero")
    assert single.shape == (3, 64, 64) and torch.allclose(single, batched[0], atol=1e-6)
    assert tr(lab[None], inst[None], features="zero").shape == (3, 64, 64)
    with pytest.raises(DataError, match="same size"):
        tr(lab, inst[:10])
    with pytest.raises(ConfigError, match="pix2pix features"):
        LabelTranslator(tr.generator, tr.card, encoder=tr.encoder, device="cpu")(lab, inst)
    with pytest.raises(CheckpointError, match="feat_num"):
        LabelTranslator.from_pretrained(hd_run["model"], device="cpu",
                                        clusters=Clusters(feat_num=2, centres={}, counts={}))


def test_features_command_errors(hd_run, tmp_path: Path, capsys):
    from pix2pix.cli.main import main
    from pix2pix.io.pretrained import save_pretrained
    from pix2pix.registry import create_generator

    # a dataset without photos
    nophoto = tmp_path / "nophoto"
    shutil.copytree(hd_run["data"], nophoto)
    shutil.rmtree(nophoto / "train_img")
    assert main(["features", str(hd_run["model"]), "--data", str(nophoto), "--device", "cpu"]) == 2
    assert "photos" in capsys.readouterr().err
    # a model directory without the encoder (and no recorded data root)
    plain = tmp_path / "plain"
    g = create_generator("global", 11, 3, ngf=4, n_downsample=2, n_blocks=1)
    save_pretrained(g, plain, card=ModelCard(family="pix2pixhd", labels=LabelSpec(label_nc=10)))
    assert main(["features", str(plain), "--data", str(hd_run["data"]), "--device", "cpu"]) == 2
    assert "use_features=true" in capsys.readouterr().err
    assert main(["features", str(tmp_path / "nowhere"), "--device", "cpu"]) == 2
    # feature options on a pix2pix model are refused; load_translator picks the pix2pix Translator
    from pix2pix.inference import Translator, load_translator

    p2p = tmp_path / "p2p"
    save_pretrained(create_generator("unet", 3, 3, ngf=4, num_downs=5), p2p)
    assert isinstance(load_translator(p2p, device="cpu"), Translator)
    img = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(img)
    assert main(["translate", str(img), "--model", str(p2p), "-o", str(tmp_path / "o"), "--features",
                 "random"]) == 2
    assert "pix2pixHD" in capsys.readouterr().err
