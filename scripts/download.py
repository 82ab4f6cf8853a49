"""Download helpers for training data and weights (needs internet; nothing runs on import).

Usage::

    python scripts/download.py pcvos                    # the released PCVOS checkpoint -> saves/s03_pcvos_ytvos.pth
    python scripts/download.py stcn | stcn-s03          # STCN's s012 / s03 checkpoints -> saves/stcn.pth, stcn_s03.pth
    python scripts/download.py imagenet --output ~/.cache/torch/hub/checkpoints   # ResNet-50/18 ImageNet weights
    python scripts/download.py davis --output ../DAVIS/2017                         # DAVIS 2017 trainval 480p
    python scripts/download.py youtube | static | bl30k                          # prints manual steps

Direct downloads are streamed to a temporary name, verified (sha256 prefix
from torchvision's file names, or a full checksum where one is published) and
only then renamed into place. The released checkpoints live on Google Drive,
which answers large files with a confirmation page; the maintained ``gdown``
package handles that, and resumes an interrupted download from its ``.part``
file on the next run. A downloaded checkpoint is verified (its size where
known, that it loads with ``weights_only=True`` and holds the network's keys)
before it gets its final name. Offline, or when Drive refuses, the error says
which file to fetch by hand and where to put it. Items behind a registration
cannot be fetched by a script; for them the helper prints where to get them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # model/ for the checks, run as a script too

from util.arguments import add_alias, new_parser  # noqa: E402


@dataclass(frozen=True)
class Item:
    """One downloadable file; ``sha256`` may be a prefix (torchvision names carry the first 8 hex digits)."""

    url: str
    filename: str
    sha256: str | None = None
    unzip: bool = False


AUTOMATIC: dict[str, list[Item]] = {
    "imagenet": [
        Item("https://download.pytorch.org/models/resnet50-0676ba61.pth", "resnet50-0676ba61.pth", "0676ba61"),
        Item("https://download.pytorch.org/models/resnet18-f37072fd.pth", "resnet18-f37072fd.pth", "f37072fd"),
    ],
    "davis": [
        Item("https://data.vision.ee.ethz.ch/csergi/share/davis/DAVIS-2017-trainval-480p.zip",
             "DAVIS-2017-trainval-480p.zip", None, unzip=True),
    ],
}

MANUAL: dict[str, str] = {
    "youtube": (
        "YouTube-VOS 2019 needs a (free) registration: https://youtube-vos.org/dataset/ -> the 2019 challenge "
        "on CodaLab. Put train.zip's content at ../YouTube/train/{JPEGImages,Annotations}/ and run "
        "`python scripts/resize_youtube.py --root ../YouTube` to make train_480p/."
    ),
    "static": (
        "Static pre-training images (FSS-1000, DUTS-TR/TE, ECSSD, BIG, HRSOD): STCN's README "
        "(https://github.com/hkchengrex/STCN#training) links a combined archive. Extract it to ../static/ so that "
        "../static/{fss,DUTS-TR,DUTS-TE,ecssd,BIG_small,HRSOD_small}/ exist."
    ),
    "bl30k": (
        "BL30K (~700 GB, optional stage 1): see https://github.com/hkchengrex/MiVOS#bl30k for the download "
        "parts; extract to ../BL30K/{JPEGImages,Annotations}/."
    ),
}


@dataclass(frozen=True)
class Weights:
    """A released checkpoint on Google Drive.

    ``kind`` names the keys it must hold: 'pcvos' (every key of the paper network) or 'stcn' (those less the
    intra-clip refinement). ``url`` replaces the Drive address (tests serve a file locally).
    """

    filename: str
    drive_id: str
    page: str  # where the authors publish the link
    kind: str
    size: int | None = None  # bytes, where published
    url: str | None = None

    @property
    def source(self) -> str:
        return self.url or f"https://drive.google.com/uc?id={self.drive_id}"

    @property
    def by_hand(self) -> str:
        return f"https://drive.google.com/file/d/{self.drive_id}/view"


#: The checkpoints ``download.py pcvos|stcn|stcn-s03`` fetch (Drive ids from the authors' READMEs).
WEIGHTS: dict[str, list[Weights]] = {
    "pcvos": [Weights("s03_pcvos_ytvos.pth", "1g69yjZOkl4Hz3iFYfJkmo8Pvk1T25jjk",
                      "https://github.com/pkyong95/PCVOS#inference", "pcvos")],
    "stcn": [Weights("stcn.pth", "1mRrE0uCI2ktdWlUgapJI_KmgeIiF2eOm",
                     "https://github.com/hkchengrex/STCN#pretrained-models", "stcn")],
    "stcn-s03": [Weights("stcn_s03.pth", "1JllXPJZola0G-g1aUQfXe9nLMBioj-aH",
                         "https://github.com/hkchengrex/STCN#pretrained-models", "stcn")],
}

Opener = Callable[[str], object]


class DownloadError(OSError):
    """A download failed, or what arrived is not the expected file."""


def fetch(item: Item, out: Path, opener: Opener = urllib.request.urlopen, chunk: int = 1 << 20) -> Path:
    """Stream ``item`` into ``out/filename`` (skip if present and valid); verify; unzip when asked."""
    out.mkdir(parents=True, exist_ok=True)
    dest = out / item.filename
    if dest.is_file() and _matches(dest, item.sha256):
        print(f"{dest}: already present")
    else:
        tmp = dest.with_name(f".{dest.name}.part")
        print(f"downloading {item.url} -> {dest}")
        try:
            with opener(item.url) as response, open(tmp, "wb") as handle:
                while block := response.read(chunk):
                    handle.write(block)
        except OSError as error:
            tmp.unlink(missing_ok=True)
            raise DownloadError(f"{item.url}: download failed ({error}); check the connection or fetch it by hand "
                                f"into {dest}") from error
        if not _matches(tmp, item.sha256):
            tmp.unlink(missing_ok=True)
            raise DownloadError(f"{item.url}: checksum mismatch (expected sha256 {item.sha256}...); file removed")
        tmp.replace(dest)
    if item.unzip:
        with zipfile.ZipFile(dest) as archive:
            archive.extractall(out)
        print(f"extracted {dest.name} into {out}")
    return dest


def expected_keys(kind: str) -> set[str]:
    """The state_dict keys a released checkpoint of ``kind`` ('pcvos' or 'stcn') must hold: those of the paper
    network (built on the meta device: no memory, no weights), less the optional quality head, and for STCN
    less the intra-clip refinement."""
    import torch

    from model.checkpoint import QUALITY_PREFIX, REFINE_PREFIXES
    from model.network import PCVOS, PCVOSConfig

    with torch.device("meta"):
        keys = set(PCVOS(PCVOSConfig()).state_dict())
    keys = {k for k in keys if not k.startswith(QUALITY_PREFIX)}
    if kind == "stcn":
        keys = {k for k in keys if not k.startswith(REFINE_PREFIXES)}
    return keys


def verify_weights(path: Path, item: Weights) -> None:
    """Check a checkpoint file: its size (where published), that it loads with ``weights_only=True`` and
    holds the keys of its kind.

    Raises:
        DownloadError: naming the file and what is wrong.
    """
    from model.checkpoint import CheckpointError, read_state_dict

    size = path.stat().st_size
    if item.size is not None and size != item.size:
        raise DownloadError(f"{path}: {size} bytes, the released {item.filename} has {item.size}")
    try:
        state, _ = read_state_dict(path)
    except CheckpointError as error:
        raise DownloadError(" ".join(str(error).split())) from error
    missing = expected_keys(item.kind) - set(state)
    if missing:
        raise DownloadError(
            f"{path}: lacks {len(missing)} of the keys of a {item.kind.upper()} checkpoint "
            f"(e.g. {', '.join(sorted(missing)[:3])}); it is not the released {item.filename}"
        )


def fetch_weights(item: Weights, out: Path, retries: int = 3, quiet: bool | None = None) -> Path:
    """Download ``item`` into ``out/filename`` through gdown, resuming an earlier partial download; verify it;
    only then give it its final name. A file already there that passes the checks is kept.

    Raises:
        DownloadError: one line: what failed, and what to fetch by hand and where to put it.
    """
    out.mkdir(parents=True, exist_ok=True)
    dest = out / item.filename
    if dest.is_file():
        try:
            verify_weights(dest, item)
        except DownloadError as error:
            print(f"{dest}: present but refused ({error}); downloading it again")
        else:
            print(f"{dest}: already present and verified")
            return dest
    hand = f"fetch {item.by_hand} by hand (the link in {item.page}) and save it as {dest}"
    try:
        import gdown
        import requests
    except ImportError as error:
        raise DownloadError(f"{item.filename}: the gdown package is missing ({error}); run `pip install -r "
                            f"requirements.txt`, or {hand}") from error
    # gdown writes <staging><random>.part, then renames it to <staging>; the final name comes after the checks.
    staging = out / f".{item.filename}.download"
    print(f"downloading {item.filename} from {item.source} -> {dest}")
    try:
        gdown.download(url=item.source, output=str(staging), quiet=not sys.stderr.isatty() if quiet is None else quiet,
                       resume=True, use_cookies=False, retries=retries, timeout=(30, 120))
    except (requests.RequestException, gdown.exceptions.DownloadError, OSError) as error:
        if isinstance(error, (requests.ConnectionError, requests.Timeout)) and not isinstance(
                error, requests.exceptions.ChunkedEncodingError):
            reason = f"cannot reach {urllib.parse.urlsplit(item.source).netloc}, {type(error).__name__}; offline?"
        else:
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        partial = list(out.glob(f"{staging.name}*.part"))
        again = (f"; {partial[0].stat().st_size} bytes are kept in {partial[0]}, run the same command again to "
                 "resume" if partial else "")
        raise DownloadError(f"{item.filename}: download failed ({reason}){again}; or {hand}") from error
    try:
        verify_weights(staging, item)
    except DownloadError as error:
        staging.unlink(missing_ok=True)
        raise DownloadError(f"{item.filename}: the downloaded file is refused and was removed ({error}); run the "
                            f"command again, or {hand}") from error
    os.replace(staging, dest)
    print(f"{dest}: downloaded and verified")
    return dest


def _matches(path: Path, sha256: str | None) -> bool:
    if sha256 is None:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(sha256.lower())


def build_parser() -> argparse.ArgumentParser:
    """The command line (docs/cli.md)."""
    parser = new_parser("Download PCVOS training data and weights.")
    parser.add_argument("what", choices=sorted([*WEIGHTS, *AUTOMATIC, *MANUAL]),
                        help="pcvos, stcn, stcn-s03: released checkpoints; imagenet, davis: fetched directly; "
                             "youtube, static, bl30k: prints the manual steps")
    add_alias(parser, parser.add_argument(
        "--output", dest="out", metavar="FOLDER",
        help="target folder (default: saves/ for checkpoints, the torch hub cache for imagenet, ../DAVIS/2017 "
             "for davis)"), "--out")
    parser.add_argument("--retries", type=int, default=3,
                        help="checkpoints: attempts after a network error within one run, each resuming the "
                             "partial file (default: 3)")
    return parser


def main(argv: Sequence[str] | None = None, opener: Opener = urllib.request.urlopen) -> int:
    args = build_parser().parse_args(argv)
    if args.what in MANUAL:
        print(MANUAL[args.what])
        return 0
    if args.what in WEIGHTS:
        try:
            for item in WEIGHTS[args.what]:
                fetch_weights(item, Path(args.out or "saves"), retries=args.retries)
        except DownloadError as error:
            print(f"download.py: error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.out:
        out = Path(args.out)
    elif args.what == "imagenet":
        import torch

        out = Path(torch.hub.get_dir()) / "checkpoints"
    else:
        out = Path("../DAVIS/2017")
    try:
        for item in AUTOMATIC[args.what]:
            fetch(item, out, opener)
    except DownloadError as error:
        print(f"download.py: error: {error}", file=sys.stderr)
        return 2
    if args.what == "davis" and (out / "DAVIS").is_dir() and not (out / "trainval").exists():
        (out / "DAVIS").rename(out / "trainval")  # the layout train.py reads: <davis-root>/trainval/
        print(f"DAVIS 2017 trainval is in {out / 'trainval'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
