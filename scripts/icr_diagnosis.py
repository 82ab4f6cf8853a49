"""What the intra-clip refinement (ICR) exchanges between the frames of a clip, measured inside its blocks.

    python scripts/icr_diagnosis.py --ablation ablation_out --runs pcvos_s0 pcvos-staged_s0_no-icr pcvos-staged_s0
                                    [--clip-lengths 5] [--val-videos 30]

Each run's checkpoint segments the ablation's held-out videos (``scripts/ablation.py``: same data, same evaluation
size, PMM, no mirror augmentation) at each of ``--clip-lengths``. Over every clip, every refinement block is measured:

    own token      the attention weight a token gives itself
    own frame      the weight it gives the tokens of its own frame (its own token included)
    other frames   the weight it gives the tokens of the clip's other frames: what the block exchanges
    padding        the weight it gives padded tokens (the released model lets them take part)
    uniform        the share of other-frame tokens among those it may attend: "other frames" under uniform attention
    attention, MLP the norm of the block's attention and MLP residual branches over the norm of its input

and the refined readout as a whole: how much it changes when the refinement runs over each frame alone instead of
the whole clip, ||R(clip) - R(frame by frame)|| / ||R(clip)||. The weights are means over the real (unpadded)
query tokens of every clip, the norms over every clip's objects.

A run trained without ICR is given a freshly initialised one (seed 0), as the second stage of the
``pcvos-staged`` row starts (there with its own seed): what an untrained refinement exchanges. Its J&F is not a
model's score.

Output under ``<ablation>/icr/``: ``icr.json`` (per run and clip length: J&F and the figures above per block) and
``icr.md`` (the table). Resumable: a rerun measures only the runs and clip lengths not yet in icr.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from memory_diagnosis import ablation_checkpoints, add_run_arguments, measure_runs, score_engine  # noqa: E402

from model.refine import effective_window, window_partition  # noqa: E402
from util.arguments import new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.paths import write_text_atomic as write_text  # noqa: E402

ATTENTION = ("own token", "own frame", "other frames", "padding", "uniform")
BRANCHES = ("attention", "MLP")


def token_frames(size: tuple[int, int, int], window: tuple[int, int, int], shift: tuple[int, int, int]) -> torch.Tensor:
    """[nW, N] the frame of every token of every window, laid out as a refinement block lays them out (-1: padding).

    ``window`` and ``shift`` are the block's effective ones for a clip of ``size`` (T, h, w): padded at the end to
    multiples of the window, rolled back by the shift, partitioned.
    """
    padded = [-(-s // w) * w for s, w in zip(size, window)]
    frames = torch.full(padded, -1, dtype=torch.long)
    frames[: size[0], : size[1], : size[2]] = torch.arange(size[0])[:, None, None]
    if any(shift):
        frames = torch.roll(frames, shifts=tuple(-s for s in shift), dims=(0, 1, 2))
    return window_partition(frames[None, ..., None], window).squeeze(-1)


def attention_shares(weights: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None) -> dict[str, float]:
    """Sums over the real query tokens of :data:`ATTENTION`'s shares, and their count under "queries".

    weights: [nW, heads, N, N] softmax weights of one clip; frames: [nW, N] from :func:`token_frames`;
    mask: [nW, N, N] the shift mask (-100 where a token may not attend) or None.
    """
    weights = weights.float().mean(dim=1)  # [nW, N, N], heads averaged
    query, key = frames[:, :, None], frames[:, None, :]
    real_query = (frames >= 0).float()  # [nW, N]
    real_key = key >= 0
    allowed = torch.ones_like(weights, dtype=torch.bool) if mask is None else mask == 0
    other = real_key & (key != query)
    share = {
        "own token": torch.diagonal(weights, dim1=-2, dim2=-1),
        "own frame": (weights * (real_key & (key == query))).sum(-1),
        "other frames": (weights * other).sum(-1),
        "padding": (weights * ~real_key).sum(-1),
        "uniform": (other & allowed).sum(-1) / allowed.sum(-1),
    }
    sums = {name: float((value * real_query).sum()) for name, value in share.items()}
    sums["queries"] = float(real_query.sum())
    return sums


class RefineProbe:
    """Hooks in a network's refinement that add up :func:`attention_shares`, the branch norms and the exchange.

    Installed on the network (``install``), it measures every clip the network refines until ``remove``; the
    network's outputs are unchanged (the hooks only read).
    """

    def __init__(self, network) -> None:
        if network.refine_transformer is None:
            raise ValueError("the network has no intra-clip refinement to measure")
        self.net = network
        self.sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.recording = False
        self.size: tuple[int, int, int] = (1, 1, 1)
        self._handles: list = []
        self._branch: dict[str, float] = {}

    def install(self) -> RefineProbe:
        whole = self.net.refine_clip
        for li, layer in enumerate(self.net.refine_transformer.layers):
            for bi, block in enumerate(layer.blocks):
                name = f"block {li}.{bi}" + (" (shifted)" if any(block.shift) else "")
                self._wrap_attention(name, block)
                self._handles += [
                    block.register_forward_pre_hook(self._block_input(name)),
                    block.attn.proj.register_forward_hook(self._branch_output("attention")),
                    block.mlp.register_forward_hook(self._branch_output("MLP")),
                    block.register_forward_hook(self._block_output(name)),
                ]

        def refine(keys, readout):
            self.size = tuple(readout.shape[2:])
            self.recording = True
            try:
                refined = whole(keys, readout)
            finally:
                self.recording = False
            alone = torch.cat([whole(keys[:, :, t : t + 1], readout[:, :, t : t + 1])
                               for t in range(readout.shape[2])], dim=2)
            exchange = self.sums["readout"]
            exchange["difference"] += float(((refined.float() - alone.float()) ** 2).sum())
            exchange["refined"] += float((refined.float() ** 2).sum())
            return refined

        self.net.refine_clip = refine  # the instance attribute shadows the method until remove()
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.net.__dict__.pop("refine_clip", None)
        for layer in self.net.refine_transformer.layers:
            for block in layer.blocks:
                block.attn.__dict__.pop("attention", None)

    def _wrap_attention(self, name: str, block) -> None:
        original = block.attn.attention

        def attention(q, mask):
            weights = original(q, mask)
            if self.recording:
                window, shift = effective_window(self.size, block.window, block.shift)
                frames = token_frames(self.size, window, shift).to(weights.device)
                for key, value in attention_shares(weights, frames, mask).items():
                    self.sums[name][key] += value
            return weights

        block.attn.attention = attention

    def _block_input(self, name: str):
        def hook(module, args):
            if self.recording:
                self._branch = {"input": float((args[1].float() ** 2).sum()), "attention": 0.0, "MLP": 0.0}
        return hook

    def _branch_output(self, branch: str):
        def hook(module, args, output):
            if self.recording:
                self._branch[branch] += float((output.float() ** 2).sum())
        return hook

    def _block_output(self, name: str):
        def hook(module, args, output):
            if self.recording:
                for branch in BRANCHES:
                    self.sums[name][branch] += (self._branch[branch] / self._branch["input"]) ** 0.5
                self.sums[name]["calls"] += 1
        return hook

    def summary(self) -> dict[str, dict[str, float]]:
        """Per block: the mean shares (over real query tokens) and branch ratios (over clips); "readout": the
        exchange ||R(clip) - R(frame by frame)|| / ||R(clip)|| over every clip."""
        out: dict[str, dict[str, float]] = {}
        for name, sums in self.sums.items():
            if name == "readout":
                continue
            out[name] = {key: sums[key] / sums["queries"] for key in ATTENTION}
            out[name].update({branch: sums[branch] / sums["calls"] for branch in BRANCHES})
        readout = self.sums["readout"]
        exchange = (readout["difference"] / readout["refined"]) ** 0.5 if readout["refined"] else 0.0
        out["readout"] = {"exchange": exchange}
        return out


def load_network(path: Path, device: torch.device):
    """The run's network, with a freshly initialised refinement (seed 0) when it was trained without one.

    Returns (network, fresh): fresh is True when the refinement is untrained.
    """
    from model.checkpoint import build_model, config_from_checkpoint

    config = config_from_checkpoint(path)
    torch.manual_seed(0)
    network, _ = build_model(path, device, dataclasses.replace(config, refine=True))
    return network, not config.refine


def measure(network, val_root: Path, size: int, clip_length: int, masks: Path, videos: int | None) -> dict:
    """J&F and the probe's summary of one network at one clip length (PMM, no mirror augmentation)."""
    from inference.engine import EngineConfig, PCVOSEngine, prepare_network

    prepare_network(network)  # as scripts/ablation.py evaluates; the attention weights computed explicitly
    engine = PCVOSEngine(network, EngineConfig(clip_length=clip_length, memory_read="pmm", flip=False))
    probe = RefineProbe(network).install()
    try:
        scores = score_engine(engine, val_root, size, masks, videos=videos)
    finally:
        probe.remove()
    return {"J&F": scores["J&F"], "blocks": probe.summary()}


def write_report(out: Path, results: dict) -> None:
    """icr.md: one row per run, clip length and block."""
    lines = ["# What the intra-clip refinement exchanges between frames", "",
             "Attention shares: mean over the real query tokens of every clip; branches: norm over the block's "
             "input norm; exchange: ||R(clip) - R(frame by frame)|| / ||R(clip)||. See scripts/icr_diagnosis.py.", "",
             "| run | L | J&F | block | " + " | ".join(ATTENTION) + " | " + " | ".join(f"{b} branch" for b in BRANCHES)
             + " | exchange |", "|---|---|---|---|" + "---|" * (len(ATTENTION) + len(BRANCHES) + 1)]
    for run, by_length in results.items():
        for length, entry in by_length.items():
            label = run + (" (fresh ICR)" if entry.get("fresh") else "")
            exchange = entry["blocks"]["readout"]["exchange"]
            for name, figures in entry["blocks"].items():
                if name == "readout":
                    continue
                cells = " | ".join(f"{figures[k]:.3f}" for k in (*ATTENTION, *BRANCHES))
                lines.append(f"| {label} | {length} | {entry['J&F']:.3f} | {name} | {cells} | {exchange:.4f} |")
    write_text(out / "icr.md", "\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    p = new_parser(__doc__)
    add_run_arguments(p)
    p.add_argument("--clip-lengths", nargs="+", type=int, default=[5], metavar="L",
                   help="clip lengths to measure the refinement at")
    p.add_argument("--val-videos", type=int, default=None, metavar="N",
                   help="measure on the first N of the ablation's held-out videos (all of them when left out)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if min(args.clip_lengths) < 2:
        parser.error(f"--clip-lengths {min(args.clip_lengths)}: the refinement exchanges between the frames of a "
                     "clip, so give clip lengths of 2 or more")
    if args.val_videos is not None and args.val_videos < 1:
        parser.error(f"--val-videos {args.val_videos}: give 1 or more, or leave it out for all the held-out videos")
    val_root, size, weights = ablation_checkpoints(args.ablation, args.runs)
    from util.runtime import resolve_device

    out = args.ablation / "icr"

    def load(pth: Path):
        return load_network(pth, resolve_device(args.device))

    def run_one(loaded, run: str, length: str) -> dict:
        network, fresh = loaded
        entry = measure(network, val_root, size, int(length), out / run / f"L{length}", args.val_videos)
        return {**entry, "fresh": fresh}

    def describe(run: str, length: str, entry: dict) -> str:
        blocks = entry["blocks"]
        other = ", ".join(f"{v['other frames']:.3f}" for k, v in blocks.items() if k != "readout")
        return (f"[icr] {run} L={length}: J&F {entry['J&F']:.3f}, weight on other frames per block {other}, "
                f"exchange {blocks['readout']['exchange']:.4f}")

    results = measure_runs(out / "icr.json", weights, [str(n) for n in args.clip_lengths], load, run_one, describe)
    write_report(out, results)
    print(f"icr diagnosis: report in {out / 'icr.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
