"""Forward passes resumed at a layer: what comes before a layer is computed once, the rest per codebook.

A sweep row changes one layer's weights, so every value of the forward pass that its output does not
reach (the layer's input, the skip connections around it, everything before it) is the same in every
row. The model is traced once with torch.fx (eval mode; the shared Conv/Linear layers, torch.nn modules
and timm's untraceable modules and functions kept whole) and split at a layer into a prefix, which
returns the values the rest of the graph reads, and a suffix, which takes them. Both run the model's own
modules, so codebooks applied to the model, and the corrections, act in them.

A model torch.fx cannot trace, or a layer the forward calls more than once, is not split: the caller
runs the whole network as before (``SplitModel.split`` returns None and says why in the log).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import fx, nn

from .models import conv_or_linear

log = logging.getLogger(__name__)


def _mutates(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` may change its first argument in place (``x.add_(y)``, ``inplace=True``)."""
    if node.kwargs.get("inplace"):
        return True
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return name.endswith("_") and not name.startswith("_") or name.startswith("__i")
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    return False


class _Tracer(fx.Tracer):
    """torch.fx tracer keeping whole every Conv/Linear (the shared layers, timm's padded ones included)
    and the modules and functions timm registers as untraceable."""

    def __init__(self):
        try:
            from timm.layers import get_notrace_functions, get_notrace_modules
            self.notrace = tuple(get_notrace_modules())
            functions = tuple(get_notrace_functions())
        except ImportError:  # pragma: no cover - timm is a dependency
            self.notrace, functions = (), ()
        super().__init__(autowrap_functions=functions)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return conv_or_linear(m) or isinstance(m, self.notrace) or super().is_leaf_module(m, qualname)


@dataclass
class LayerSplit:
    """A model split at ``layer``: ``prefix(x)`` returns the tuple ``suffix(*values)`` takes; ``share``:
    the fraction of the network's Conv/Linear multiply-accumulates the suffix computes; ``bytes_per_image``:
    what the prefix's values take per image (float32); ``modules``: the modules the suffix calls (a codebook
    applied to any other layer would not act in it)."""

    layer: str
    prefix: fx.GraphModule
    suffix: fx.GraphModule
    share: float
    bytes_per_image: int
    modules: frozenset[str]


class SplitModel:
    """A model traced once, split at any of its shared layers on request."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]):
        self.model = model
        self.graph_module: fx.GraphModule | None = None
        self.reason = ""
        was_training = model.training
        model.eval()
        try:
            graph = _Tracer().trace(model)
            self.graph_module = fx.GraphModule(model, graph)
            self._probe(input_shape)
        except Exception as e:  # noqa: BLE001 - any tracing failure means: run the whole network
            self.graph_module, self.reason = None, f"torch.fx cannot trace the model ({type(e).__name__}: {e})"
            log.info("resumed passes off: %s", self.reason)
        finally:
            model.train(was_training)

    @torch.no_grad()
    def _probe(self, input_shape) -> None:
        """Bytes per image of every node's value and multiply-accumulates of every Conv/Linear call, from one
        probe image (what the splits' sizes and shares are computed from)."""
        gm = self.graph_module
        self.node_bytes: dict[fx.Node, int] = {}
        self.node_macs: dict[fx.Node, int] = {}
        interpreter = fx.Interpreter(gm)
        original_run_node = interpreter.run_node

        def run_node(node):
            out = original_run_node(node)
            if isinstance(out, torch.Tensor):
                self.node_bytes[node] = out.numel() * 4
                if node.op == "call_module" and conv_or_linear(gm.get_submodule(node.target)):
                    w = gm.get_submodule(node.target).weight
                    self.node_macs[node] = out.numel() * (w[0].numel() if w.ndim > 1 else 1)
            return out

        interpreter.run_node = run_node
        p = next(iter(self.model.parameters()), None)
        interpreter.run(torch.zeros(1, *input_shape, device=None if p is None else p.device))
        self.total_macs = max(sum(self.node_macs.values()), 1)

    def split(self, layer: str) -> LayerSplit | None:
        """The model split at ``layer`` (the layer itself in the suffix), or None where it cannot be."""
        if self.graph_module is None:
            return None
        gm = self.graph_module
        nodes = list(gm.graph.nodes)
        calls = [n for n in nodes if n.op == "call_module" and n.target == layer]
        if len(calls) != 1:
            log.info("resumed passes off for %s: the forward calls it %d times", layer, len(calls))
            return None
        downstream = {calls[0]}
        for n in nodes:  # nodes are in topological order
            if n not in downstream and any(a in downstream for a in n.all_input_nodes):
                downstream.add(n)
        # a suffix node changing a value computed before the layer in place would change the cached value (and
        # the graph does not show what reads it after)
        mutating = [n for n in downstream if _mutates(gm, n) and n.args and isinstance(n.args[0], fx.Node)
                    and n.args[0] not in downstream]
        if mutating:
            log.info("resumed passes off for %s: %s changes a value computed before it in place", layer,
                     mutating[0].name)
            return None
        output = next(n for n in nodes if n.op == "output")
        if output not in downstream:
            log.info("resumed passes off for %s: the output does not depend on it in the traced graph", layer)
            return None
        # what the suffix reads from the prefix (get_attr values are read live in the suffix: a correction
        # may change them)
        boundary = list(dict.fromkeys(a for n in nodes if n in downstream for a in n.all_input_nodes
                                      if a not in downstream and a.op != "get_attr"))
        prefix_graph, env = fx.Graph(), {}
        for n in nodes:
            if n not in downstream and n.op != "output":
                env[n] = prefix_graph.node_copy(n, lambda a: env[a])
        prefix_graph.output(tuple(env[b] for b in boundary))
        prefix = fx.GraphModule(gm, prefix_graph)
        prefix.graph.eliminate_dead_code()
        prefix.recompile()
        suffix_graph, env = fx.Graph(), {}
        for i, b in enumerate(boundary):
            env[b] = suffix_graph.placeholder(f"resumed_{i}")
        for n in nodes:
            if n in downstream:
                env[n] = suffix_graph.node_copy(n, lambda a: env[a])
            elif n.op == "get_attr" and any(u in downstream for u in n.users):  # before its users: graph order
                env[n] = suffix_graph.node_copy(n)
        suffix_graph.lint()
        share = sum(self.node_macs.get(n, 0) for n in downstream) / self.total_macs
        return LayerSplit(layer=layer, prefix=prefix, suffix=fx.GraphModule(gm, suffix_graph),
                     share=share, bytes_per_image=sum(self.node_bytes.get(b, 0) for b in boundary),
                     modules=frozenset(n.target for n in downstream if n.op == "call_module"))
