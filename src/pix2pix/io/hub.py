"""Models on the Hugging Face Hub (the optional ``[hub]`` extra: ``pip install "pix2pix[hub]"``).

    --model hf://org/name            # any verb that takes a model; @revision picks a branch, tag or commit
    pix2pix push MODEL_DIR org/name  # config.json, weights, clusters and a README written from the card

Loading goes through ``huggingface_hub.snapshot_download``, so its cache (``HF_HUB_CACHE``,
``HF_HOME``), offline mode (``HF_HUB_OFFLINE=1``: the cache only), endpoint (``HF_ENDPOINT``) and
token (``HF_TOKEN`` or ``hf auth login``) apply; the snapshot folder it returns is the model
directory. Only the files a model directory holds are fetched.

Pushing creates the repository if needed (``--private``), the branch when ``--revision`` names one
that does not exist, and one commit with the model's files and a README.md generated from the
card: what the model translates, the recipe, the metrics when known, where it came from, and how
to load it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, Pix2PixError
from .model_card import CLUSTER_FILES, CONFIG_NAME, WEIGHTS, ModelCard

SCHEME = "hf://"
MODEL_FILES = (CONFIG_NAME, *WEIGHTS.values(), *CLUSTER_FILES)
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_INSTALL = 'install the optional Hub support: pip install "pix2pix[hub]" (huggingface_hub)'


def parse(spec: str) -> tuple[str, str | None]:
    """'hf://org/name[@revision]' -> ('org/name', revision or None)."""
    rest = spec[len(SCHEME):] if spec.startswith(SCHEME) else spec
    repo_id, sep, revision = rest.partition("@")
    if not _REPO_ID.match(repo_id) or repo_id.endswith((".", "-")) or (sep and not revision):
        raise CheckpointError(f"{spec}: expected hf://org/name or hf://org/name@revision (a branch, tag or commit).")
    return repo_id, revision or None


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise Pix2PixError(f"Hugging Face Hub models need huggingface_hub: {_INSTALL}.") from None
    return huggingface_hub


def _endpoint() -> str | None:
    """HF_ENDPOINT as it is now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if show or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


def model_dir(spec: str, *, progress: bool = False) -> Path:
    """The local snapshot folder of hf://org/name[@revision], downloaded into the HF cache when needed."""
    repo_id, revision = parse(spec)
    hf = _hub()
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    try:
        with _progress_bars(progress):
            folder = Path(hf.snapshot_download(repo_id, revision=revision, allow_patterns=list(MODEL_FILES),
                                               local_files_only=offline, cache_dir=os.environ.get("HF_HUB_CACHE"),
                                               endpoint=_endpoint(), library_name="pix2pix"))
    except RevisionNotFoundError:
        raise CheckpointError(f"{spec}: {repo_id} has no revision {revision!r} (a branch, tag or commit).") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{spec}: no such model repository on the Hub, or it is private or gated: check the "
                              "name, or log in (`hf auth login` or HF_TOKEN) with access to it.") from None
    except LocalEntryNotFoundError as exc:
        if offline:
            cache = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
            raise CheckpointError(f"{spec} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: "
                                  "unset it (or download the model once with network access).") from None
        raise CheckpointError(f"{spec}: the Hub cannot be reached and the model is not cached "
                              f"({str(exc).splitlines()[-1][:200]}).") from None
    except OSError as exc:  # HTTP errors of the Hub (HfHubHTTPError is an OSError), disk errors
        raise CheckpointError(f"{spec}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{spec}: the repository has no {CONFIG_NAME}, so it is not a pix2pix model "
                              "(`pix2pix push MODEL_DIR org/name` uploads one).")
    return folder


# -- pushing ---------------------------------------------------------------------------------------

def model_files(directory: str | Path, card: ModelCard) -> list[Path]:
    """The files of a model directory that a push uploads: the card, each network's weights, clusters."""
    directory = Path(directory)
    files = [directory / CONFIG_NAME]
    for kind, name in WEIGHTS.items():
        if card.network(kind) is not None:
            path = directory / name
            if not path.is_file():
                raise CheckpointError(f"{path} is missing: the card lists a {kind} but the directory has no "
                                      "weights for it.")
            files.append(path)
    files += [directory / name for name in CLUSTER_FILES if (directory / name).is_file()]
    return files


def push(directory: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
         token: str | None = None, message: str | None = None) -> str:
    """Upload the model in `directory` to Hub repository `repo_id` in one commit; returns the commit's URL."""
    directory = Path(directory)
    repo_id, _ = parse(repo_id)
    card = ModelCard.read(directory)
    files = model_files(directory, card)
    readme = readme_for(card, repo_id, revision)
    hf = _hub()
    from huggingface_hub import CommitOperationAdd

    api = hf.HfApi(endpoint=_endpoint(), token=token, library_name="pix2pix")
    operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode("utf-8")))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = api.create_commit(repo_id, operations, repo_type="model", revision=revision,
                                 commit_message=message or f"Upload pix2pix model ({card.family})")
    except OSError as exc:  # HfHubHTTPError, connection errors
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401 or status == 403:
            raise Pix2PixError(f"push to {repo_id}: the Hub refused the token (HTTP {status}): log in with `hf auth "
                               "login`, set HF_TOKEN or pass --token, with write access to the namespace.") from None
        raise Pix2PixError(f"push to {repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
    except ValueError as exc:  # e.g. the README's metadata refused by the Hub's validator
        raise Pix2PixError(f"push to {repo_id}: {str(exc).splitlines()[0][:300]}") from None
    return str(getattr(info, "commit_url", info))


# -- the README ------------------------------------------------------------------------------------

_RECIPE_KEYS = (("model", ("family", "generator", "ngf", "norm", "dropout", "upsample", "discriminator", "ndf",
                           "n_layers_d", "num_d", "use_features")),
                ("loss", ("gan_mode", "lambda_gan", "lambda_l1", "lambda_feat", "lambda_vgg")),
                ("optim", ("lr", "beta1", "n_epochs", "n_epochs_decay", "lr_policy")),
                ("train", ("batch_size", "max_steps", "precision")),
                ("data", ("preprocess", "load_size", "crop_size", "flip", "direction", "label_set")))


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _what_it_translates(card: ModelCard) -> list[str]:
    d = card.data
    if card.family == "pix2pixhd" and card.labels is not None:
        labels = card.labels
        inputs = (f"a label map of {labels.label_nc} classes (one-hot encoded)" if labels.label_nc
                  else "an RGB image")
        if labels.use_instance:
            inputs += " with its instance map (object boundaries as one more channel)"
        lines = [f"pix2pixHD: {inputs} in, a {card.out_channels}-channel image out."]
        if card.use_features:
            lines.append(f"Instance-wise features: a {card.feat_num}-channel encoder; styles come from the "
                         "clusters (`--features cluster`) or from real images (`--features encode`).")
        label_set = card.label_set()
        if label_set is not None:
            names = ", ".join(f"{i} {n}" for i, n in enumerate(label_set.class_names))
            lines.append(f"Label set `{label_set.name}`: {names}.")
        return lines
    colour = "Lab (L in, ab out)" if d.color_space == "lab" else "RGB"
    side = "A" if d.direction == "AtoB" else "B"
    edges = " plus its instance map's boundaries (`--instances`)" if d.instance_edges else ""
    return [f"pix2pix: a {card.image_channels}-channel image{edges} in, a {card.out_channels}-channel image out "
            f"({colour}); trained {d.direction}: the input is the {side} side of the A|B training pairs."]


def readme_for(card: ModelCard, repo_id: str, revision: str | None = None) -> str:
    """The repository README written from the card: front matter, what it does, recipe, metrics, provenance, use."""
    p, d = card.provenance, card.data
    tags = ["pix2pix", card.family, "image-to-image", "gan", "conditional-gan"]
    tags = list(dict.fromkeys(tags))
    label_set = card.label_set()
    front = ["---", "library_name: pix2pix", "pipeline_tag: image-to-image", "tags:"] + [f"- {t}" for t in tags]
    if label_set is not None and label_set.name in ("cityscapes", "ade20k", "coco_stuff", "facades"):
        front.append(f"datasets:\n- {label_set.name}")
    front.append("---")
    spec = f"hf://{repo_id}" + (f"@{revision}" if revision and revision != "main" else "")
    out = front + ["", f"# {repo_id}", "", "A paired image-to-image translation model saved by the `pix2pix` "
                   "library (`config.json` is its model card, the weights are safetensors).", "",
                   "## What it translates", ""]
    out += _what_it_translates(card)
    out += ["", f"Training images: preprocess `{d.preprocess}`, load size {d.load_size}, crop size {d.crop_size}; "
            "`translate` takes any size (padded to the multiple the generator needs).",
            "", "| network | architecture | channels | options |", "|---|---|---|---|"]
    for kind in WEIGHTS:
        net = card.network(kind)
        if net is not None:
            options = ", ".join(f"{k}={_cell(v)}" for k, v in net.kwargs.items()) or "defaults"
            out.append(f"| {kind} | `{net.name}` | {net.in_channels} -> {net.out_channels} | {options} |")

    out += ["", "## Recipe", ""]
    if p.preset or p.recipe:
        if p.preset:
            out.append(f"Preset `{p.preset}`" + (f", {p.step:,} training steps." if p.step is not None else "."))
        rows = [(f"{section}.{key}", p.recipe[section][key]) for section, keys in _RECIPE_KEYS
                for key in keys if isinstance(p.recipe.get(section), dict) and key in p.recipe[section]]
        if rows:
            out += ["", "| setting | value |", "|---|---|"] + [f"| `{k}` | {_cell(v)} |" for k, v in rows]
        if p.recipe:
            out += ["", "<details><summary>The full training configuration</summary>", "", "```json",
                    json.dumps(p.recipe, indent=2, sort_keys=True), "```", "", "</details>"]
    elif p.source:
        out.append(f"Converted from a checkpoint of the reference implementation (`{p.source}`); trained with "
                   "the reference's recipe.")
    else:
        out.append("Not recorded.")

    out += ["", "## Metrics", ""]
    rows = [(split, name, value) for split, values in p.metrics.items()
            for name, value in (values.items() if isinstance(values, dict) else [("", values)])]
    if rows:
        out += ["| split | metric | value |", "|---|---|---|"]
        out += [f"| {_cell(s)} | {_cell(n)} | {_cell(round(v, 4) if isinstance(v, float) else v)} |"
                for s, n, v in rows]
    else:
        out.append("Not measured yet (`pix2pix eval` measures them).")

    out += ["", "## Provenance", ""]
    facts = [("training steps", f"{p.step:,}" if p.step is not None else ""), ("converted from", p.source),
             ("sha256 of that file", p.sha256), ("created", p.created)]
    out += [f"- {k}: `{v}`" for k, v in facts if v] or ["- not recorded"]

    example = "label_maps/ --instances instance_maps/" if card.family == "pix2pixhd" else "input.png"
    out += ["", "## Use", "", "```bash", 'pip install "pix2pix[hub]"',
            f"pix2pix translate --model {spec} {example} -o out/", "```", "", "```python",
            "from pix2pix.inference import load_translator", "",
            f'translator = load_translator("{spec}")', "```", ""]
    return "\n".join(out)
