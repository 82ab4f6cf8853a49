"""Do reduced-precision masks equal the fp32 masks? A checkpoint on a DAVIS-layout set, per clip length.

    python scripts/precision_agreement.py --model quickstart_out/runs/quickstart/quickstart_final.pth \
        --davis-root quickstart_out/data/val [--split val] [--clip-lengths 5 25] [--precisions bf16]

Every video of the split is segmented by the real evaluation path (``run_benchmark``) in fp32 and in each
``--precision``; the agreement is the fraction of pixels, over every frame after each video's first, whose
object id is the same. J&F (when the split has ground truth) is reported next to it. Prints a table and,
with ``--json``, writes the numbers there. docs/benchmarks.md records the quickstart checkpoint's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from dataset.benchmarks import davis_benchmark  # noqa: E402
from inference.benchmark_run import run_benchmark  # noqa: E402
from inference.engine import EngineConfig, PCVOSEngine, prepare_network  # noqa: E402
from model.checkpoint import build_model  # noqa: E402
from util.arguments import add_alias, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.palette import read_index_png  # noqa: E402
from util.runtime import resolve_device  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    p = new_parser(__doc__)
    add_alias(p, p.add_argument("--model", dest="checkpoint", required=True, type=Path, metavar="PTH",
                                help="weights to run: PCVOS / STCN / train.py .pth"), "--checkpoint")
    p.add_argument("--davis-root", required=True, type=Path, metavar="FOLDER",
                   help="DAVIS root (the folder holding trainval/)")
    p.add_argument("--split", default="val", help="DAVIS split")
    p.add_argument("--clip-lengths", type=int, nargs="+", default=[5, 25], metavar="L",
                   help="values of L to compare")
    add_alias(p, p.add_argument("--precisions", dest="precision", nargs="+", default=["bf16"],
                                choices=("fp32", "bf16", "fp16"), help="precisions compared with fp32"),
              "--precision")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="frame-decoding worker processes")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results here (default: printed only)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def mask_agreement(reference: Path, other: Path) -> tuple[int, int]:
    """(equal pixels, pixels) over every frame after each video's first, videos = folders of ``reference``."""
    same = total = 0
    for video in sorted(p for p in reference.iterdir() if p.is_dir()):
        for frame in sorted(video.glob("*.png"))[1:]:
            twin = other / video.name / frame.name
            if not twin.is_file():
                raise FileNotFoundError(f"{twin}: missing in the {other.name} run (its output is incomplete)")
            a, b = read_index_png(frame), read_index_png(twin)
            same += int(np.count_nonzero(a == b))
            total += a.size
    return same, total


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"--model {args.checkpoint}: no such file; pass a PCVOS or train.py checkpoint")
    device = resolve_device(args.device)
    network, _ = build_model(args.checkpoint, device)
    prepare_network(network)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcvos-agreement-") as tmp:
        for length in args.clip_lengths:
            scores = {}
            for precision in ["fp32", *args.precision]:
                bench = davis_benchmark(args.davis_root, "2017", args.split, Path(tmp) / f"{precision}-L{length}")
                engine = PCVOSEngine(network, EngineConfig(clip_length=length, precision=precision))
                result = run_benchmark(engine, bench, size=-1, workers=args.workers, log=lambda _: None)
                scores[precision] = result.scores.get("J&F-Mean") if result.scores else None
            for precision in args.precision:
                same, total = mask_agreement(Path(tmp) / f"fp32-L{length}", Path(tmp) / f"{precision}-L{length}")
                rows.append({"clip_length": length, "precision": precision, "agreement": same / max(total, 1),
                             "pixels": total, "jf_fp32": scores["fp32"], "jf": scores[precision]})
    print("| L | precision | masks equal to fp32 | pixels | J&F fp32 | J&F |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        jf = ["-" if v is None else f"{v:.3f}" for v in (r["jf_fp32"], r["jf"])]
        print(f"| {r['clip_length']} | {r['precision']} | {100 * r['agreement']:.3f} % | {r['pixels']} "
              f"| {jf[0]} | {jf[1]} |")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
