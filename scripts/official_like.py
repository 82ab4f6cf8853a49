"""A re-enactment of how the official PCVOS inference is organised, for speed comparisons only.

This is NOT the official code (which is GPL and not part of this project). It
is our own implementation of the same computation laid out the way the
released core organises it (the points below), so that
``scripts/benchmark.py`` can time "the official way" and "our way" side by
side on the same weights, video and machine:

* the whole video is decoded into one tensor before inference starts, a
  probability buffer ``[K + 1, T, Hp, Wp]`` is kept for the whole video, and
  masks are resized, arg-maxed and written only after the last frame;
* one memory bank per object (each object recomputes the affinity and top-k
  against its own copy of the shared keys);
* top-k weights scattered into a dense ``N x HW`` matrix and multiplied with
  the memory values (a dense readout);
* progressive memory matching frame by frame;
* per object: the refinement's key projection ``input_proj(f16)``, the
  refinement attention and the decoder (all ``n`` clip frames as one batch),
  including the object-independent decoder skip convolutions;
* float32, default (NCHW) memory format, no autocast.

Its outputs equal the engine's within float32 reassociation (checked in
``tests/test_benchmark.py``). The one deliberate difference from the released
arithmetic is the max-subtracted softmax (the engine's documented fix; it costs
the same).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from inference.padding import compute_pad, pad, unpad
from model.aggregate import EPS, aggregate, others_from_masks
from model.network import PCVOS


def dense_topk_readout(mem_keys: torch.Tensor, mem_values: torch.Tensor, query: torch.Tensor, k: int) -> torch.Tensor:
    """mem_keys [Ck, N], mem_values [Cv, N], query [Ck, HW] -> [Cv, HW] through a dense N x HW matrix."""
    affinity = (2 * mem_keys.t() @ query - mem_keys.pow(2).sum(0)[:, None]) / math.sqrt(mem_keys.shape[0])
    values, indices = torch.topk(affinity, k=min(k, affinity.shape[0]), dim=0)
    weights = torch.softmax(values, dim=0)
    return mem_values @ affinity.zero_().scatter_(0, indices, weights)


class OfficialLikeCore:
    """Per-clip core organised as the released code is (see the module docstring).

    Args:
        network: a :class:`PCVOS` in eval mode, float32, default memory format.
        clip_length: L (= memory interval).
        top_k: memory elements per query position.
        pmm_every: progressive-matching interval (5).
    """

    def __init__(self, network: PCVOS, clip_length: int = 5, top_k: int = 20, pmm_every: int = 5) -> None:
        self.net = network
        self.clip_length = clip_length
        self.top_k = top_k
        self.pmm_every = pmm_every

    @torch.inference_mode()
    def segment(self, images: torch.Tensor, label: torch.Tensor, num_objects: int) -> torch.Tensor:
        """Segment a whole decoded video whose objects are all annotated at frame 0.

        Args:
            images: [T, 3, H, W] normalised frames (the whole video).
            label: [H, W] int64 object ids 1..K of frame 0.
            num_objects: K.

        Returns:
            probabilities [K + 1, T, H, W] (background first).
        """
        net, length = self.net, images.shape[0]
        pads = compute_pad(*images.shape[-2:])
        images = pad(images, pads)
        prob = torch.zeros(num_objects + 1, length, *images.shape[-2:])
        prob[0] = EPS
        label = pad(label, pads)
        objects = list(range(1, num_objects + 1))
        for obj in objects:
            prob[obj, 0] = (label == obj).float()
        prob[:, 0] = aggregate(prob[1:, 0], dim=0)

        feats = net.encode_key(images[0:1])
        banks = {obj: [] for obj in objects}  # per object: list of (key [Ck, HW], value [Cv, HW])
        self._memorise(banks, images[0:1], feats.key[0], feats.f16[0:1], prob[1:, 0])
        last_memory = 0
        for start in range(1, length, self.clip_length):
            clip = list(range(start, min(start + self.clip_length, length)))
            feats = net.encode_key(images[clip])
            per_object = [self._segment_object(banks[obj], feats) for obj in objects]
            agg = aggregate(torch.stack(per_object), dim=0)  # [K + 1, n, Hp, Wp]
            prob[:, clip] = agg
            for i, t in enumerate(clip):
                if t - last_memory >= self.clip_length:
                    self._memorise(banks, images[t : t + 1], feats.key[i], feats.f16[i : i + 1], agg[1:, i])
                    last_memory = t
        return unpad(prob, pads)

    def _memorise(self, banks, image, key, f16, masks) -> None:
        """Encode one frame's value for every object (one batch) and append it to every bank."""
        masks = masks.unsqueeze(1)
        count = masks.shape[0]
        values = self.net.encode_value(
            image.expand(count, -1, -1, -1), f16.expand(count, -1, -1, -1), masks, others_from_masks(masks)
        )
        for i, obj in enumerate(sorted(banks)):
            banks[obj].append((key.flatten(1), values[i].flatten(1)))

    def _segment_object(self, bank, feats) -> torch.Tensor:
        """One object's probabilities [n, Hp, Wp] for one clip: PMM frame by frame, refinement, decoder."""
        net = self.net
        n, _, h, w = feats.key.shape
        mem_keys = torch.cat([k for k, _ in bank], dim=1)
        mem_values = torch.cat([v for _, v in bank], dim=1)
        query = feats.key.flatten(2)
        reads = []
        for i in range(n):
            read = dense_topk_readout(mem_keys, mem_values, query[i], self.top_k)
            reads.append(read)
            if (i + 1) % self.pmm_every == 0:
                mem_keys = torch.cat([mem_keys, query[i]], dim=1)
                mem_values = torch.cat([mem_values, read], dim=1)
        readout = torch.stack(reads, dim=1).view(1, -1, n, h, w)
        keys = net.refine_keys(feats.f16)  # recomputed for every object, as released
        keys = None if keys is None else keys.transpose(0, 1)[None]
        refined = net.refine_clip(keys, readout)[0].transpose(0, 1)  # [n, Cv, h, w]
        return torch.sigmoid(net.decode(refined, feats.f16_thin, feats.f8, feats.f4))[:, 0]


def masks_from_probabilities(prob: torch.Tensor, out_size: tuple[int, int]) -> np.ndarray:
    """[K + 1, T, h, w] -> uint8 [T, H, W] index masks, after the last frame (as released)."""
    if tuple(prob.shape[-2:]) != tuple(out_size):
        prob = F.interpolate(prob.transpose(0, 1), size=out_size, mode="bilinear", align_corners=False).transpose(0, 1)
    return prob.argmax(0).to(torch.uint8).numpy()
