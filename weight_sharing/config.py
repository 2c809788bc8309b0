"""Configuration: the JSON schema (shape, defaults) and the checks a schema cannot make.

The workflow validates the schema with ``snakemake.utils.validate`` and then
asks :func:`workflow_plan` for what its rules need; the plan comes from
:func:`check_config`, run before any job, so a bad value stops the run with a
message naming the key, the value and what is allowed. The plan is kept between
parses (``snakemake -n``, every rerun) while nothing it was made from changed, so
a parse then imports no torch: this module imports torch and the models only
where a check builds one.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from importlib.resources import files
from pathlib import Path

import yaml

from .bound import network_bound
from .data import SELECT, check_demo_sizes, check_disjoint, check_npz
from .grid import resolve_grid, uniform_k_values
from .io import resolve_file

SCHEMA_PATH = str(files("weight_sharing") / "schemas" / "config.schema.yaml")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names key, value and what is allowed."""


def load_schema() -> dict:
    return yaml.safe_load(Path(SCHEMA_PATH).read_text())


def validate_schema(config: dict) -> dict:
    """jsonschema validation with defaults filled in (the same as snakemake.utils.validate)."""
    import jsonschema

    base = jsonschema.Draft202012Validator
    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for prop, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(prop, _copy(sub["default"]))
        yield from validate_props(validator, properties, instance, schema)

    validator = jsonschema.validators.extend(base, {"properties": set_defaults})(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "(top level)"
        raise ConfigError(f"config key {where}: {e.message}")
    return config


def _copy(v):
    import copy
    return copy.deepcopy(v)


def network_demo(config: dict, net: str) -> dict | None:
    """The demo settings of a demo network (the ``demo`` section, overridden by the network's own ``demo``
    mapping), None for a network with its own data."""
    own = config["networks"][net].get("demo")
    if not own:
        return None
    return {**config["demo"], **(own if isinstance(own, dict) else {})}


def demo_image_shape(demo: dict) -> tuple[int, int, int]:
    """C x H x W of a demo network's images."""
    return (int(demo["channels"]), int(demo["image_size"]), int(demo["image_size"]))


def network_paths(results: str, net: str, net_cfg: dict) -> dict:
    """Where a network's checkpoint and evaluation .npz come from (made by the workflow for the
    demo, and decoded from the image folder for ``data.root``); a ``package:`` checkpoint is resolved
    to the file in the installed package (:func:`weight_sharing.io.resolve_file`). ``init``: the weights a
    demo network's training starts from (its ``model.checkpoint``), or None."""
    given = net_cfg["model"].get("checkpoint")
    given = resolve_file(given) if given else None
    if net_cfg.get("demo"):
        return {"checkpoint": f"{results}/{net}/demo/checkpoint.pt", "npz": f"{results}/{net}/demo/data.npz",
                "init": given}
    data = net_cfg["data"]
    npz = data["npz"] if data.get("npz") else f"{results}/{net}/data.npz"
    return {"checkpoint": given, "npz": npz, "init": None}


def model_config(results: str, net: str, net_cfg: dict) -> dict:
    """The model section with the checkpoint path resolved. A demo network's checkpoint is the one the
    workflow trained, in the model's own layout: its ``key_map`` (for the starting weights) is dropped."""
    cfg = dict(net_cfg["model"])
    cfg["checkpoint"] = network_paths(results, net, net_cfg)["checkpoint"]
    if net_cfg.get("demo"):
        cfg.pop("key_map", None)
    return cfg


def check_network(config: dict, net: str) -> list[dict]:
    """Check one network's model and data before any work; return its shared-layer table.

    ``select.split: unlabelled`` needs selection images: a demo network's are ``demo.n_select`` digits
    held out of training, a network's own .npz must hold ``x_select`` (its training images cannot stand
    in: a network may change far fewer of its predictions on them, measured 2.3x and 12.6x fewer on two
    benchmark networks, benchmarks/README.md)."""
    from .models import build_model, create_model, layer_records

    net_cfg = config["networks"][net]
    key = f"networks.{net}"
    model_cfg = net_cfg["model"]
    demo = network_demo(config, net)
    if demo is not None:
        if net_cfg.get("data") or model_cfg.get("pretrained"):
            raise ConfigError(f"{key}.demo: a demo network is trained by the workflow on its own data; remove "
                              "model.pretrained and data (pretrained weights to start from: model.checkpoint)")
        if model_cfg.get("key_map") and not model_cfg.get("checkpoint"):
            raise ConfigError(f"{key}.model.key_map: given without model.checkpoint (the weights it maps)")
        if model_cfg.get("checkpoint") and model_cfg["source"] == "builtin":
            raise ConfigError(f"{key}.model.checkpoint: the built-in {model_cfg['arch']} has no pretrained "
                              "weights to start from; allowed with source timm or torchvision")
        try:
            check_demo_sizes(demo["n_train"], demo["n_calib"], demo["n_test"], demo["n_select"])
            model = (build_model(model_cfg) if model_cfg.get("checkpoint")
                     else create_model(model_cfg)).eval()
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(f"{key}.{exc}") from exc
        shape = demo_image_shape(demo)
        _num_classes(model, shape, f"{key}.demo: the MNIST digits ({' x '.join(map(str, shape))})")
        if config["select"]["split"] == "unlabelled" and demo["n_select"] < 1:
            raise ConfigError(f"select.split: unlabelled, but demo.n_select is 0: the demo network {net!r} has no "
                              "held-out selection images; set demo.n_select >= 1 (digits held out of training) or "
                              "select.split: calib")
        check_selection_images(config, net, demo["n_calib"], demo["n_select"])
        return layer_records(model, shape)
    if "data" not in net_cfg:
        raise ConfigError(f"{key}.data: missing; give data.npz (or set demo: true for the built-in demo)")
    if not model_cfg.get("checkpoint") and not model_cfg.get("pretrained"):
        raise ConfigError(f"{key}.model.checkpoint: none given and pretrained is false; "
                          "give a local state_dict path or set pretrained: true")
    try:
        model = build_model(model_cfg)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"{key}.{exc}") from exc
    data = net_cfg["data"]
    if bool(data.get("npz")) == bool(data.get("root")):
        raise ConfigError(f"{key}.data: give exactly one of npz (ready splits) or root (an image folder)")
    if data.get("root"):
        if config["select"]["split"] == "unlabelled":
            raise ConfigError(f"select.split: unlabelled needs unlabelled selection images, but {key}.data.root (an "
                              "image folder) has none; decode it to an .npz, add x_select and give data.npz, or set "
                              "select.split: calib")
        return _check_image_folder(config, net, model, model_cfg, data)
    try:
        info = check_npz(net_cfg["data"]["npz"])
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"{key}.{exc}") from exc
    # one image through the model: the image shape fits, and the labels fit the classes
    num_classes = _num_classes(model, info["image_shape"],
                               f"{key}.data.npz: images of shape {tuple(info['image_shape'])}")
    try:
        check_npz(net_cfg["data"]["npz"], num_classes=num_classes)
    except ValueError as exc:
        raise ConfigError(f"{key}.{exc} (the model has {num_classes} classes)") from exc
    if config["select"]["split"] == "unlabelled" and SELECT not in info:
        raise ConfigError(f"select.split: unlabelled, but {key}.data.npz {data['npz']!r} has no x_select array "
                          "(uint8 N x C x H x W unlabelled images); add one or set select.split: calib")
    try:
        check_disjoint(net_cfg["data"]["npz"], allow_shared=bool(data.get("allow_shared_images")),
                       splits=("calib", SELECT) if SELECT in info else ("calib",))
    except ValueError as exc:
        raise ConfigError(f"{key}.{exc}") from exc
    check_selection_images(config, net, info["calib"], info.get(SELECT))
    return layer_records(model, info["image_shape"])


def _num_classes(model, image_shape, images: str) -> int:
    """Outputs of the (eval-mode) model for one blank image; ConfigError if the shape does not fit."""
    import torch

    try:
        with torch.inference_mode():
            out = model(torch.zeros(1, *image_shape))
    except RuntimeError as exc:
        raise ConfigError(f"{images} do not fit the model: {str(exc).splitlines()[0]}") from exc
    return int(out.shape[-1])


def _check_image_folder(config: dict, net: str, model, model_cfg: dict, data: dict) -> list[dict]:
    """Layout, classes, split sizes and the model's input, before any decoding."""
    from .images import list_images, split_per_class
    from .models import layer_records

    key = f"networks.{net}"
    try:
        _, labels, classes = list_images(data)
        calib, _ = split_per_class(labels, int(data["calib_per_class"]), int(data["seed"]))
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"{key}.{exc}") from exc
    check_selection_images(config, net, len(calib))
    shape = input_shape(model, model_cfg, data)
    num_classes = _num_classes(model, shape, f"{key}.data: images of {shape[-1]} px")
    if len(classes) > num_classes:
        raise ConfigError(f"{key}.data.root: {len(classes)} classes but the model has {num_classes} outputs; "
                          f"labels must lie in 0..{num_classes - 1}")
    return layer_records(model, shape)


def input_shape(model, model_cfg: dict, data: dict | None, demo: dict | None = None) -> tuple[int, ...]:
    """C x H x W of the images the network is evaluated on (from the .npz header, the image
    folder's preprocessing, or the ``demo`` settings of a demo network)."""
    if demo is not None:
        return demo_image_shape(demo)
    if data.get("npz"):
        return tuple(check_npz(data["npz"])["image_shape"])
    from .images import model_preprocessing

    crop = model_preprocessing(model, model_cfg, data.get("image_size")).crop
    return (3, crop, crop)


class TooFewImagesWarning(UserWarning):
    """No point can be chosen on so few images: the run measures and exports the closest, flagged."""


def check_selection_images(config: dict, net: str, calib_images: int, select_images: int | None = None) -> None:
    """A warning, before any job, when no point could ever be chosen on the images the rule decides on (the
    calibration images, or the selection images under ``select.split: unlabelled``): not even one that
    changes no prediction passes the rule. Not an error: the run still measures every point and exports
    the closest, flagged."""
    from .bound import SelectRule, images_needed, passes_unchanged

    rule, bound = SelectRule.from_config(config["select"]), network_bound(config, net)
    images = select_images if rule.split == "unlabelled" else calib_images
    if passes_unchanged(images, bound, rule):
        return
    what = "selection" if rule.split == "unlabelled" else "calibration"
    test = "the exact binomial bound" if rule.split == "unlabelled" else f"select.interval: {rule.interval}"
    shared = f" shared by select.failures: {rule.failures} + 1 points" if rule.failures else ""
    fewer = " or fewer failures" if rule.failures else ""
    warnings.warn(f"networks.{net}: {images} {what} images cannot show a {1 - bound:.0%} loss bound at "
                  f"select.confidence {rule.confidence:g}{shared} by {test}, even for a point that changes no "
                  f"prediction, so no point will be chosen (the export takes the closest, flagged); it takes at "
                  f"least {images_needed(bound, rule)} images, or a lower select.confidence{fewer} (or, with the "
                  "labelled calibration images, select.interval: normal, an approximation)", TooFewImagesWarning,
                  stacklevel=2)


def check_config(config: dict) -> dict[str, list[dict]]:
    """All checks beyond the schema; returns each network's shared-layer table (for per-layer jobs)."""
    results = Path(config["results"])
    if results.exists() and not results.is_dir():
        raise ConfigError(f"results: {str(results)!r} is a file; allowed: a folder (created if missing)")
    try:
        grid = resolve_grid(config["sweep"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if not uniform_k_values(config["sweep"], config["uniform"]):
        raise ConfigError(f"uniform.k_max: {config['uniform']['k_max']} is below every K of the sweep grid "
                          f"(smallest {grid[0]})")
    ev = config["evaluation"]
    if ev["device"] != "auto" and not ev["device"].startswith(("cpu", "cuda")):
        raise ConfigError(f"evaluation.device: {ev['device']!r}; allowed: auto, cpu, cuda, cuda:N")
    if config["sample"]["shards"] > config["sample"]["n"]:
        raise ConfigError(f"sample.shards: {config['sample']['shards']} exceeds sample.n ({config['sample']['n']})")
    check_format_libraries(config)
    layers = {net: check_network(config, net) for net in config["networks"]}
    check_sharing(config["sharing"], layers)
    check_formats(config, layers)
    check_statistics_kinds(config, layers)
    return layers


def check_statistics_kinds(config: dict, layers: dict[str, list[dict]]) -> None:
    """The calibration statistics (bias correction, centroid refit) unfold Linear, Conv1d and Conv2d inputs;
    a Conv3d layer stops the run when a correction needs them, naming the layer."""
    from .correct import LAYER_STATISTICS, needed_statistics

    if not set(needed_statistics(config["correct"], refit=True)) & set(LAYER_STATISTICS):
        return
    for net, table in layers.items():
        for l in table:
            if len(l["shape"]) > 4:
                raise ConfigError(f"correct: layer {l['name']!r} of {net!r} is a {len(l['shape']) - 2}-D convolution, "
                                  "whose inputs the calibration statistics cannot unfold (Linear, Conv1d and Conv2d "
                                  "only); set correct.centroids: false and correct.bias: false for this network")


def check_format_libraries(config: dict) -> None:
    """Every export format asked for (``export.formats``, ``candidates.formats``) has its library installed."""
    from .formats import EXPORT_FORMATS

    for key in ("export", "candidates"):
        for name in config[key].get("formats") or []:
            missing = EXPORT_FORMATS[name].missing_libraries()
            if missing:
                raise ConfigError(f"{key}.formats: {name} needs {', '.join(missing)}, which is not installed "
                                  f"(pip install {' '.join(missing)}), or remove {name!r}")


def check_formats(config: dict, layers: dict[str, list[dict]]) -> None:
    """A format that needs grouped codebooks to split the output channels evenly (Core ML's LUTs per group
    of channels) stops the run when a layer's last group would be short, naming the layer."""
    from .formats import EXPORT_FORMATS
    from .sharing import group_count

    sharing = config["sharing"]
    if sharing["granularity"] != "grouped_channel":
        return
    group = sharing["group"]
    for name in config["export"].get("formats") or []:
        if not EXPORT_FORMATS[name].equal_groups:
            continue
        for net, table in layers.items():
            for l in table:
                out = l["shape"][0]
                if group_count(out, group) > 1 and out % group:
                    raise ConfigError(f"export.formats: {name} needs codebook groups that split the output channels "
                                      f"evenly, but layer {l['name']!r} of {net!r} has {out} channels and "
                                      f"sharing.group is {group}; allowed: a group dividing every layer's channels "
                                      f"(1 does), or remove {name!r}")


def check_sharing(sharing: dict, layers: dict[str, list[dict]]) -> None:
    """Grouped codebooks need groups smaller than some layer: a group at least as large as every
    layer's output channels would give one codebook per layer, the per-tensor setting by another name."""
    group = sharing["group"]  # >= 1 by the schema
    if sharing["granularity"] != "grouped_channel":
        return
    for net, table in layers.items():
        widest = max(l["shape"][0] for l in table)
        if group >= widest:
            raise ConfigError(f"sharing.group: {group} is not smaller than the output channels of any shared layer of "
                              f"{net!r} (at most {widest}); allowed: 1..{widest - 1}, or sharing.granularity: tensor")


def architecture_layers(config: dict) -> dict[str, list[dict]]:
    """Each network's shared layers from its architecture alone (no weights, no data).

    For the jobs a cluster runs: the submitting process has already run
    :func:`check_config`; a job needs only the layer names to rebuild its DAG.
    """
    from .models import architecture, create_model, layer_records

    out = {}
    for net, net_cfg in config["networks"].items():
        model_cfg = {**architecture(net_cfg["model"]), "pretrained": False}
        model = create_model(model_cfg).eval()
        shape = input_shape(model, model_cfg | {"pretrained": net_cfg["model"].get("pretrained")},
                            net_cfg.get("data"), network_demo(config, net))
        out[net] = [{"name": l["name"], "weights": l["weights"]} for l in layer_records(model, shape)]
    return out


PLAN_FORMAT = 1


def _stat(path) -> list | None:
    """Size and modification time of a file (None if absent): what says it changed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def plan_key(config: dict) -> str | None:
    """A digest of everything the plan is made from: the whole config, the library's own source and schema,
    and each network's checkpoint and .npz; None when a network reads an image folder (its listing is
    checked afresh every time)."""
    inputs = {}
    for net, net_cfg in config["networks"].items():
        if (net_cfg.get("data") or {}).get("root"):
            return None
        try:
            paths = network_paths(config["results"], net, net_cfg)
        except FileNotFoundError:
            return None  # a checkpoint that cannot be found: check_config says which
        if not net_cfg.get("demo"):
            inputs[net] = {str(paths["checkpoint"]): _stat(paths["checkpoint"]) if paths["checkpoint"] else None,
                           str(paths["npz"]): _stat(paths["npz"])}
        elif paths["init"]:
            inputs[net] = {str(paths["init"]): _stat(paths["init"])}
    package = Path(__file__).parent
    source = {str(f.relative_to(package)): _stat(f) for f in sorted(package.glob("*.py"))}
    source["schema"] = _stat(SCHEMA_PATH)
    blob = json.dumps({"format": PLAN_FORMAT, "config": config, "inputs": inputs, "source": source},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def plan_path(config: dict, state_dir: str | Path = ".snakemake") -> Path:
    """Where the plan of a results folder is kept: beside Snakemake's own state of the working directory."""
    results = os.path.abspath(config["results"])
    return Path(state_dir) / "weight_sharing" / f"plan-{hashlib.sha256(results.encode()).hexdigest()[:16]}.json"


def workflow_plan(config: dict, remote: bool = False, state_dir: str | Path = ".snakemake") -> dict:
    """What the rules need from a (schema-validated) config, checked once before any job.

    ``layers``: each network's shared layers (name, weights); ``statistics``: the calibration statistics
    the sweep (``refit``) and the other evaluating stages (``evaluation``) read under ``correct``
    (``correct.needed_statistics``; empty: no calibration stage). Made by :func:`check_config` (or, on a
    cluster node, ``remote``, from the architectures alone: the submitting host checked) and kept under
    ``state_dir`` while :func:`plan_key` is unchanged, so a later parse builds no model and imports no torch.
    """
    key = None if remote else plan_key(config)
    path = plan_path(config, state_dir)
    if key is not None and path.is_file():
        try:
            kept = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            kept = {}
        if kept.get("key") == key:
            return kept["plan"]
    from .correct import needed_statistics

    layers = architecture_layers(config) if remote else check_config(config)
    plan = {"layers": {net: [{"name": l["name"], "weights": int(l["weights"])} for l in table]
                       for net, table in layers.items()},
            "statistics": {"refit": list(needed_statistics(config["correct"], refit=True)),
                           "evaluation": list(needed_statistics(config["correct"]))}}
    if key is not None:
        from .io import write_json

        write_json({"key": key, "plan": plan}, path)
    return plan


def evaluation_params(config: dict) -> dict:
    """The evaluation settings a result depends on (the thread count changes none, so it is left out
    and changing it reruns nothing)."""
    return {k: v for k, v in config["evaluation"].items() if k != "threads"}


def load_config(path: str | Path) -> dict:
    """Read and schema-validate a config file (for tools and tests outside Snakemake)."""
    with open(path) as f:
        return validate_schema(yaml.safe_load(f) or {})


__all__ = ["ConfigError", "SCHEMA_PATH", "architecture_layers", "check_config", "evaluation_params", "input_shape",
           "load_config", "model_config", "network_bound", "network_demo", "network_paths", "validate_schema",
           "workflow_plan"]
