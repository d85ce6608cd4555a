"""Column-wise layers: one weight per (level, column), or one per level shared by all columns.

A :class:`ColumnLinear` holds ``W: [K', C, d_in, d_out]`` with ``C = N`` (unshared) or
``C = 1`` (shared, docs/design.md §2); everything built on it -- MLPs, learning rules,
optimisers -- is the same code for both. Element-wise optimisers (SGD, Adam) then keep the
learning of each column independent by construction.

The level axis comes first, then the column axis, matching the state layout ``[K, N, B, d]``:
both sharing modes are then a single copy-free ``bmm`` (see
:func:`bioglom.functional.column_linear`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .functional import column_linear, column_linear_fa, column_linear_into_grad, grads_in_gemm

__all__ = ["ColumnLinear", "ColumnMLP", "activation"]


class ColumnLinear(nn.Module):
    """``y[k, n] = x[k, n] @ W[k, c(n)] + b[k, c(n)]`` for ``K'`` levels and ``C`` columns.

    Parameters
    ----------
    levels : K', the number of independent level-wise maps
    columns : C, ``N`` for unshared weights or ``1`` for shared weights
    d_in, d_out : sizes of each map
    bound : weights and biases start uniform in ``[-bound, bound]``; default ``1/sqrt(d_in)``
        (PyTorch's ``nn.Linear`` default). Every column draws its own initial weights.
    feedback : keep a fixed random feedback matrix (a buffer shaped like the weight, drawn like
        it) and send errors to the input through it instead of ``W^T`` (feedback alignment)
    """

    def __init__(
        self,
        levels: int,
        columns: int,
        d_in: int,
        d_out: int,
        bias: bool = True,
        bound: float | None = None,
        feedback: bool = False,
    ):
        super().__init__()
        self.levels, self.columns, self.d_in, self.d_out = levels, columns, d_in, d_out
        bound = 1.0 / math.sqrt(d_in) if bound is None else bound
        self.weight = nn.Parameter(
            torch.empty(levels, columns, d_in, d_out).uniform_(-bound, bound)
        )
        if bias:
            b = 1.0 / math.sqrt(d_in)
            self.bias = nn.Parameter(torch.empty(levels, columns, 1, d_out).uniform_(-b, b))
        else:
            self.register_parameter("bias", None)
        if feedback:
            fb = torch.empty(levels, columns, d_in, d_out).uniform_(-bound, bound)
            self.register_buffer("feedback", fb)
        else:
            self.feedback = None

    def forward(self, x: Tensor, level: int | None = None, add: Tensor | None = None) -> Tensor:
        """``x [K', N, B, d_in]`` -> ``[K', N, B, d_out]``; with ``level = k`` only the map of
        level ``k`` is applied (``x [1, N, B, d_in]``). ``add [K', N, 1, d_out]`` is added to
        every image's output, folded into the bias (``x W + (b + add)``)."""
        weight, bias, feedback = self.weight, self.bias, self.feedback
        if level is not None:
            # a slice's backward writes into a zero tensor of the whole weight's size:
            # take it only when one level is asked for
            sl = slice(level, level + 1)
            weight = weight[sl]
            bias = None if bias is None else bias[sl]
            feedback = None if feedback is None else feedback[sl]
        if feedback is not None or (add is not None and add.shape[2] != 1):
            y = (
                column_linear(x, weight, bias)
                if feedback is None
                else column_linear_fa(x, weight, bias, feedback)
            )
            return y if add is None else y + add
        if add is not None:
            bias = add if bias is None else bias + add
        if level is None and grads_in_gemm() and weight.requires_grad and torch.is_grad_enabled():
            return column_linear_into_grad(x, weight, bias)  # inside a local rule's update
        return column_linear(x, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"levels={self.levels}, columns={self.columns}, d_in={self.d_in}, "
            f"d_out={self.d_out}, bias={self.bias is not None}"
        )


def activation(name: str):
    """The hidden non-linearity by config name."""
    return {"gelu": nn.functional.gelu, "relu": torch.relu, "tanh": torch.tanh}[name]


class ColumnMLP(nn.Module):
    """A stack of :class:`ColumnLinear` layers, one independent MLP per (level, column).

    ``h_0 = x``; ``h_{j+1} = f(h_j W_j + b_j)`` for the hidden layers, where for ``j = 0`` an
    optional extra input ``z`` (e.g. the column's location code) adds ``z V``; the output
    layer is linear. With ``siren`` the hidden units are sinusoidal, ``f(u) = sin(w0 u)``, with
    SIREN's initialisation (Sitzmann et al. 2020): first layer ``U(-1/d_in, 1/d_in)``, later
    layers ``U(-sqrt(6/d_in)/w0, sqrt(6/d_in)/w0)``, as the paper suggests for top-down nets
    (Figure 1).

    Parameters
    ----------
    levels, columns : as :class:`ColumnLinear`
    d_in, hidden, d_out : sizes; ``hidden_layers = 0`` makes it a single linear map
    act : name of the non-linearity ("gelu", "relu", "tanh"), unused with ``siren``
    extra_in : size of the extra input fed to the first layer (0: none)
    hidden_learning : "backprop" (errors reach hidden layers through ``W^T``),
        "feedback_alignment" (through fixed random matrices) or "frozen" (hidden layers and the
        extra input map keep their random initial weights; only the output layer learns)
    """

    def __init__(
        self,
        levels: int,
        columns: int,
        d_in: int,
        hidden: int,
        d_out: int,
        hidden_layers: int = 1,
        act: str = "gelu",
        extra_in: int = 0,
        siren: bool = False,
        w0: float = 30.0,
        hidden_learning: str = "backprop",
    ):
        super().__init__()
        if hidden_learning not in ("backprop", "feedback_alignment", "frozen"):
            raise ValueError(f"unknown hidden_learning {hidden_learning!r}")
        self.siren, self.w0 = siren, w0
        fa = hidden_learning == "feedback_alignment"
        self.act_name = act
        self._act = activation(act)
        sizes = [d_in] + [hidden] * hidden_layers + [d_out]
        layers = []
        for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            bound = None
            if siren:
                bound = 1.0 / a if j == 0 else math.sqrt(6.0 / a) / w0
            layers.append(ColumnLinear(levels, columns, a, b, bound=bound, feedback=fa))
        self.layers = nn.ModuleList(layers)
        if extra_in > 0:
            bound = 1.0 / extra_in if siren else None
            self.extra = ColumnLinear(levels, columns, extra_in, sizes[1], bias=False, bound=bound)
        else:
            self.extra = None
        if hidden_learning == "frozen":
            for module in [*layers[:-1], self.extra]:
                if module is not None:
                    module.requires_grad_(False)

    def forward(self, x: Tensor, extra: Tensor | None = None, level: int | None = None) -> Tensor:
        """``x [K', N, B, d_in]`` (and ``extra [K', N, 1, extra_in]``) -> ``[K', N, B, d_out]``.

        With ``level = k`` only the MLP of level ``k`` runs, on ``x [1, N, B, d_in]`` (used by
        the first bottom-up pass, where level k needs level k-1's output first).
        """
        h = x
        last = len(self.layers) - 1
        for j, layer in enumerate(self.layers):
            add = None
            if j == 0 and self.extra is not None:
                if extra is None:
                    raise ValueError("this MLP was built with an extra input; pass extra=")
                add = self.extra(extra, level)  # [K', N, 1, hidden]: one per column
            u = layer(h, level, add=add)
            if j < last:
                h = torch.sin(self.w0 * u) if self.siren else self._act(u)
            else:
                h = u
        return h
