"""Download helpers for training data and weights (needs internet; nothing runs on import).

Usage::

    python scripts/download.py imagenet --out ~/.cache/torch/hub/checkpoints   # ResNet-50/18 ImageNet weights
    python scripts/download.py davis --out ../DAVIS/2017                         # DAVIS 2017 trainval 480p
    python scripts/download.py youtube | static | bl30k | stcn | pcvos           # prints manual steps

Files are streamed to a temporary name, verified (sha256 prefix from
torchvision's file names, or a full checksum where one is published) and only
then renamed into place. Items hosted behind a registration or a cloud-drive
page cannot be fetched by a script; for them the helper prints where to get
them and where to put them.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


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
    "stcn": (
        "STCN weights (stcn.pth, s012/s03 models): links in https://github.com/hkchengrex/STCN#pretrained-models. "
        "Use them with `train.py --weights stcn.pth` (the refinement module then starts fresh)."
    ),
    "pcvos": (
        "The official PCVOS checkpoint s03_pcvos_ytvos.pth: link in https://github.com/pkyong95/PCVOS (Google "
        "Drive). Our evaluation scripts and `train.py --weights` load it as is."
    ),
}

Opener = Callable[[str], object]


class DownloadError(RuntimeError):
    """A download failed or did not match its checksum."""


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


def _matches(path: Path, sha256: str | None) -> bool:
    if sha256 is None:
        return True
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(sha256.lower())


def main(argv: Sequence[str] | None = None, opener: Opener = urllib.request.urlopen) -> int:
    parser = argparse.ArgumentParser(description="Download PCVOS training data and weights.")
    parser.add_argument("what", choices=sorted([*AUTOMATIC, *MANUAL]))
    parser.add_argument("--out", help="target folder (default: torch hub cache for imagenet, ../DAVIS/2017 for davis)")
    args = parser.parse_args(argv)
    if args.what in MANUAL:
        print(MANUAL[args.what])
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
        return 1
    if args.what == "davis" and (out / "DAVIS").is_dir() and not (out / "trainval").exists():
        (out / "DAVIS").rename(out / "trainval")  # the layout train.py reads: <davis-root>/trainval/
        print(f"DAVIS 2017 trainval is in {out / 'trainval'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
