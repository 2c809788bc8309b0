"""Build a classifier from its config (built-in LeNet-5, timm or torchvision) and list its shared layers."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

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


def architecture_names(source: str) -> list[str]:
    """Names the given source can build (for error messages)."""
    if source == "builtin":
        return list(BUILTIN)
    if source == "timm":
        import timm
        return timm.list_models()
    if source == "torchvision":
        import torchvision
        return torchvision.models.list_models()
    raise ValueError(f"model.source: unknown source {source!r}; allowed: {', '.join(SOURCES)}")


def create_model(model_cfg: dict) -> nn.Module:
    """The architecture with random (or library-pretrained) weights, no checkpoint loaded."""
    source, arch = model_cfg["source"], model_cfg["arch"]
    kwargs = dict(model_cfg.get("kwargs") or {})
    pretrained = bool(model_cfg.get("pretrained", False))
    if source == "builtin":
        if arch != "lenet5":
            raise ValueError(f"model.arch: unknown built-in architecture {arch!r}; allowed: {', '.join(BUILTIN)}")
        if pretrained:
            raise ValueError("model.pretrained: the built-in LeNet-5 has no pretrained weights; give model.checkpoint")
        return LeNet5(**kwargs)
    if source == "timm":
        import timm
        if not timm.is_model(arch):
            raise ValueError(f"model.arch: {arch!r} is not a timm architecture (see timm.list_models())")
        if not pretrained:
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
        if pretrained:
            kwargs.setdefault("weights", "DEFAULT")
        elif arch in ("googlenet", "inception_v3"):
            kwargs.setdefault("init_weights", False)  # skip scipy's slow truncated-normal init
        try:
            return torchvision.models.get_model(arch, **kwargs)
        except (OSError, RuntimeError) as exc:
            if not pretrained:
                raise
            raise ValueError(_offline_message(source, arch, exc)) from exc
    raise ValueError(f"model.source: unknown source {source!r}; allowed: {', '.join(SOURCES)}")


def _offline_message(source: str, arch: str, exc: Exception) -> str:
    where = ("the Hugging Face cache ($HF_HOME, default ~/.cache/huggingface; set HF_HUB_OFFLINE=1 to use it "
             "offline)" if source == "timm" else "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch)")
    return (f"model.pretrained: could not load {source} pretrained weights for {arch!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Without internet, either fill {where} by "
            f"creating the model once with pretrained weights on a machine that has internet and copying the "
            f"cache, or save its state_dict there (torch.save(model.state_dict(), 'w.pt')) and set "
            f"model.checkpoint: w.pt with pretrained: false")


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a state_dict saved with torch.save, safely (weights_only), strictly.

    A checkpoint that does not fit the architecture raises ValueError naming the
    missing, unexpected or mis-shaped tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.checkpoint: file {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files
        raise ValueError(f"model.checkpoint: cannot read {str(path)!r} as a state_dict: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"model.checkpoint: {str(path)!r} holds a {type(state).__name__}, not a state_dict")
    own = model.state_dict()
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
    model.load_state_dict(state)


def build_model(model_cfg: dict) -> nn.Module:
    """The configured model in eval mode, checkpoint loaded when one is given."""
    model = create_model(model_cfg)
    if model_cfg.get("checkpoint"):
        load_checkpoint(model, model_cfg["checkpoint"])
    return model.eval()


def layer_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return "linear"
    if module.groups == 1:
        return "conv"
    if module.groups == module.in_channels == module.out_channels:
        return "depthwise_conv"
    return "grouped_conv"


def shared_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Conv/Linear module with a weight, in definition order: the layers that get a codebook.

    Grouped and depthwise convolutions are included. Biases and normalisation
    parameters are not shared and stay 32-bit.
    """
    out = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) \
                and getattr(module, "weight", None) is not None:
            out.append((name, module))
    if not out:
        raise ValueError("the model has no Conv/Linear layer to share")
    return out


def layer_records(model: nn.Module) -> list[dict]:
    """One record per shared layer: name, kind, shape, weights (count), energy (sum of squared weights)."""
    return [{"name": name, "kind": layer_kind(m), "shape": list(m.weight.shape),
             "weights": int(m.weight.numel()),
             "energy": float(m.weight.detach().double().pow(2).sum())} for name, m in shared_layers(model)]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
