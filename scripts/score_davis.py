"""Score DAVIS predictions with the official davis2017-evaluation definitions (J, F, J&F).

Usage (from the repository root):

    python scripts/score_davis.py --davis-root DAVIS_ROOT --pred RESULTS_DIR --output OUT_DIR \
        [--sequences FILE] [--split val] [--single-object] [--workers N]

Writes ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` (byte-identical to the
toolkit's), ``per-object_results-<split>.json`` (full precision, excluded sequences, notes) and,
when something was excluded or noted, ``warnings-<split>.txt``.

Sequences are excluded (and listed in the warnings) when a prediction has an id the GT lacks, a
prediction is missing or mis-sized, or -- where the GT root also holds ``JPEGImages/`` -- the GT
folder misses frames; the console headline then says "over N of M sequences". The CSVs stay in the
toolkit's format (byte-identical to it when nothing is excluded).

Exit status: 0 all sequences scored; 1 some sequences were excluded (see the warnings);
2 the evaluation could not run (GT root, sequence list or a GT folder missing).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from util import davis_metrics as dm  # noqa: E402  (needs the sys.path line above)
from util.arguments import add_alias, new_parser  # noqa: E402
from util.errors import run_cli  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser(__doc__.split("\n", 1)[0])
    add_alias(parser, parser.add_argument("--davis-root", dest="gt", required=True, type=Path, metavar="FOLDER",
                                          help="DAVIS root with the ground truth, Annotations/[480p/]<seq>/"), "--gt")
    parser.add_argument("--pred", required=True, type=Path, metavar="FOLDER",
                        help="predictions: <pred>/<seq>/<frame>.png")
    add_alias(parser, parser.add_argument("--output", dest="out", required=True, type=Path, metavar="FOLDER",
                                          help="folder for the CSV / JSON outputs"), "--out")
    parser.add_argument(
        "--sequences",
        type=Path,
        help="file with one sequence per line (default: <davis-root>/ImageSets/2017/<split>.txt, "
        "<davis-root>/ImageSets/<split>.txt, else every GT folder)",
    )
    add_alias(parser, parser.add_argument("--split", dest="set", default="val",
                                          help="split name for ImageSets and output names"), "--set")
    parser.add_argument(
        "--single-object",
        action="store_true",
        help="DAVIS-2016 convention: GT objects merged, 0/255 predictions thresholded at > 128",
    )
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="processes (default: all cores)")
    return parser


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Right-aligned text table; floats with 6 decimals like pandas' ``to_string``."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "NaN" if math.isnan(value) else f"{value:.6f}"
        return str(value)

    text = [list(header)] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in text) for i in range(len(header))]
    return "\n".join(" ".join(c.rjust(w) for c, w in zip(line, widths)) for line in text)


def write_outputs(evaluation: dm.Evaluation, out: Path, set_name: str) -> list[str]:
    """Write CSVs, JSON and (if needed) the warnings file; return the warning lines."""
    out.mkdir(parents=True, exist_ok=True)
    stats = evaluation.object_stats()
    dm.write_global_csv(out / f"global_results-{set_name}.csv", evaluation.global_row())
    dm.write_per_sequence_csv(out / f"per-sequence_results-{set_name}.csv", stats)
    report = dm.report_dict(evaluation, set_name)
    (out / f"per-object_results-{set_name}.json").write_text(json.dumps(report, indent=1) + "\n")
    warnings = dm.warning_lines(evaluation)
    warnings_path = out / f"warnings-{set_name}.txt"
    if warnings:
        warnings_path.write_text("\n".join(warnings) + "\n")
    elif warnings_path.exists():
        warnings_path.unlink()  # a stale file from an earlier run would mislead
    return warnings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sequences = dm.read_sequence_list(args.sequences) if args.sequences else None
        evaluation = dm.evaluate(
            args.gt,
            args.pred,
            sequences,
            set_name=args.set,
            single_object=args.single_object,
            workers=args.workers,
        )
    except dm.ScoringError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    warnings = write_outputs(evaluation, args.out, args.set)

    row = evaluation.global_row()
    stats = evaluation.object_stats()
    coverage = evaluation.coverage()  # 'over N of M sequences' whenever some were excluded
    title = f"Global results for {args.set}" + (f" {coverage}" if coverage else "")
    print(f"--------------------------- {title} ---------------------------")
    print(format_table(dm.GLOBAL_COLUMNS, [[row[c] for c in dm.GLOBAL_COLUMNS]]))
    print(f"\n---------- Per sequence results for {args.set} ----------")
    print(format_table(dm.PER_SEQUENCE_COLUMNS, [[s.name, s.j_mean, s.f_mean] for s in stats]))
    if warnings:
        print("\n---------- Warnings ----------")
        print("\n".join(warnings))
    n_excluded = len(evaluation.excluded)
    names = ", ".join(s.name for s in evaluation.excluded)
    excluded = f" ({n_excluded} excluded: {names})" if n_excluded else ""
    print(
        f"\nscored {len(evaluation.scored)} sequences, {len(stats)} objects, "
        f"{evaluation.n_object_frames()} object-frames in {evaluation.seconds:.1f} s{excluded}"
    )
    print(f"outputs in {args.out}")
    return 1 if n_excluded else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
