"""Pruning operations of ``tinyfam``: channel surgery, cut-k and the exact width cost.

Without skips the dependencies are a chain: the filters kept in ``enc{i}`` are the input
channels of ``enc{i+1}`` (``decL`` for the innermost), those of ``dec{i}`` the input
channels of ``dec{i-1}``.  A cut removes the ``k`` innermost levels; ``dec{L-k}`` then
reads ``enc{L-k}`` directly, which keeps its weights only where the two widths agree, and
``enc{L-k}`` becomes the innermost level, whose eval-mode BatchNorm is folded into its conv
(:meth:`TinyFamily.cut_ks <tinyfam.family.TinyFamily.cut_ks>` says which ``k`` fit).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from unetprune.metrics.complexity import macs_by_layer
from unetprune.pruning.ops import PruningOps
from unetprune.pruning.surgery import PruningError, copy_norm, index_tensor, parse_levels

from .networks import TinyGenerator, TinySpec


def groups(spec: TinySpec) -> list[str]:
    """``enc1..encL`` then ``decL..dec2`` (``dec1`` makes the RGB output: never pruned)."""
    n = spec.n_levels
    return [f"enc{i}" for i in range(1, n + 1)] + [f"dec{i}" for i in range(n, 1, -1)]


def default_inner_levels(spec: TinySpec) -> list[int]:
    """The levels whose encoder and decoder outputs both have the largest width."""
    wmax = max(spec.enc_widths)
    lv = [
        i
        for i in range(2, spec.n_levels + 1)
        if spec.enc_widths[i - 1] == wmax and spec.dec_widths[i - 1] == wmax
    ]
    return lv or [spec.n_levels]


def cut_refusal(spec: TinySpec, k: int) -> str | None:
    """Why cut-``k`` does not fit ``spec`` (None: it does)."""
    n = spec.n_levels
    if not 1 <= k <= n - 2:
        return f"k must be in 1..{n - 2} for a {n}-level tinyfam model (at least 2 levels remain)"
    m = n - k
    if spec.dec_widths[m] != spec.enc_widths[m - 1]:
        return (
            f"dec{m} reads {spec.dec_widths[m]} channels but enc{m} gives {spec.enc_widths[m - 1]}: "
            f"its weights cannot be copied"
        )
    return None


class TinyPruningOps(PruningOps):
    family = "tinyfam"

    def check_layer(self, generator: TinyGenerator, layer: str) -> None:
        if layer == "dec1":
            raise PruningError("layer 'dec1' is the RGB output conv and cannot be pruned")
        names = groups(generator.spec)
        if layer not in names:
            raise PruningError(f"unknown layer {layer!r}; prunable layers: {', '.join(names)}")

    def prune_channels(self, generator: TinyGenerator, keep: Mapping[str, Sequence[int]]) -> TinyGenerator:
        s, n = generator.spec, generator.n_levels
        idx: dict[str, list[int]] = {}
        for name, ix in keep.items():
            self.check_layer(generator, name)
            width = getattr(generator, name).conv.out_channels
            ix = sorted(int(i) for i in ix)
            if not ix:
                raise PruningError(f"pruning would remove every filter of {name}; keep at least one")
            if len(set(ix)) != len(ix) or ix[0] < 0 or ix[-1] >= width:
                raise PruningError(f"kept indices for {name} must be distinct and in [0, {width})")
            idx[name] = ix
        enc = [len(idx.get(f"enc{i}", range(w))) for i, w in enumerate(s.enc_widths, 1)]
        dec = [len(idx.get(f"dec{i}", range(w))) for i, w in enumerate(s.dec_widths, 1)]
        new = TinyGenerator(TinySpec(s.input_nc, s.output_nc, enc, dec)).to(
            next(generator.parameters()).device
        )

        def rows(name: str, width: int) -> torch.Tensor:
            return index_tensor(idx.get(name, range(width)), generator.enc1.conv.weight.device)

        producer = {f"enc{i}": f"enc{i - 1}" for i in range(2, n + 1)}
        producer.update({f"dec{i}": f"dec{i + 1}" for i in range(1, n)})
        producer[f"dec{n}"] = f"enc{n}"
        with torch.no_grad():
            for name in [f"enc{i}" for i in range(1, n + 1)] + [f"dec{i}" for i in range(1, n + 1)]:
                old, blk = getattr(generator, name), getattr(new, name)
                out = rows(name, old.conv.out_channels)
                src = producer.get(name)
                cin = rows(src, old.conv.in_channels) if src else rows("", old.conv.in_channels)
                w = old.conv.weight
                if isinstance(old.conv, nn.ConvTranspose2d):  # [C_in, C_out, k, k]
                    blk.conv.weight.copy_(w[cin][:, out])
                else:  # [C_out, C_in, k, k]
                    blk.conv.weight.copy_(w[out][:, cin])
                if old.conv.bias is not None:
                    blk.conv.bias.copy_(old.conv.bias[out])
                copy_norm(blk.norm, old.norm, out)
        return new.train(generator.training)

    def layers_of_levels(self, generator: TinyGenerator, levels) -> tuple[list[int], list[str]]:
        n = generator.n_levels
        if levels is None:
            lv = default_inner_levels(generator.spec)
        else:
            lv = parse_levels(levels)
            bad = [x for x in lv if not 1 <= x <= n]
            if bad:
                raise PruningError(
                    f"level(s) {bad} do not exist in this {n}-level tinyfam model "
                    f"(levels are 1..{n}, 1 = outermost)"
                )
        return lv, [f"enc{x}" for x in lv] + [f"dec{x}" for x in sorted(lv, reverse=True) if x != 1]

    def cut(self, generator: TinyGenerator, k: int) -> tuple[TinyGenerator, dict]:
        s, n = generator.spec, generator.n_levels
        if not isinstance(k, int) or isinstance(k, bool):
            raise PruningError(f"k must be an integer, got {k!r}")
        why = cut_refusal(s, k)
        if why:
            raise PruningError(f"cut k={k} does not fit this model: {why}")
        m = n - k
        new = TinyGenerator(TinySpec(s.input_nc, s.output_nc, s.enc_widths[:m], s.dec_widths[:m]))
        sd = generator.state_dict()
        state = {key: sd[key].clone() for key in new.state_dict() if key in sd}
        # enc{m} becomes the innermost level, which has no norm: its eval-mode BN is folded into the conv
        bn = getattr(generator, f"enc{m}").norm
        if isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            state[f"enc{m}.conv.weight"] = sd[f"enc{m}.conv.weight"] * scale.view(-1, 1, 1, 1)
            state[f"enc{m}.conv.bias"] = bn.bias.detach() - bn.running_mean * scale
        new.load_state_dict(state)
        new = new.to(next(generator.parameters()).device).train(generator.training)
        return new, {
            "k": k,
            "n_levels_before": n,
            "n_levels": m,
            "removed_levels": list(range(m + 1, n + 1)),
            "bn_to_bias": f"eval-mode BatchNorm of enc{m} folded into its conv",
            "layers": [f"enc{i}" for i in range(m + 1, n + 1)] + [f"dec{i}" for i in range(n, m, -1)],
        }

    def width_cost(self, generator: TinyGenerator, input_shape):
        """Exact params and MACs: every conv's cost is linear in ``C_in * C_out`` (plus a bias
        and the BN affine per output channel); the per-(C_in·C_out) MACs come from one hooked pass."""
        s, n = generator.spec, generator.n_levels
        per = macs_by_layer(generator, input_shape)
        table = {}
        for name in [f"enc{i}" for i in range(1, n + 1)] + [f"dec{i}" for i in range(1, n + 1)]:
            blk = getattr(generator, name)
            conv = blk.conv
            cc = conv.in_channels * conv.out_channels
            rec = per[f"{name}.conv"]
            per_out = (1 if conv.bias is not None else 0) + (2 if isinstance(blk.norm, nn.BatchNorm2d) else 0)
            table[name] = (conv.weight[0, 0].numel(), per_out, rec["physical"] / cc, rec["output"] / cc)

        def cost(width: Mapping[str, int]) -> dict[str, int]:
            enc = [width.get(f"enc{i}", s.enc_widths[i - 1]) for i in range(1, n + 1)]
            dec = [s.output_nc] + [width.get(f"dec{i}", s.dec_widths[i - 1]) for i in range(2, n + 1)]
            tot = {"params": 0.0, "macs_physical": 0.0, "macs_output": 0.0}
            for i in range(1, n + 1):
                for name, cin, cout in (
                    (f"enc{i}", s.input_nc if i == 1 else enc[i - 2], enc[i - 1]),
                    (f"dec{i}", enc[n - 1] if i == n else dec[i], dec[i - 1]),
                ):
                    ksz, per_out, cp, co = table[name]
                    tot["params"] += cin * cout * ksz + per_out * cout
                    tot["macs_physical"] += cp * cin * cout
                    tot["macs_output"] += co * cin * cout
            return {key: int(round(v)) for key, v in tot.items()}

        return cost


TINY_OPS = TinyPruningOps()
