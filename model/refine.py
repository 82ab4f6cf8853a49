"""Intra-clip refinement (ICR): Video-Swin-style windowed attention over a clip.

Tokens are the stride-16 positions of every frame of a clip. Attention
weights come from a 256-d "key" stream (``input_proj(f16)``) that is never
updated; the attended content is the 512-d memory readout, which is refined
by residual attention and MLP blocks. Behaviour follows the released model's
refinement module, including two quirks kept on purpose so
that the official weights give the official numbers:

* padded tokens are zeros *after* the LayerNorms and take part in attention;
* the relative-position index is sliced ``[:N, :N]`` from the full (2,7,7)
  table when the effective window is smaller, which is geometrically wrong
  when the stride-16 grid is smaller than 7 in height or width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Size3 = tuple[int, int, int]
#: Tokens per MLP call at inference: keeps the 4x-wide hidden layer in cache (-18 % MLP time on a CPU).
MLP_CHUNK = 2048


def effective_window(size: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """Shrink the window to the input where the input is not larger; no shift there."""
    win = tuple(s if s <= w else w for s, w in zip(size, window))
    sft = tuple(0 if s <= w else h for s, w, h in zip(size, window, shift))
    return win, sft  # type: ignore[return-value]


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """x: [B, D, H, W, C] (sizes multiples of window) -> [B * nW, wd * wh * ww, C].

    Windows are ordered (batch, d, h, w) block-major; tokens inside a window
    d, then h, then w.
    """
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_reverse(windows: torch.Tensor, window: Size3, batch: int, size: Size3) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nW, N, C] -> [B, D, H, W, C]."""
    d, h, w = size
    wd, wh, ww = window
    x = windows.view(batch, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, d, h, w, -1)


def shift_attention_mask(padded: Size3, window: Size3, shift: Size3, device: torch.device) -> torch.Tensor:
    """Mask that stops attention across the seams created by the cyclic shift.

    Every padded position gets a region label per dimension
    (``[0, P-ws)``, ``[P-ws, P-s)``, ``[P-s, P)``; one region when s = 0); tokens
    of one window with different labels get -100.

    Returns:
        [nW, N, N] float mask.
    """
    labels = []
    for length, win, sft in zip(padded, window, shift):
        lab = torch.zeros(length, dtype=torch.long, device=device)
        if sft > 0:
            lab[length - win : length - sft] = 1
            lab[length - sft :] = 2
        labels.append(lab)
    region = labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3 + labels[2][None, None, :]
    region = window_partition(region[None, ..., None].float(), window).squeeze(-1)  # [nW, N]
    mask = region[:, :, None] != region[:, None, :]
    return mask.float() * -100.0


def relative_position_index(window: Size3) -> torch.Tensor:
    """[N, N] int64 index into the (2wd-1)(2wh-1)(2ww-1) bias table, N = wd*wh*ww."""
    grid = torch.stack(
        torch.meshgrid(*[torch.arange(w) for w in window], indexing="ij")
    ).flatten(1)  # [3, N]
    rel = (grid[:, :, None] - grid[:, None, :]).permute(1, 2, 0)  # [N, N, 3]
    rel = rel + torch.tensor([w - 1 for w in window])
    strides = torch.tensor([(2 * window[1] - 1) * (2 * window[2] - 1), 2 * window[2] - 1, 1])
    return (rel * strides).sum(-1)


class ClipAttention(nn.Module):
    """Windowed attention: q = k from the key stream (shared projection), v from values."""

    def __init__(self, key_dim: int, value_dim: int, window: Size3, num_heads: int = 1) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (key_dim // num_heads) ** -0.5
        table_size = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_size, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qk = nn.Linear(key_dim, key_dim)
        self.v = nn.Linear(value_dim, value_dim)
        self.proj = nn.Linear(value_dim, value_dim)
        # True: one fused scaled_dot_product_attention call, all objects' values side by side
        # (same numbers; slower than the explicit softmax on CPU, see docs/benchmarks.md).
        self.fused = False
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self, n: int) -> torch.Tensor:
        """[heads, n, n] bias; the index is sliced [:n, :n] as in the released code."""
        index = self.relative_position_index[:n, :n].reshape(-1)
        return self.relative_position_bias_table[index].view(n, n, -1).permute(2, 0, 1)

    def attention(self, q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Attention weights from the key stream alone.

        Args:
            q: [Bk * nW, N, Ck] projected (``qk``) keys, partitioned into windows.
            mask: [nW, N, N] shift mask or None.

        Returns:
            [Bk * nW, heads, N, N] softmax weights.
        """
        bw, n, _ = q.shape
        q = q.view(bw, n, self.num_heads, -1).transpose(1, 2)  # [Bw, h, N, dk]
        # Shared projection: k is q before scaling; the scale applies to q only.
        logits = (q * self.scale) @ q.transpose(-2, -1) + self.position_bias(n).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            logits = (logits.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view_as(logits)
        return logits.softmax(dim=-1)

    def forward(self, weights: torch.Tensor, v: torch.Tensor, key_batch: int) -> torch.Tensor:
        """Apply shared attention weights to every object's projected values (``proj`` not applied).

        Args:
            weights: [Bk * nW, heads, N, N] from :meth:`attention`.
            v: [Bk * O * nW, N, Cv] projected (``v``) values; O objects per key row, rows ordered (bk, o, window).
            key_batch: Bk.

        Returns:
            [Bk * O * nW, N, Cv]
        """
        bkw, heads, n, _ = weights.shape
        rows = v.shape[0]
        nw = bkw // key_batch
        objects = rows // bkw
        v = v.view(key_batch, objects, nw, n, heads, -1).permute(0, 1, 2, 4, 3, 5)
        out = weights.view(key_batch, 1, nw, heads, n, n) @ v  # [Bk, O, nW, h, N, dv]
        return out.permute(0, 1, 2, 4, 3, 5).reshape(rows, n, -1)

    def fused_forward(
        self, q: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, key_batch: int
    ) -> torch.Tensor:
        """:meth:`attention` then :meth:`forward` as one ``scaled_dot_product_attention`` call.

        The objects of a key row share the attention weights, so their projected
        values are laid side by side along the channel axis of one value tensor.

        Args:
            q: [Bk * nW, N, Ck]; v: [Bk * O * nW, N, Cv] rows ordered (bk, o, window); both projected.
            mask: [nW, N, N] shift mask or None.

        Returns:
            [Bk * O * nW, N, Cv] (``proj`` not applied)
        """
        bw, n, _ = q.shape
        rows, heads = v.shape[0], self.num_heads
        nw, objects = bw // key_batch, rows // bw
        q = q.view(bw, n, heads, -1).transpose(1, 2)  # [Bw, h, N, dk]
        v = v.view(key_batch, objects, nw, n, heads, -1)
        dv = v.shape[-1]
        v = v.permute(0, 2, 4, 3, 1, 5).reshape(bw, heads, n, objects * dv)  # [Bw, h, N, O * dv]
        bias = self.position_bias(n).unsqueeze(0)  # [1, h, N, N]
        if mask is not None:
            bias = (bias + mask[:, None]).repeat(key_batch, 1, 1, 1)  # [Bw, h, N, N]
        out = F.scaled_dot_product_attention(q, q, v.to(q.dtype), attn_mask=bias.to(q.dtype), scale=self.scale)
        out = out.view(key_batch, nw, heads, n, objects, dv).permute(0, 4, 1, 3, 2, 5)
        return out.reshape(rows, n, heads * dv)


def pad_end(x: torch.Tensor, pads: list[int], fill: torch.Tensor) -> torch.Tensor:
    """x: [B, D, H, W, C] padded at the end of D, H, W with the vector ``fill`` [C]."""
    if not any(pads):
        return x
    b, d, h, w, c = x.shape
    out = fill.to(x.dtype).expand(b, d + pads[0], h + pads[1], w + pads[2], c).contiguous()
    out[:, :d, :h, :w] = x
    return out


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RefineBlock(nn.Module):
    """One (shifted) window attention block on the value stream, keys from the key stream."""

    def __init__(self, key_dim: int, value_dim: int, window: Size3, shift: Size3, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window = window
        self.shift = shift
        self.norm1 = nn.LayerNorm(key_dim)
        self.norm1_v = nn.LayerNorm(value_dim)
        self.attn = ClipAttention(key_dim, value_dim, window)
        self.norm2 = nn.LayerNorm(value_dim)
        self.mlp = Mlp(value_dim, int(value_dim * mlp_ratio))

    def forward(self, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Refine values with attention computed once per key row.

        Args:
            keys: [Bk, D, H, W, Ck]; values: [Bk * O, D, H, W, Cv] (O objects per key row).
            mask: [nW, N, N] shift mask of the layer, or None.

        Returns:
            refined values, same shape.
        """
        b, d, h, w, _ = values.shape
        window, shift = effective_window((d, h, w), self.window, self.shift)
        pads = [(win - s % win) % win for s, win in zip((d, h, w), window)]
        attn = self.attn
        # The released block pads the normalised streams with zeros and projects every token; a zero token
        # projects to the bias exactly, so project first and pad with the bias (fewer tokens to project).
        q = pad_end(attn.qk(self.norm1(keys)), pads, attn.qk.bias)
        v = pad_end(attn.v(self.norm1_v(values)), pads, attn.v.bias)
        padded = tuple(q.shape[1:4])
        shifted = any(s > 0 for s in shift)
        if shifted:
            q = torch.roll(q, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
            v = torch.roll(v, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        q, v, mask = window_partition(q, window), window_partition(v, window), mask if shifted else None
        if attn.fused:
            out = attn.fused_forward(q, v, mask, keys.shape[0])
        else:
            out = attn(attn.attention(q, mask), v, keys.shape[0])
        out = window_reverse(out, window, b, padded)
        if shifted:
            out = torch.roll(out, shifts=shift, dims=(1, 2, 3))
        # proj is per token: applied after cropping, padded tokens are never projected. (A strided input would
        # make Linear a batched matmul over a copied weight.)
        values = values + attn.proj(out[:, :d, :h, :w].contiguous())
        return values + self.feed_forward(values)

    def feed_forward(self, values: torch.Tensor) -> torch.Tensor:
        """mlp(norm2(values)) per token; without autograd in chunks of MLP_CHUNK tokens (cache-sized, same numbers)."""
        if torch.is_grad_enabled():
            return self.mlp(self.norm2(values))
        flat = values.reshape(-1, values.shape[-1])
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], MLP_CHUNK):
            out[start : start + MLP_CHUNK] = self.mlp(self.norm2(flat[start : start + MLP_CHUNK]))
        return out.view_as(values)


class RefineLayer(nn.Module):
    """A stage of blocks alternating unshifted and shifted windows."""

    def __init__(self, key_dim: int, value_dim: int, depth: int, window: Size3) -> None:
        super().__init__()
        self.window = window
        self.shift = tuple(w // 2 for w in window)
        self.blocks = nn.ModuleList(
            RefineBlock(key_dim, value_dim, window, (0, 0, 0) if i % 2 == 0 else self.shift)
            for i in range(depth)
        )

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """keys: [Bk, D, H, W, Ck], values: [Bk * O, D, H, W, Cv] (channels last)."""
        size = tuple(values.shape[1:4])
        window, shift = effective_window(size, self.window, self.shift)
        padded = tuple(-(-s // w) * w for s, w in zip(size, window))
        mask = shift_attention_mask(padded, window, shift, values.device) if any(shift) else None
        for block in self.blocks:
            values = block(keys, values, mask)
        return values


class ClipRefiner(nn.Module):
    """The ICR transformer of the released model: 1 stage of 2 blocks, window (2, 7, 7)."""

    def __init__(
        self,
        key_dim: int = 256,
        value_dim: int = 512,
        depths: tuple[int, ...] = (2,),
        windows: tuple[Size3, ...] = ((2, 7, 7),),
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            RefineLayer(key_dim, value_dim, depth, window) for depth, window in zip(depths, windows)
        )
        self.norm = nn.LayerNorm(value_dim)
        self.apply(_init_weights)

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Refine the readout of one clip, for each object of the batch.

        Args:
            keys: [Bk, Ck, T, h, w] key stream (``input_proj(f16)``), one row per clip.
            values: [Bk * O, Cv, T, h, w] memory readout, O objects per clip, rows
                ordered (clip, object). The attention weights depend on the keys
                only, so they are computed once per clip and shared by its objects.

        Returns:
            [B, Cv, T, h, w]
        """
        v = values.permute(0, 2, 3, 4, 1)
        k = keys.permute(0, 2, 3, 4, 1)
        for layer in self.layers:
            v = layer(k, v)
        return self.norm(v).permute(0, 4, 1, 2, 3)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
