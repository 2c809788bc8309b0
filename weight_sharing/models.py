"""Build a classifier from its config (built-in LeNet-5, timm or torchvision) and list its shared layers."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from .io import resolve_file

SOURCES = ("builtin", "timm", "torchvision")
BUILTIN = ("lenet5",)


class LeNet5(nn.Module):
    """LeNet-5: conv 6@5x5 pad 2, max-pool, conv 16@5x5, max-pool, fc 120, fc 84, fc classes; ReLU.

    ``dropout`` (before each fully connected layer) acts in training only; the
    evaluated network and its state_dict do not depend on it.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.dropout = dropout

    def forward(self, x):
        drop = nn.functional.dropout
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2).flatten(1)
        x = torch.relu(self.fc1(drop(x, self.dropout, self.training)))
        x = torch.relu(self.fc2(drop(x, self.dropout, self.training)))
        return self.fc3(drop(x, self.dropout, self.training))


# torchvision builders that change the architecture when they load weights: the constructor
# arguments they force, and the default of ``aux_logits`` that decides whether the auxiliary
# heads are removed after loading (torchvision's googlenet/inception_v3 builders)
_TORCHVISION_WEIGHT_KWARGS = {"googlenet": False, "inception_v3": True}


def architecture(model_cfg: dict) -> dict:
    """Everything needed to rebuild the evaluated module tree without weights: source, arch, kwargs.

    For torchvision with ``pretrained: true`` the kwargs are those torchvision's
    builder uses when it loads its weights (class count of the weights;
    googlenet/inception_v3: ``transform_input``, ``aux_logits`` after loading,
    ``init_weights``), so a model rebuilt from this record (by every stage, a
    cluster job and the export loader) computes exactly what the pretrained one does.
    """
    source, arch = model_cfg["source"], model_cfg["arch"]
    kwargs = dict(model_cfg.get("kwargs") or {})
    if source == "torchvision" and model_cfg.get("pretrained"):
        import torchvision

        if "weights" in kwargs:
            raise ValueError("model.kwargs.weights: set model.pretrained: true instead of passing torchvision weights")
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        categories = len(weights.meta["categories"])
        if kwargs.get("num_classes", categories) != categories:
            raise ValueError(f"model.kwargs.num_classes: {kwargs['num_classes']} with pretrained torchvision weights "
                             f"of {categories} classes; allowed: {categories} (or leave it out)")
        kwargs["num_classes"] = categories
        if arch in _TORCHVISION_WEIGHT_KWARGS:
            aux = kwargs.get("aux_logits", _TORCHVISION_WEIGHT_KWARGS[arch])
            kwargs.update(transform_input=bool(kwargs.get("transform_input", True)), aux_logits=bool(aux),
                          init_weights=False)
    return {"source": source, "arch": arch, "kwargs": kwargs}


def create_model(model_cfg: dict) -> nn.Module:
    """The architecture with random weights, or with the library's pretrained weights
    (``pretrained: true`` without ``checkpoint``: needs internet or a filled cache)."""
    source, arch = model_cfg["source"], model_cfg["arch"]
    pretrained = bool(model_cfg.get("pretrained", False))
    download = pretrained and not model_cfg.get("checkpoint")
    if source == "builtin":
        if arch != "lenet5":
            raise ValueError(f"model.arch: unknown built-in architecture {arch!r}; allowed: {', '.join(BUILTIN)}")
        if pretrained:
            raise ValueError("model.pretrained: the built-in LeNet-5 has no pretrained weights; give model.checkpoint")
        return LeNet5(**dict(model_cfg.get("kwargs") or {}))
    if source == "timm":
        import timm

        if not timm.is_model(arch):
            raise ValueError(f"model.arch: {arch!r} is not a timm architecture (see timm.list_models())")
        kwargs = dict(model_cfg.get("kwargs") or {})
        if not download:
            return timm.create_model(arch, **kwargs)
        try:
            return timm.create_model(arch, pretrained=True, **kwargs)
        except Exception as exc:  # offline, no cache, gated weights...
            raise ValueError(_offline_message(source, arch, exc)) from exc
    if source == "torchvision":
        import torchvision

        if arch not in torchvision.models.list_models():
            raise ValueError(f"model.arch: {arch!r} is not a torchvision architecture "
                             "(see torchvision.models.list_models())")
        kwargs = architecture(model_cfg)["kwargs"]
        if download:
            # the builder forces these itself when it loads weights (and refuses other values)
            user = {k: v for k, v in (model_cfg.get("kwargs") or {}).items()
                    if k not in ("num_classes", "aux_logits", "init_weights")}
            try:
                model = torchvision.models.get_model(arch, weights="DEFAULT", **user)
            except (OSError, RuntimeError) as exc:
                raise ValueError(_offline_message(source, arch, exc)) from exc
            if arch in _TORCHVISION_WEIGHT_KWARGS and not kwargs["aux_logits"] and model.aux_logits:
                model.aux_logits = False  # as the builder does for aux_logits=False
                for head in ("aux1", "aux2", "AuxLogits"):
                    if hasattr(model, head):
                        setattr(model, head, None)
            return model
        if arch in _TORCHVISION_WEIGHT_KWARGS:
            kwargs.setdefault("init_weights", False)  # skip scipy's slow truncated-normal init
        return torchvision.models.get_model(arch, **kwargs)
    raise ValueError(f"model.source: unknown source {source!r}; allowed: {', '.join(SOURCES)}")


def _offline_message(source: str, arch: str, exc: Exception) -> str:
    where = ("the Hugging Face cache ($HF_HOME, default ~/.cache/huggingface; set HF_HUB_OFFLINE=1 to use it "
             "offline)" if source == "timm" else "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch)")
    return (f"model.pretrained: could not load {source} pretrained weights for {arch!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Without internet, either fill {where} on a machine "
            f"that has internet and copy the cache, or copy the weights file itself (torchvision: the .pth it "
            f"downloads; timm: the model's model.safetensors) and set model.checkpoint: that file, keeping "
            f"pretrained: true (the architecture is then built as for the library's weights)")


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def map_keys(state: dict, own: dict, key_map: dict | None) -> dict:
    """A checkpoint's tensors renamed to the model's keys (``model.key_map``), for weights saved by another
    implementation of the same architecture (e.g. EfficientNet-Lite in the ``efficientnet-lite-pytorch``
    layout for timm's ``tf_efficientnet_lite*``).

    ``rules``: ``[pattern, replacement]`` regular-expression substitutions applied in order to every
    checkpoint key; ``by_position: true``: the i-th checkpoint tensor becomes the model's i-th (both in
    state_dict order, ``skip`` patterns removed from both first, e.g. ``num_batches_tracked``), the
    shapes checked pair by pair, a mismatch naming both keys. Afterwards the load is strict as always.
    """
    if not key_map:
        return state
    import re

    skip = [re.compile(p) for p in key_map.get("skip") or []]

    def kept(keys):
        return [k for k in keys if not any(p.search(k) for p in skip)]

    if key_map.get("by_position"):
        theirs, ours = kept(state), kept(own)
        if len(theirs) != len(ours):
            raise ValueError(f"model.key_map.by_position: the checkpoint has {len(theirs)} tensors, the model "
                             f"{len(ours)} (after skip {key_map.get('skip') or []})")
        for i, (a, b) in enumerate(zip(theirs, ours)):
            if tuple(state[a].shape) != tuple(own[b].shape):
                raise ValueError(f"model.key_map.by_position: tensor {i}: checkpoint {a!r} {tuple(state[a].shape)} "
                                 f"does not fit model {b!r} {tuple(own[b].shape)}")
        mapped = {b: state[a] for a, b in zip(theirs, ours)}
        # skipped keys the model has keep the model's own values (BatchNorm counters)
        return {**{k: v for k, v in own.items() if k not in mapped}, **mapped}
    mapped = {}
    for key, value in state.items():
        if any(p.search(key) for p in skip):
            continue
        for pattern, replacement in key_map.get("rules") or []:
            key = re.sub(pattern, replacement, key)
        mapped[key] = value
    return {**{k: v for k, v in own.items() if any(p.search(k) for p in skip)}, **mapped}


def load_checkpoint(model: nn.Module, path: str | Path, drop_prefixes: tuple[str, ...] = (),
                    key_map: dict | None = None) -> None:
    """Load a state_dict (torch.save, read with weights_only; or .safetensors), strictly.

    A checkpoint that does not fit the architecture raises ValueError naming the
    missing, unexpected or mis-shaped tensors; one with a NaN or infinite value
    raises ValueError naming the tensor. ``drop_prefixes``: keys of heads the
    architecture removes (torchvision's auxiliary heads), ignored when present;
    ``key_map``: how the checkpoint's keys become the model's (:func:`map_keys`).
    """
    try:
        path = Path(resolve_file(str(path)))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"model.checkpoint: {exc}") from exc
    if path.is_dir():
        raise ValueError(f"model.checkpoint: {str(path)!r} is a directory; allowed: a state_dict file "
                         "(torch.save .pt/.pth, or .safetensors)")
    if not path.is_file():
        raise FileNotFoundError(f"model.checkpoint: file {str(path)!r} does not exist")
    try:
        state = _read_state_dict(path)
    except Exception as exc:  # pickle errors, truncated files
        raise ValueError(f"model.checkpoint: cannot read {str(path)!r} as a state_dict: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"model.checkpoint: {str(path)!r} holds a {type(state).__name__}, not a state_dict")
    if drop_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}
    own = model.state_dict()
    state = map_keys(state, own, key_map)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatch {shapes[:5]}")
        raise ValueError(f"model.checkpoint: {str(path)!r} does not fit the architecture: " + "; ".join(parts))
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise ValueError(f"model.checkpoint: tensor {key!r} in {str(path)!r} has {bad} NaN or infinite "
                                 f"value(s) of {value.numel()}; every weight must be finite")
    model.load_state_dict(state)


def build_model(model_cfg: dict) -> nn.Module:
    """The configured model in eval mode: rebuilt from :func:`architecture` with the checkpoint loaded,
    or with the library's pretrained weights when no checkpoint is given."""
    if model_cfg.get("checkpoint"):
        spec = architecture(model_cfg)
        model = create_model({**spec, "pretrained": False})
        drop = ()
        if spec["source"] == "torchvision" and spec["arch"] in _TORCHVISION_WEIGHT_KWARGS \
                and model_cfg.get("pretrained") and not spec["kwargs"]["aux_logits"]:
            drop = ("aux1.", "aux2.", "AuxLogits.")  # torchvision's own weights file holds the removed heads
        load_checkpoint(model, model_cfg["checkpoint"], drop_prefixes=drop, key_map=model_cfg.get("key_map"))
    else:
        model = create_model(model_cfg)
        for name, p in model.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise ValueError(f"model.pretrained: tensor {name!r} of the pretrained weights is not finite")
    return model.eval()


def layer_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if module.groups == 1:
        return "conv"
    if module.groups == module.in_channels == module.out_channels:
        return "depthwise_conv"
    return "grouped_conv"


def conv_or_linear(module: nn.Module) -> bool:
    """Whether ``module`` is of a kind that gets a codebook: a Conv/Linear with a weight."""
    return isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) \
        and getattr(module, "weight", None) is not None


def called_layers(model: nn.Module, input_shape) -> list[str]:
    """Names of the Conv/Linear modules that the eval-mode forward pass calls on one probe image.

    Modules that never run at evaluation (Inception-v3's auxiliary head, heads
    used only in training) change nothing the evaluation measures: sharing them
    would inflate the compression rate for free.
    """
    called: list[str] = []
    _probe(model, input_shape, [m.register_forward_hook(lambda mod, i, o, n=name: called.append(n))
                                for name, m in model.named_modules() if conv_or_linear(m)])
    return list(dict.fromkeys(called))


def _probe(model: nn.Module, input_shape, hooks: list) -> None:
    """One eval-mode forward of a zero image (on the model's device and dtype) with ``hooks`` registered,
    which are removed after it; the model's mode is put back."""
    was_training = model.training
    param = next(model.parameters(), torch.zeros(()))
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def batchnorm_fed_layers(model: nn.Module, input_shape) -> list[str]:
    """Names of the Conv/Linear modules whose output, at every call of the eval-mode forward on one probe
    image, is itself the input of a BatchNorm (the same tensor: nothing in between).

    Re-estimating that BatchNorm's statistics after sharing (``correct.bn``) takes out any per-channel
    shift and scale the shared weights add to the layer's output, which is much of what refitting its
    codebook values to that output (``correct.centroids``) would correct.
    """
    outputs: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (layer, output kept alive)
    calls: dict[str, int] = {}
    fed: dict[str, int] = {}

    def after_layer(mod, args, out, name):
        calls[name] = calls.get(name, 0) + 1
        outputs[id(out)] = (name, out)

    def before_batchnorm(mod, args):
        hit = outputs.get(id(args[0]))
        if hit is not None and hit[1] is args[0]:
            fed[hit[0]] = fed.get(hit[0], 0) + 1

    hooks = [m.register_forward_hook(lambda mod, i, o, n=name: after_layer(mod, i, o, n))
             for name, m in model.named_modules() if conv_or_linear(m)]
    hooks += [m.register_forward_pre_hook(before_batchnorm) for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    _probe(model, input_shape, hooks)
    return [name for name, n in calls.items() if fed.get(name, 0) == n]


def shared_layers(model: nn.Module, names=None) -> list[tuple[str, nn.Module]]:
    """The layers that get a codebook, in definition order: every Conv/Linear module with a weight
    (grouped and depthwise convolutions included), or only those in ``names`` (the layer table's,
    i.e. those the evaluated forward pass calls). Biases and normalisation stay 32-bit.
    """
    keep = None if names is None else set(names)
    out = [(name, m) for name, m in model.named_modules()
           if conv_or_linear(m) and (keep is None or name in keep)]
    if not out:
        raise ValueError("the model has no Conv/Linear layer to share")
    if keep is not None and len(out) != len(keep):
        missing = sorted(keep - {n for n, _ in out})
        raise ValueError(f"layers {missing} are not Conv/Linear layers of the model")
    return out


def layer_records(model: nn.Module, input_shape) -> list[dict]:
    """One record per shared layer (those the evaluated forward calls): name, kind, shape, weights
    (count), energy (sum of squared weights)."""
    names = called_layers(model, input_shape)
    return [{"name": name, "kind": layer_kind(m), "shape": list(m.weight.shape),
             "weights": int(m.weight.numel()),
             "energy": float(m.weight.detach().double().pow(2).sum())} for name, m in shared_layers(model, names)]


def unshared_layers(model: nn.Module, input_shape) -> list[str]:
    """Conv/Linear layers the evaluated forward never calls (kept as they are, and reported)."""
    called = set(called_layers(model, input_shape))
    return [name for name, m in model.named_modules() if conv_or_linear(m) and name not in called]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
