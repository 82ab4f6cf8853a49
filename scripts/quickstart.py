"""The built-in default: see the whole system work on a laptop CPU, no downloads.

    python scripts/quickstart.py [--output quickstart_out] [--iterations N] [--short]

1. generates a synthetic training set, 6 held-out validation videos and 12 held-out selection videos;
2. trains the SMALL model (ResNet-18 key encoder, narrow layers: NOT the
   paper's model) per clip with the real train.py code path;
3. evaluates the validation videos with the real DAVIS evaluation path at several clip lengths, without
   mirror augmentation, against the copy-the-first-mask baseline; the clip length the checkpoint records
   is the best one on the selection videos; the mirror-augmented figure at it is measured beside;
4. writes report.md / report.html, loss.png, overlay images and report.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import train  # noqa: E402
from dataset.benchmarks import davis_benchmark  # noqa: E402
from dataset.synthetic import (  # noqa: E402
    SyntheticConfig,
    make_split,
    relative_motion,
    write_davis,
    write_youtube_train,
)
from inference.benchmark_run import run_benchmark, score_benchmark  # noqa: E402
from inference.engine import EngineConfig, PCVOSEngine, prepare_network  # noqa: E402
from model.checkpoint import build_model, recommend_settings  # noqa: E402
from model.trainer import TrainConfig, export_final  # noqa: E402
from util.arguments import add_alias, new_parser  # noqa: E402
from util.arguments import frame_size as parse_frame_size  # noqa: E402
from util.errors import run_cli  # noqa: E402
from util.palette import read_index_png, write_index_png  # noqa: E402
from util.paths import write_text_atomic as write_text  # noqa: E402
from util.pictures import Chart, Series, label_grid, overlay, save_png  # noqa: E402
from util.runtime import cpu_has_fast_bf16, resolve_device  # noqa: E402

# --time-budget: the run re-plans its iterations from its own measured speed after REPLAN_FIRST iterations and
# again halfway and three quarters through the plan (the first TIMING_WARMUP iterations after each start are not
# timed). On a shared machine the speed drifts by 10-20 % within a run: re-planned only halfway, a run of
# 2026-12-03 trained 87 s longer than planned and ended at 25.7 minutes; hence the third point and a 60 s margin.
REPLAN_FIRST = 200
TIMING_WARMUP = 10
# A shrunk plan is re-planned halfway through what is left only when that is at least REPLAN_MIN_REST iterations:
# each segment resumes a checkpoint (a few seconds), which shrinks the plan by a few iterations again; without this
# floor a default run of 2026-12-06 ended in segments of 220, 109, 50 and 17 iterations.
REPLAN_MIN_REST = 2 * REPLAN_FIRST
# The evaluation budget: before training, the untrained network segments the first validation video at every clip
# length without scoring it (after one untimed pass); every frame of the evaluation is budgeted at the speed measured
# at its clip length, scaled to the evaluation videos' mean object count (measure_evaluation), the mirror-augmented
# frames at the slowest clip length (the recorded L is chosen later), times EVAL_MARGIN (scoring), plus EVAL_FIXED_S
# for loading, one scoring pool per clip length and set (each starts processes that import torch), the baseline and
# the report. Frames at L = 5 and 10 run 1.3-1.6x faster than at L = 1, so one speed for all of them (the budget
# before 2026-12-03) over-charged and cut training short. A frame costs about KEY_OBJECTS + its objects in units of
# one object's work (the key encoder runs once per frame, the value encoder and decoder once per object):
# 2026-12-06, 2 cores with native bf16, 256x448, L = 5, fp32, an untrained small model: 0.076-0.083 s/frame with
# one target, 0.097-0.104 with two. 2026-12-03, same machine: 431 s budgeted where evaluation and report took about
# 345 s, and 485 s where they took about 325 s, with a margin of 1.2 and a cost of 1 + objects.
# Evaluation runs in fp32 whatever the training precision, so the training speed does not predict it (on 2 cores
# without native bf16 training was 2.9x slower per iteration than on a CPU with native bf16, evaluation as fast).
EVAL_MARGIN, EVAL_FIXED_S, KEY_OBJECTS = 1.1, 60.0, 2.5
BUDGET_MARGIN_S = 60.0
# The selection videos: the same recipe as the validation videos, another seed (the recorded L is chosen on them,
# not on the videos the report scores).
SELECT_SEED_OFFSET = 7000


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    p = new_parser(__doc__)
    add_alias(p, p.add_argument("--output", dest="out", type=Path, default=Path("quickstart_out"), metavar="FOLDER",
                                help="everything goes here"), "--out")
    p.add_argument("--iterations", type=int, default=2250,
                   help="training iterations (about 20 min on 2 cores in bf16 at 0.52 s/it)")
    p.add_argument("--batch-size", type=int, default=4, help="training batch size in samples")
    p.add_argument("--crop-size", type=int, default=112,
                   help="training crop; 112 = a 7x7 stride-16 grid, so the refinement trains on whole 7x7 windows")
    p.add_argument("--min-scale", type=float, default=0.075, metavar="FRACTION",
                   help="smallest training crop, as a fraction of the frame's area (default 0.075: a 112-pixel "
                        "crop enlarges a 128x224 frame 1.2-2.4 times, the scale --eval-scale 2 shows it at)")
    p.add_argument("--max-scale", type=float, default=0.3, metavar="FRACTION",
                   help="largest training crop, as a fraction of the frame's area (default 0.3)")
    p.add_argument("--eval-scale", type=float, default=2.0, metavar="FACTOR",
                   help="the evaluation enlarges the videos by this factor (default 2; 1: their own size) so that "
                        "the stride-16 grid is fine enough to part a target from a look-alike it touches; the "
                        "report's commands run at that size too")
    p.add_argument("--lr", type=float, default=2e-4,
                   help="peak learning rate; higher than the paper's 1e-5: training from scratch (1e-4 and 3e-4 "
                   "did worse, docs/quickstart.md)")
    p.add_argument("--lr-schedule", choices=("step", "cosine"), default="cosine",
                   help="cosine: half a cosine from --lr to 0 over the run; step: x0.1 at 60 %% and 90 %% of the "
                   "iterations (the schedule before 2026-11-22)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="training precision; auto: bf16 on CUDA and on CPUs with native bf16 (AVX-512 BF16 / AMX, "
                   "1.6x faster per iteration there), else fp32. Evaluation always runs in fp32")
    p.add_argument("--batchnorm", choices=("train", "frozen"), default="train",
                   help="BatchNorm with batch statistics (training from scratch) or frozen running statistics")
    p.add_argument("--train-videos", type=int, default=120,
                   help="24 over-fit (0.87 J&F on them, 0.67 held out); past ~120 more videos stop helping")
    p.add_argument("--val-videos", type=int, default=6, help="held-out videos the report scores")
    p.add_argument("--select-videos", type=int, default=12,
                   help="other held-out videos (another seed) on which the clip length the checkpoint records is "
                        "chosen: the best J&F among --clip-lengths, the longer L on a tie")
    p.add_argument("--frames", type=int, default=40, help="frames per synthetic video")
    add_alias(p, p.add_argument("--frame-size", dest="size", type=parse_frame_size, default=(128, 224),
                                metavar="HxW", help="frame size of the synthetic videos, height x width in "
                                                    "pixels (default 128x224)"), "--size")
    p.add_argument("--object-scale", type=float, nargs=2, default=(0.2, 0.4), metavar=("MIN", "MAX"),
                   help="object diameter as a fraction of the frame height")
    p.add_argument("--motion-speed", type=float, default=0.012,
                   help="mean object speed as a fraction of the frame height per frame")
    p.add_argument("--lookalike-shift", type=float, default=90.0,
                   help="RGB distance between a look-alike distractor's colours and its target's")
    p.add_argument("--clip-lengths", type=int, nargs="+", default=[1, 5, 10], metavar="L",
                   help="values of L to evaluate and choose from")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure J&F with mirror test-time augmentation at the recorded L, shown beside the "
                        "headline and labelled (default on). The headline, and what the checkpoint records, are "
                        "without it")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="data-loading processes; 0 (load in the training process) is fastest on 2 cores, where "
                   "worker processes compete with the training threads")
    p.add_argument("--time-budget", type=float, default=25.0, metavar="MIN",
                   help=f"minutes for the whole run (default 25): after {REPLAN_FIRST} iterations, halfway and at "
                   "three quarters the run measures its own speed and, where --iterations would not fit, trains fewer "
                   "(0: always train --iterations)")
    p.add_argument("--short", action="store_true", help="a few iterations on tiny data (what the tests run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the training")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.iterations < 1:
        p.error(f"--iterations {args.iterations}: must be >= 1")
    if not 0 < args.min_scale <= args.max_scale <= 1:
        p.error(f"--min-scale {args.min_scale} / --max-scale {args.max_scale}: crop areas are fractions of the "
                "frame's area, 0 < min <= max <= 1")
    if args.eval_scale <= 0:
        p.error(f"--eval-scale {args.eval_scale}: must be > 0 (1 = the videos' own size)")
    for flag in ("val_videos", "select_videos"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    return args


def make_data(args: argparse.Namespace, height: int, width: int) -> tuple[Path, Path, Path]:
    """Training set (YouTube-VOS + DAVIS train layouts) and two held-out DAVIS-layout sets of the same recipe:
    the validation videos the report scores and the selection videos the recorded L is chosen on."""
    data = args.out / "data"
    train_root, val_root, select_root = data / "train", data / "val" / "trainval", data / "select" / "trainval"
    recipe = {key: getattr(args, key) for key in (
        "train_videos", "val_videos", "select_videos", "frames", "object_scale", "motion_speed", "lookalike_shift",
        "seed", "short")}
    recipe.update(size=[height, width], object_scale=list(args.object_scale))
    stamp = data / "recipe.json"  # written last: a half-written or older data folder has none
    if not (stamp.is_file() and json.loads(stamp.read_text()) == recipe):
        if data.exists():
            print(f"      {data} is incomplete or was made with other settings: generating it again")
            shutil.rmtree(data)
        config = SyntheticConfig(
            num_frames=args.frames, height=height, width=width, num_objects=2, object_scale=tuple(args.object_scale),
            motion_speed=args.motion_speed, lookalike_shift=args.lookalike_shift,
        )
        train_videos = make_split("train", args.train_videos, config, seed=args.seed + 1000)
        write_youtube_train(train_root / "YouTube", train_videos, davis_root=train_root / "DAVIS" / "trainval")
        # A fair test: every held-out target moves by at least its own size (videos that fail are redrawn).
        for root, count, offset in ((val_root, args.val_videos, 5000), (select_root, args.select_videos,
                                                                         SELECT_SEED_OFFSET)):
            videos = make_split("val", count, config, seed=args.seed + offset, allow_late=False,
                                min_motion=0.0 if args.short else 1.0)
            write_davis(root, videos, split="val")
        stamp.write_text(json.dumps(recipe))
    return train_root, val_root, select_root


def training_precision(choice: str, device) -> str:
    """'auto' -> bf16 where it is fast (CUDA, or a CPU with native bf16), else fp32."""
    if choice != "auto":
        return choice
    return "bf16" if device.type == "cuda" or cpu_has_fast_bf16() else "fp32"


def training_config(args: argparse.Namespace, train_root: Path) -> TrainConfig:
    return replanned(TrainConfig(
        stage=3,
        model_size="small",
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        precision=args.precision,
        batchnorm=args.batchnorm,
        channels_last=True,
        clip_lengths=(2, 2),
        crop_size=args.crop_size,
        min_scale=args.min_scale,
        max_scale=args.max_scale,
        num_workers=args.workers,
        output=str(args.out / "runs"),
        run_name="quickstart",
        # A rerun into the same --output trains anew and replaces the earlier run; the segments of one run then
        # continue it with resume (train_model), which the overwrite does not touch.
        overwrite=True,
        imagenet=False,
        youtube_root=str(train_root / "YouTube"),
        davis_root=str(train_root / "DAVIS"),
        device=args.device,
        seed=args.seed,
    ), args.iterations)


def replanned(config: TrainConfig, iterations: int) -> TrainConfig:
    """``config`` for a run of ``iterations``: everything that scales with the length of the run follows."""
    return dataclasses.replace(
        config, iterations=iterations, lr_steps=(int(iterations * 0.6), int(iterations * 0.9)),
        save_every=max(50, iterations // 4), log_every=max(1, iterations // 20), image_every=max(1, iterations // 4),
        bootstrap_start=iterations // 3, bootstrap_end=iterations,
    )


def eval_size(args: argparse.Namespace) -> int:
    """The short side the evaluation works at, in pixels (-1: the videos' own size)."""
    return -1 if args.eval_scale == 1 else round(args.eval_scale * min(frame_size(args)))


def evaluation_frames(args: argparse.Namespace) -> dict[int | str, int]:
    """Frames the evaluation segments per clip length (validation and selection videos), and under ``"flip"`` the
    validation videos with mirror augmentation (each frame twice) at the recorded L."""
    frames: dict[int | str, int] = {length: (args.val_videos + args.select_videos) * args.frames
                                    for length in args.clip_lengths}
    if args.flip:
        frames["flip"] = 2 * args.val_videos * args.frames
    return frames


def evaluation_seconds(args: argparse.Namespace, seconds_per_frame: dict[int, float]) -> float:
    """Budgeted evaluation + report time from the seconds per frame at each clip length (by
    :func:`measure_evaluation`); the mirror-augmented frames are charged at the slowest clip length."""
    frames = evaluation_frames(args)
    work = sum(seconds_per_frame[length] * frames[length] for length in args.clip_lengths)
    work += max(seconds_per_frame.values()) * frames.get("flip", 0)
    return EVAL_FIXED_S + EVAL_MARGIN * work


def first_frame_objects(root: Path) -> list[int]:
    """Objects in the first annotated frame of each video of a DAVIS-layout set, in name order."""
    videos = sorted((root / "Annotations" / "480p").iterdir())
    return [int(np.count_nonzero(np.unique(read_index_png(sorted(v.glob("*.png"))[0])))) for v in videos]


def measure_evaluation(args: argparse.Namespace, val_root: Path, select_root: Path) -> dict[int, float]:
    """Seconds per frame to segment the evaluation's videos at each clip length, estimated on the first validation
    video with an untrained small model (after one untimed pass) and scaled to the videos' mean object count: a frame
    is charged (KEY_OBJECTS + objects) / (KEY_OBJECTS + the probe video's objects) times the probe's."""
    import torch

    from model.network import PCVOS, PCVOSConfig

    probe = args.out / "eval" / "probe"
    bench = davis_benchmark(val_root, "2017", "val", probe)
    bench.sources, bench.score = bench.sources[:1], None  # the engine alone: no scoring pool to start
    speeds = {}
    with torch.random.fork_rng(devices=[]):  # the random weights leave the training's random stream as it was
        network = PCVOS(PCVOSConfig.small()).to(resolve_device(args.device)).eval()
        prepare_network(network)
        # One untimed pass first: the first pass also pays for one-time work (kernel selection for the new shapes,
        # reading the video from a cold cache right after it was written) and timed 1.5-2.6x slow.
        for length in [args.clip_lengths[0], *args.clip_lengths]:
            tic = time.perf_counter()
            run_benchmark(PCVOSEngine(network, EngineConfig(clip_length=length)), bench, size=eval_size(args),
                          workers=0, log=lambda s: None)
            speeds[length] = (time.perf_counter() - tic) / max(1, len(bench.sources[0].frames))
    shutil.rmtree(probe, ignore_errors=True)
    factor = object_cost_factor(first_frame_objects(val_root) + first_frame_objects(select_root))
    return {length: seconds * factor for length, seconds in speeds.items()}


def object_cost_factor(counts: list[int]) -> float:
    """Cost of the mean frame of videos with ``counts`` objects relative to a frame of the first one."""
    return (KEY_OBJECTS + float(np.mean(counts))) / (KEY_OBJECTS + counts[0])


def plan_iterations(requested: int, done: int, per_iteration: float, seconds_left: float) -> int:
    """Iterations for the whole run: ``requested`` if the rest fits ``seconds_left`` at ``per_iteration``, else the
    ``done`` ones plus as many as fit (never fewer than ``done``: those are trained already)."""
    return max(done, min(requested, done + int(seconds_left / per_iteration)))


def replan_points(plan: int) -> list[int]:
    """Iterations after which a budgeted run of ``plan`` iterations measures its speed and re-plans (a re-planned
    run keeps them, and adds one halfway through the rest when its plan shrinks below the next: train_model)."""
    return sorted({c for c in (min(REPLAN_FIRST, plan // 10), plan // 2, 3 * plan // 4) if 0 < c < plan})


def segment_speed(marks: dict[int, float], segment_start: float) -> tuple[float, int]:
    """(seconds per iteration, iterations timed) of a segment from the times its iterations ended, leaving out
    the first TIMING_WARMUP where the segment is long enough."""
    times = [marks[i] for i in sorted(marks)]
    if len(times) > TIMING_WARMUP + 1:
        return (times[-1] - times[TIMING_WARMUP - 1]) / (len(times) - TIMING_WARMUP), len(times) - TIMING_WARMUP
    return (times[-1] - segment_start) / len(times), len(times)


def frame_size(args: argparse.Namespace) -> tuple[int, int]:
    height, width = args.size
    return height, width


def train_model(args, config: TrainConfig, deadline: float | None, evaluation: float = 0.0
                ) -> tuple[Path, list[float], float, int]:
    """Train; returns (final weights, losses, minutes, iterations trained).

    With a ``deadline`` (time.perf_counter() by which training and evaluation must end) and ``evaluation`` (the
    seconds budgeted for the evaluation after training), the run is trained in segments, each resuming the last
    one's checkpoint exactly (when nothing is cut, the weights are bit-identical to one uninterrupted run). After
    each segment but the last, the iterations are re-planned from the segment's speed: the cosine schedule, the
    gap curriculum and the bootstrap window then follow the new total. Without
    one, the run is a single segment.
    """
    start = time.perf_counter()
    losses: list[float] = []
    done, plan, checkpoint, final = 0, config.iterations, None, None
    # Those of the requested plan; a plan that shrinks below the next one gets one halfway through what is left
    # (a slower stretch of training is then caught before the end) if at least REPLAN_MIN_REST iterations are left.
    # None without a deadline.
    points = replan_points(plan) if deadline is not None else []
    while done < plan:
        stop = next((c for c in points if done < c < plan), plan)
        marks: dict[int, float] = {}
        segment = dataclasses.replace(
            replanned(config, plan), stop_after=stop - done, resume=str(checkpoint) if checkpoint else None,
        )
        segment_start = time.perf_counter()
        result = train.run_full(segment, lambda i, _m, marks=marks: marks.__setitem__(i, time.perf_counter()))
        losses += result.losses
        checkpoint, final, done = result.checkpoint, result.final, stop
        if done < plan:
            per_iteration, timed = segment_speed(marks, segment_start)
            seconds_left = deadline - time.perf_counter() - evaluation
            new_plan = plan_iterations(config.iterations, done, per_iteration, seconds_left)
            if new_plan != plan:
                print(f"      {per_iteration:.3f} s/iteration over {timed} iterations: {new_plan} of the "
                      f"{config.iterations} iterations fit the {args.time_budget:g}-minute budget "
                      "(--time-budget 0 trains them all)")
            middle = (done + new_plan) // 2
            if (new_plan < plan and not any(done < c < new_plan for c in points)
                    and new_plan - done >= REPLAN_MIN_REST):
                points.append(middle)
            plan = new_plan
    if final is None:  # the plan shrank to the iterations done: the last segment stopped short of its old plan
        final = export_final(checkpoint)
    return final, losses, (time.perf_counter() - start) / 60, done


def recommended_clip_length(selection: dict[int, dict], select_videos: int) -> tuple[int, str]:
    """(L the checkpoint records for other videos, why): the best J&F on the selection videos (held out, and
    not the videos the report scores); on a tie the longer L, which runs faster."""
    best = max(selection, key=lambda length: (round(selection[length]["J&F"], 3), length))
    others = ", ".join(f"{selection[k]['J&F']:.3f} at L = {k}" for k in sorted(selection) if k != best)
    return best, (f"the best J&F on {select_videos} held-out selection videos: {selection[best]['J&F']:.3f} at "
                  f"L = {best}" + (f" against {others}" if others else ""))


def copy_first_mask(bench, out: Path) -> dict:
    """The baseline: every frame gets the first frame's mask."""
    bench.mask_root = out
    for source in bench.sources:
        first = read_index_png(source.labels[min(source.labels)])
        for frame in source.frames:
            write_index_png(out / source.name / f"{frame.stem}.png", first)
    row, _ = score_benchmark(bench)
    return row


def evaluate_set(args, network, root: Path, folder: str, lengths, flip: bool = False) -> dict[int, dict]:
    """J&F, J, F and engine FPS of the videos under ``root`` at each clip length; masks in eval/<folder>/L<n>."""
    results = {}
    for length in lengths:
        bench = davis_benchmark(root, "2017", "val", args.out / "eval" / folder / f"L{length}")
        engine = PCVOSEngine(network, EngineConfig(clip_length=length, flip=flip))
        result = run_benchmark(engine, bench, size=eval_size(args), workers=args.workers, log=lambda s: None)
        results[length] = {"J&F": result.scores["J&F-Mean"], "J": result.scores["J-Mean"],
                           "F": result.scores["F-Mean"], "fps": result.engine_fps}
    return results


def evaluate(args, checkpoint: Path, val_root: Path, select_root: Path) -> dict:
    """Every figure of the report: the validation videos at each L (no mirror augmentation), the selection videos
    at each L, the recorded L chosen on them, the validation videos with mirror augmentation at that L (with
    --flip), and the copy-the-first-mask baseline."""
    device = resolve_device(args.device)
    network, _ = build_model(checkpoint, device)
    prepare_network(network)
    validation = evaluate_set(args, network, val_root, "val", args.clip_lengths)
    selection = evaluate_set(args, network, select_root, "select", args.clip_lengths)
    recorded, why = recommended_clip_length(selection, args.select_videos)
    flipped = evaluate_set(args, network, val_root, "val-flip", [recorded], flip=True)[recorded] if args.flip else None
    bench = davis_benchmark(val_root, "2017", "val", args.out / "eval" / "baseline")
    baseline = copy_first_mask(bench, args.out / "eval" / "baseline")
    return {"validation": validation, "selection": selection, "recorded": recorded, "why": why, "flip": flipped,
            "baseline": {"J&F": baseline["J&F-Mean"], "J": baseline["J-Mean"], "F": baseline["F-Mean"]}}


def validation_motion(val_root: Path) -> list[float]:
    """How far each validation target travels, in units of its own size (see relative_motion)."""
    out = []
    for video in sorted((val_root / "Annotations" / "480p").iterdir()):
        masks = (read_index_png(path) for path in sorted(video.glob("*.png")))
        out.extend(relative_motion(masks).values())
    return out


def loss_plot(losses: list[float], path: Path) -> None:
    """The training loss per iteration and its moving average (util.pictures: no plotting dependency)."""
    chart = Chart(title="training loss", x_label="iteration", y_label="loss", width=800, height=420)
    if losses:
        values = np.asarray(losses, dtype=np.float64)
        window = min(25, len(values))
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        steps = np.arange(1, len(values) + 1)
        top = float(np.percentile(values, 99)) if len(values) >= 100 else float(values.max())  # a spike is cut
        low = float(values.min())
        margin = 0.06 * (top - low) or 0.5
        chart.y_range = (low - margin, top + margin)
        chart.add(Series("loss", steps, values, markers=len(values) < 30, width=1 if len(values) > 200 else 2))
        if len(smooth) > 1:
            chart.add(Series(f"moving average of {window}", steps[window - 1:], smooth, markers=False))
    save_png(chart.render(), path)


def overlay_strip(args, val_root: Path, length: int, path: Path) -> None:
    """Four frames of the first validation video: ground truth (top row) and predicted masks (bottom row)."""
    video = sorted((val_root / "JPEGImages" / "480p").iterdir())[0]
    frames = sorted(video.glob("*.jpg"))
    picks = [frames[i] for i in np.linspace(0, len(frames) - 1, 4).astype(int)]
    rows = [[], []]
    for frame in picks:
        rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
        truth = read_index_png(val_root / "Annotations" / "480p" / video.name / f"{frame.stem}.png")
        mask = read_index_png(args.out / "eval" / "val" / f"L{length}" / video.name / f"{frame.stem}.png")
        rows[0].append(overlay(rgb, truth))
        rows[1].append(overlay(rgb, mask))
    grid = label_grid(rows, [f"frame {p.stem}" for p in picks], ["ground truth", f"L = {length}"], min_tile=0)
    save_png(grid, path)


def write_report(args, report: dict) -> None:
    recorded, ckpt = report["recommended_clip_length"], shlex.quote(report["checkpoint"])
    selection, flipped = report["selection"], report["flip_result"]

    entries = [(f"L = {k}" + (" (recorded)" if int(k) == recorded else ""), v, f"{selection[k]['J&F']:.3f}")
               for k, v in report["clip_lengths"].items()]
    if flipped is not None:
        entries.append((f"L = {recorded} with mirror augmentation (`--flip`)", flipped, "-"))
    rows = [f"| {label} | {v['J&F']:.3f} | {v['J']:.3f} | {v['F']:.3f} | {v['fps']:.1f} | {select} |"
            for label, v, select in entries]
    base, motion = report["baseline"], report["val_motion"]
    headline = report["headline"]
    flip_note = (f"; with mirror test-time augmentation (`--flip`, the mirror image segmented too): "
                 f"{flipped['J&F']:.3f}" if flipped is not None else "")
    md = "\n".join([
        "# PCVOS quickstart report",
        "",
        "Small model (ResNet-18 key encoder, narrow layers): **not the paper's model**. Trained from scratch on",
        f"synthetic videos, per clip (a reference frame and clips of {report['training_clips']} frames per sample), "
        f"for {report['iterations']} iterations ({report['training_minutes']:.1f} min), evaluated"
        + (f" (the videos enlarged to a short side of {report['eval_size']} pixels)" if report["eval_size"] > 0 else "")
        + " on",
        f"{report['val_videos']} held-out synthetic videos with the DAVIS 2017 J&F of util/davis_metrics, without "
        "mirror augmentation.",
        f"Their targets travel {motion['min']:.1f} to {motion['max']:.1f} times their own size (median "
        f"{motion['median']:.1f}) from where they are first labelled.",
        *([f"This machine was too slow for all {report['iterations_requested']} iterations in the "
           f"{report['time_budget_minutes']:g}-minute budget (`--time-budget 0` trains them all)."]
          if report["iterations"] < report["iterations_requested"] else []),
        "",
        f"**J&F {headline['J&F']:.3f} at L = {headline['clip_length']}**, the clip length the checkpoint records "
        f"(the best on {report['select_videos']} other held-out videos){flip_note}.",
        "",
        f"| method | J&F | J | F | FPS (engine) | J&F, {report['select_videos']} selection videos |",
        "|---|---|---|---|---|---|",
        *rows,
        f"| copy the first mask | {base['J&F']:.3f} | {base['J']:.3f} | {base['F']:.3f} | - | - |",
        "",
        "![training loss](loss.png)",
        "",
        f"![overlay](overlay.png)  (first validation video at L = {report['overlay_clip_length']}, the recorded "
        "clip length: ground truth above, prediction below)",
        "",
        f"Checkpoint: `{report['checkpoint']}`",
        "",
    ])
    size = report["eval_size"]
    commands = [
        f"python eval_davis.py --model {ckpt} --davis-root DAVIS_ROOT --output out/"
        + (f" --size {size}" if size > 0 else ""),
        f"python segment.py --model {ckpt} --video VIDEO --mask FIRST_MASK.png --output out/ --size {size}",
    ]
    short = size if size > 0 else min(report["frame_size"])
    low, high = (round(scale * short) for scale in args.object_scale)
    where = (f"at `--size {size}` (the short side in pixels), as the quickstart evaluates its "
             f"{min(report['frame_size'])}-pixel-high videos" if size > 0 else "at their own resolution (`--size -1`)")
    usage = (f"The checkpoint records L = {recorded} ({report['recommended_why']}) and no mirror augmentation; the "
             "drivers run at them unless `-L N` / `--flip` say otherwise (without a record they use the paper "
             f"model's L = 5). Run videos {where}: there the targets are about {low}-{high} pixels, the size the "
             "model learnt.")
    body = "".join(f"<p>{html.escape(line)}</p>" if not line.startswith(("|", "!")) else ""
                   for line in md.splitlines())
    md += "\n".join(["", "## Run this checkpoint on other videos", "", usage, "", "```bash", *commands, "```", ""])
    write_text(args.out / "report.md", md)
    table = "".join(f"<tr><td>{html.escape(label.replace('`', ''))}</td><td>{v['J&F']:.3f}</td>"
                    f"<td>{v['fps']:.1f}</td><td>{select}</td></tr>" for label, v, select in entries)
    code = html.escape("\n".join(commands))
    write_text(args.out / "report.html",
        f"<html><body>{body}<table border=1><tr><th>method</th><th>J&amp;F</th><th>FPS</th>"
        f"<th>J&amp;F, selection videos</th></tr>{table}"
        f"<tr><td>copy first mask</td><td>{base['J&F']:.3f}</td><td>-</td><td>-</td></tr></table>"
        "<img src='loss.png'><br><img src='overlay.png'>"
        f"<h2>Run this checkpoint on other videos</h2><p>{html.escape(usage.replace('`', ''))}</p>"
        f"<pre>{code}</pre></body></html>"
    )
    write_text(args.out / "report.json", json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.short:
        args.iterations, args.train_videos, args.val_videos, args.select_videos, args.frames = 4, 2, 1, 1, 12
        args.size, args.clip_lengths, args.crop_size, args.batch_size = (64, 112), [1, 5], 64, 2
    args.precision = training_precision(args.precision, resolve_device(args.device))
    height, width = frame_size(args)
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"[1/4] synthetic data in {args.out / 'data'}")
    try:
        train_root, val_root, select_root = make_data(args, height, width)
    except ValueError as error:  # e.g. --motion-speed too low for the held-out videos to move enough
        print(f"quickstart: error: {error}", file=sys.stderr)
        return 2
    config = training_config(args, train_root)
    requested = args.iterations
    # Training must end early enough for the evaluation (budgeted from a measured one) and a margin.
    deadline = start + args.time_budget * 60 - BUDGET_MARGIN_S if args.time_budget > 0 else None
    evaluation = 0.0
    if deadline is not None:
        per_frame = measure_evaluation(args, val_root, select_root)
        evaluation = evaluation_seconds(args, per_frame)
        speeds = " / ".join(f"{per_frame[length]:.3f}" for length in args.clip_lengths)
        lengths = " / ".join(map(str, args.clip_lengths))
        print(f"      data ready after {time.perf_counter() - start:.0f} s; evaluation budgeted at {evaluation:.0f} s "
              f"({speeds} s/frame at L = {lengths}: one validation video, scaled to the videos' objects)")
    budget = f" (re-planned to fit {args.time_budget:g} minutes if this machine is too slow)" if deadline else ""
    print(f"[2/4] training the small CPU model per clip for {args.iterations} iterations{budget}")
    checkpoint, losses, minutes, args.iterations = train_model(args, config, deadline, evaluation)
    print(f"[3/4] evaluating at L = {args.clip_lengths} on {args.val_videos} validation and {args.select_videos} "
          "selection videos")
    figures = evaluate(args, checkpoint, val_root, select_root)
    motion = validation_motion(val_root)
    print("[4/4] report")
    loss_plot(losses, args.out / "loss.png")
    recorded, validation = figures["recorded"], figures["validation"]
    recommend_settings(checkpoint, recorded, figures["why"], flip=False)
    overlay_strip(args, val_root, recorded, args.out / "overlay.png")
    report = {
        "headline": {"clip_length": recorded, **validation[recorded]},
        "clip_lengths": {str(k): v for k, v in validation.items()},
        "selection": {str(k): v for k, v in figures["selection"].items()},
        "flip_result": figures["flip"],
        "baseline": figures["baseline"],
        "training_minutes": minutes,
        "total_minutes": (time.perf_counter() - start) / 60,
        "iterations": args.iterations,
        "iterations_requested": requested,
        "time_budget_minutes": args.time_budget,
        "training_precision": args.precision,
        "training_clips": "+".join(str(n) for n in config.clip_lengths),
        "val_videos": args.val_videos,
        "select_videos": args.select_videos,
        "frame_size": [height, width],
        "eval_size": eval_size(args),
        "training_crop_scale": [args.min_scale, args.max_scale],
        "val_motion": {"min": float(np.min(motion)), "median": float(np.median(motion)), "max": float(np.max(motion))},
        "checkpoint": str(checkpoint),
        "model": "small (not the paper's model)",
        "overlay_clip_length": recorded,
        "recommended_clip_length": recorded,
        "recommended_why": figures["why"],
        "flip": args.flip,
    }
    write_report(args, report)
    flipped = f"; {figures['flip']['J&F']:.3f} with mirror augmentation" if figures["flip"] else ""
    print(f"quickstart: J&F {validation[recorded]['J&F']:.3f} at the recorded L = {recorded} (no mirror "
          f"augmentation{flipped}) vs copy-first-mask {figures['baseline']['J&F']:.3f}; "
          f"{report['total_minutes']:.1f} min; report in {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
