"""The tests' one naive reference: a per-clip core written straight from the released core's rules,
and the plain top-k readout the engine's fused readouts are checked against.

One memory bank per object, dense scatter readout (``scripts/official_like.py``'s,
the timing baseline's), PMM frame by frame, one refinement and decoder call per
object, a full probability buffer for the whole video, several annotated frames.
Slow and simple, so that the engine's grouping, batching, streaming and padding
can be checked against it.
"""

from __future__ import annotations

import torch

from inference.padding import compute_pad, pad, unpad
from model.aggregate import aggregate, others_from_masks
from scripts.official_like import dense_topk_readout


def topk_weights(affinity: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k over the memory axis of an [N, M] affinity and a softmax over those k: (weights, indices) [k, M]."""
    values, indices = torch.topk(affinity, k=min(top_k, affinity.shape[0]), dim=0)
    return torch.softmax(values, dim=0), indices


def gather_readout(mem_values: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Sparse readout: mem_values [O, Cv, N] mixed by the k selected weights per query -> [O, Cv, M]."""
    o, cv, _ = mem_values.shape
    k, m = indices.shape
    picked = mem_values.index_select(2, indices.reshape(-1)).view(o, cv, k, m)
    return (picked * weights.to(picked.dtype)).sum(dim=2)


@torch.no_grad()
def reference_segment(net, images, labels, num_objects, clip_length, parallel=False, top_k=20, pmm_every=5):
    """images: [T, 3, H, W]; labels: {frame: [H, W] int64 ids}; returns prob [K + 1, T, H, W]."""
    t_total = images.shape[0]
    pads = compute_pad(*images.shape[-2:])
    images = pad(images, pads)
    hp, wp = images.shape[-2:]
    prob = torch.zeros(num_objects + 1, t_total, hp, wp)
    prob[0] = 1e-7
    enabled: list[int] = []
    banks: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    label_frames = sorted(labels)

    def encode_values(t, key_f16):
        masks = prob[enabled, t].unsqueeze(1)
        img = images[t : t + 1].expand(len(enabled), -1, -1, -1)
        return net.encode_value(img, key_f16.expand(len(enabled), -1, -1, -1), masks, others_from_masks(masks))

    for li, f in enumerate(label_frames):
        end = label_frames[li + 1] + 1 if li + 1 < len(label_frames) else t_total
        label = pad(labels[f], pads)
        ids = [int(i) for i in torch.unique(label) if i > 0]
        prob[:, f, label > 0] = 0
        for obj in ids:
            prob[obj, f] = (label == obj).float()
        enabled += [o for o in ids if o not in enabled]
        prob[:, f] = aggregate(prob[1:, f], dim=0)
        feats = net.encode_key(images[f : f + 1])
        values = encode_values(f, feats.f16)
        for i, obj in enumerate(enabled):
            banks.setdefault(obj, []).append((feats.key[0].flatten(1), values[i].flatten(1)))
        last_mem = f
        frames = list(range(f + 1, end))
        for start in range(0, len(frames), clip_length):
            clip = frames[start : start + clip_length]
            feats = net.encode_key(images[clip])
            qk = feats.key.flatten(2)  # [n, Ck, HW]
            h, w = feats.key.shape[-2:]
            per_obj = []
            for obj in enabled:
                mk = torch.cat([k for k, _ in banks[obj]], 1)
                mv = torch.cat([v for _, v in banks[obj]], 1)
                if parallel:
                    q = qk.transpose(0, 1).reshape(qk.shape[1], -1)
                    r = dense_topk_readout(mk, mv, q, top_k).view(mv.shape[0], len(clip), h * w)
                    reads = [r[:, i] for i in range(len(clip))]
                else:
                    reads = []
                    for i in range(len(clip)):
                        r = dense_topk_readout(mk, mv, qk[i], top_k)
                        reads.append(r)
                        if (i + 1) % pmm_every == 0:
                            mk = torch.cat([mk, qk[i]], 1)
                            mv = torch.cat([mv, r], 1)
                readout = torch.stack(reads, 1).view(1, mv.shape[0], len(clip), h, w)
                keys = net.refine_keys(feats.f16)
                keys = None if keys is None else keys.transpose(0, 1)[None]
                refined = net.refine_clip(keys, readout)[0].transpose(0, 1)  # [n, Cv, h, w]
                per_obj.append(torch.sigmoid(net.decode(refined, feats.f16_thin, feats.f8, feats.f4))[:, 0])
            agg = aggregate(torch.stack(per_obj), dim=0)
            prob[0, clip] = agg[0]
            for i, obj in enumerate(enabled):
                prob[obj, clip] = agg[i + 1]
            for i, t in enumerate(clip):
                if t - last_mem >= clip_length:
                    values = encode_values(t, feats.f16[i : i + 1])
                    for j, obj in enumerate(enabled):
                        banks[obj].append((feats.key[i].flatten(1), values[j].flatten(1)))
                    last_mem = t
    return unpad(prob, pads)
