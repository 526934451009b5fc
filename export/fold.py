"""Fold eval-mode BatchNorm into the convolution that feeds it, before export.

The exported graphs then carry no BatchNormalization at all (forward or backward), which is
what TensorRT and onnxruntime would do at load time anyway, and the input gradient becomes
one transposed convolution per convolution.  A batch norm that no convolution alone feeds
(KonCept512's BatchNorm1d layers sit after a ReLU) becomes its eval-mode per-channel affine map.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


class _ConvLeafTracer(fx.Tracer):
    """Keeps every Conv2d subclass (e.g. static-same-padding convs) as one call_module node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)


class ChannelAffine(nn.Module):
    """An eval-mode batch norm as ``x * scale + shift`` along dimension 1."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x.ndim - 2)
        return x * self.scale.view(shape) + self.shift.view(shape)


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def fold_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with each BatchNorm2d folded into the Conv2d that alone feeds it,
    and every other batch norm replaced by its :class:`ChannelAffine`."""
    module = copy.deepcopy(module).eval()
    graph = _ConvLeafTracer().trace(module)
    modules = dict(module.named_modules())
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        source = node.args[0]
        if not (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1):
            continue
        conv, bn = modules[source.target], modules[node.target]
        if not isinstance(conv, nn.Conv2d):
            continue
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight, conv.bias = weight, bias
        node.replace_all_uses_with(source)
        graph.erase_node(node)
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            parent, _, name = node.target.rpartition(".")
            setattr(module.get_submodule(parent), name, ChannelAffine(modules[node.target]))
    folded = fx.GraphModule(module, graph)
    folded.delete_all_unused_submodules()
    if _has_batchnorm(folded):
        raise ValueError(f"{type(module).__name__}: a BatchNorm layer is not a module call (fused into another layer?)")
    return folded.requires_grad_(False)


def fold_batchnorm(victim: nn.Module) -> nn.Module:
    """A copy of ``victim`` whose BatchNorm-carrying children are replaced by folded copies.

    Children are traced separately so that the victim's own code (objective, preprocessing)
    stays ordinary Python.
    """
    folded = copy.copy(victim)
    folded._modules = dict(victim._modules)
    for name, child in victim.named_children():
        if _has_batchnorm(child):
            folded._modules[name] = fold_module(child)
    return folded
