"""Published checkpoints by name: the reference's pix2pix generators and pix2pixHD's Cityscapes model.

    pix2pix download facades_label2photo        # or: --model facades_label2photo on any verb
    translator = Translator.from_pretrained("facades_label2photo")

Each entry records what the reference trained and tested the model with (architecture, which
side of the A|B pairs is the input, preprocessing), so translation needs no flags. A model is
downloaded only when asked (``pix2pix download NAME`` or the first ``--model NAME``) from the
reference's address, or from ``PIX2PIX_ZOO_URL`` (the file for NAME is ``NAME.pth`` under it),
checked (torch.load with weights_only=True; the architecture's keys and shapes, by
`import_reference`), converted, and cached as a model directory in ``PIX2PIX_HOME/models/NAME``
(default ``$XDG_CACHE_HOME/pix2pix``, i.e. ``~/.cache/pix2pix``). The card records the URL and
the sha256 of the downloaded file. The directory appears in one rename, so it is complete or
absent. ``--file F`` converts a file the user downloaded themselves, the only way for
``label2city_1024p``, which NVIDIA publishes on Google Drive (no stable address).

Sources: pytorch-CycleGAN-and-pix2pix ``scripts/download_pix2pix_model.sh`` (the names and the
URL pattern), its pix2pix options (unet_256, batch norm, dropout, ngf 64) and test options (no
crop or flip: load_size = crop_size = 256), its datasets' A|B order (facades and maps: photo |
labels / aerial | map; night2day: night | day; edges2shoes: edges | photo); NVIDIA pix2pixHD's
``scripts/test_1024p.sh`` (netG local, ngf 32, resize_or_crop none, label_nc 35 with instance
maps, no features) and ``scripts/download_models.py`` (the Google Drive file).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..data.label_sets import get_label_set
from ..errors import CheckpointError, Pix2PixError, did_you_mean
from ..nn.state import as_state_dict
from .atomic import fsync_directory
from .download import fetch, file_lock, part_path
from .model_card import CONFIG_NAME, DataGeometry, LabelSpec, ModelCard, Provenance, sha256_file, utc_now
from .pretrained import save_model
from .reference import import_reference
from .torch_load import safe_torch_load

REFERENCE_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
URL_ENV = "PIX2PIX_ZOO_URL"
HOME_ENV = "PIX2PIX_HOME"

# pix2pix's published generators: the reference's pix2pix model defaults.
_UNET = {"ngf": 64, "norm": "batch", "dropout": True}
# The reference's test.py sets load_size = crop_size (256) and turns flipping off: a plain resize to 256x256.
_REFERENCE_TEST = {"preprocess": "resize_and_crop", "load_size": 256, "crop_size": 256}


@dataclass(frozen=True)
class PublishedModel:
    """One published generator and everything needed to use it without flags."""

    name: str
    summary: str  # what it translates
    dataset: str
    direction: str  # which side of the dataset's A|B pairs is the input
    arch: str = "unet_256"
    arch_kwargs: Mapping[str, Any] = field(default_factory=lambda: dict(_UNET))
    in_channels: int = 3
    out_channels: int = 3
    family: str = "pix2pix"
    geometry: Mapping[str, Any] = field(default_factory=lambda: dict(_REFERENCE_TEST))
    label_nc: int = 0  # pix2pixHD: label classes (one-hot channels); the label set below names them
    label_set: str = ""
    use_instance: bool = False
    manual: str = ""  # set when there is no stable address: where the user gets the file for --file
    sha256: str = ""  # when known, a downloaded or given file must have this digest

    @property
    def downloadable(self) -> bool:
        return not self.manual

    def url(self) -> str:
        base = os.environ.get(URL_ENV) or REFERENCE_URL
        return f"{base.rstrip('/')}/{self.name}.pth"

    def architecture(self) -> str:
        options = ", ".join(f"{k} {v}" for k, v in self.arch_kwargs.items())
        return f"{self.arch} ({self.in_channels} -> {self.out_channels} channels, {options})"

    def build(self, state: Mapping[str, Any], source: str) -> nn.Module:
        """The generator with the published weights, or a CheckpointError listing the keys that do not fit."""
        try:
            return import_reference(state, self.arch, in_channels=self.in_channels, out_channels=self.out_channels,
                                    **self.arch_kwargs)
        except CheckpointError as exc:
            raise CheckpointError(f"{source} is not the published {self.name} generator, whose architecture is "
                                  f"{self.architecture()}: {exc}") from None

    def card(self, source: str, sha256: str) -> ModelCard:
        """The model card (without the network spec, which `save_model` takes from the network)."""
        labels = None
        if self.family == "pix2pixhd":
            label_set = get_label_set(self.label_set).to_classes_json() if self.label_set else None
            labels = LabelSpec(label_nc=self.label_nc, label_set=label_set, use_instance=self.use_instance)
        return ModelCard(family=self.family, data=DataGeometry(direction=self.direction, **self.geometry),
                         labels=labels, provenance=Provenance(source=source, sha256=sha256, created=utc_now()))


_NVIDIA_DRIVE = "https://drive.google.com/file/d/1h9SykUnuZul7J3Nbms2QGH1wa85nbN2-/view"

PUBLISHED: dict[str, PublishedModel] = {m.name: m for m in (
    PublishedModel("facades_label2photo", "facade label maps -> building photos", "facades", "BtoA"),
    PublishedModel("sat2map", "aerial photos -> map tiles", "maps", "AtoB"),
    PublishedModel("map2sat", "map tiles -> aerial photos", "maps", "BtoA"),
    PublishedModel("edges2shoes", "edge drawings -> shoe photos", "edges2shoes", "AtoB"),
    PublishedModel("day2night", "daytime scenes -> the same scene at night", "night2day", "BtoA"),
    PublishedModel(
        "label2city_1024p", "Cityscapes label maps + instance maps -> 2048x1024 street photos (pix2pixHD)",
        "cityscapes", "AtoB", family="pix2pixhd", arch="local", in_channels=36,
        arch_kwargs={"ngf": 32, "n_downsample_global": 4, "n_blocks_global": 9, "n_local_enhancers": 1,
                     "n_blocks_local": 3, "norm": "instance"},
        geometry={"preprocess": "none", "load_size": 1024, "crop_size": 1024},
        label_nc=35, label_set="cityscapes", use_instance=True,
        manual=f"NVIDIA publishes it on Google Drive only: download latest_net_G.pth from {_NVIDIA_DRIVE} "
               "(the pix2pixHD README's link), then run `pix2pix download label2city_1024p --file "
               "latest_net_G.pth`."),
)}


def names() -> list[str]:
    return list(PUBLISHED)


def is_published(name: str) -> bool:
    return name in PUBLISHED


def get(name: str) -> PublishedModel:
    if name not in PUBLISHED:
        raise CheckpointError(f"'{name}' is not a published model; the published models are "
                              f"{', '.join(PUBLISHED)}.{did_you_mean(name, PUBLISHED)}")
    return PUBLISHED[name]


def home() -> Path:
    """The cache folder: PIX2PIX_HOME, else the per-user cache ($XDG_CACHE_HOME or ~/.cache, %LOCALAPPDATA%)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "pix2pix"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "pix2pix"


def cached_dir(name: str) -> Path:
    return home() / "models" / name


def is_cached(name: str) -> bool:
    return (cached_dir(name) / CONFIG_NAME).is_file()


def model_dir(name: str, *, progress: bool = False) -> Path:
    """The model directory of published model `name`, downloaded and converted on first use."""
    get(name)
    return cached_dir(name) if is_cached(name) else download(name, progress=progress)


def download(name: str, *, file: str | Path | None = None, progress: bool = False, force: bool = False) -> Path:
    """Download (or, with `file`, convert that file) and cache published model `name`; returns its directory.

    A cached model is returned as it is unless `force` or `file` is given (both replace it).
    """
    entry = get(name)
    downloads = home() / "downloads"
    with file_lock(downloads / f"{name}.lock"):  # one writer per name; a waiting process then finds the cache
        if file is not None:
            path = Path(file).expanduser()
            if not path.is_file():
                raise CheckpointError(f"{file} does not exist: pass the {name} checkpoint you downloaded "
                                      f"(--file FILE).")
            return _install(entry, path, str(path.resolve()), sha256_file(path))
        if is_cached(name) and not force:
            return cached_dir(name)
        if not entry.downloadable:
            raise Pix2PixError(f"{name} cannot be downloaded automatically: {entry.manual}")
        url = entry.url()
        raw = downloads / f"{name}.pth"
        sha256 = fetch(url, raw, progress=progress, manual=_manual_hint(entry, url))
        try:
            return _install(entry, raw, url, sha256)
        finally:  # converted, or not usable: either way the raw file is not kept
            raw.unlink(missing_ok=True)


def _manual_hint(entry: PublishedModel, url: str) -> str:
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in entry.arch_kwargs.items() if k in ("ngf", "norm"))
    where = f"{URL_ENV}'s address; " if os.environ.get(URL_ENV) else ""
    return (f"To get it by hand: download {url} ({where}e.g. in a browser), then run `pix2pix download {entry.name} "
            f"--file {entry.name}.pth` (or `pix2pix import-reference {entry.name}.pth --arch {entry.arch} {options} "
            f"--direction {entry.direction} -o DIR`).")


def _install(entry: PublishedModel, checkpoint: Path, source: str, sha256: str) -> Path:
    """Check and convert `checkpoint` into the cache, replacing what is there in one rename."""
    if entry.sha256 and sha256 != entry.sha256:
        raise CheckpointError(f"{source} has sha256 {sha256}, not the published {entry.name}'s {entry.sha256}: "
                              "the file is damaged or not the published one; download it again.")
    try:
        state = safe_torch_load(checkpoint, "", "")
    except CheckpointError as exc:
        first = str(exc).strip().splitlines()[0][:300]  # torch's reasons run over several lines
        raise CheckpointError(f"{source} is not a PyTorch checkpoint ({first}); check the address or the "
                              "file.") from None
    net = entry.build(as_state_dict(state, source), source)
    target = cached_dir(entry.name)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        save_model(tmp, entry.card(source, sha256), {"generator": net})
        _replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _replace_dir(new: Path, target: Path) -> None:
    """Move directory `new` to `target`; an existing `target` is moved aside first and then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
        os.replace(target, old)
    os.replace(new, target)
    fsync_directory(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def listing() -> list[dict[str, str]]:
    """One row per published model for `pix2pix download --list`."""
    rows = []
    for entry in PUBLISHED.values():
        if is_cached(entry.name):
            state = f"cached in {cached_dir(entry.name)}"
        elif part_path(home() / "downloads" / f"{entry.name}.pth").exists():
            state = "partly downloaded (resumes)"
        else:
            state = "--file FILE (see `pix2pix download " + entry.name + "`)" if entry.manual else "not downloaded"
        side = (f"the {entry.direction[0]} side of the {entry.dataset} A|B pairs" if entry.family == "pix2pix"
                else "label + instance maps")
        rows.append({"name": entry.name, "translates": entry.summary, "dataset": entry.dataset, "input": side,
                     "generator": entry.architecture(), "state": state})
    return rows


__all__ = ["PUBLISHED", "PublishedModel", "REFERENCE_URL", "cached_dir", "download", "get", "home", "is_cached",
           "is_published", "listing", "model_dir", "names"]
