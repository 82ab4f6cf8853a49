"""The names the benchmark layouts accept (DAVIS editions and splits, YouTube-VOS splits).

Kept apart from the readers (:mod:`dataset.benchmarks`), which import torch: command-line parsers
offer these as choices and must answer ``--help`` without loading it (docs/cli.md).
"""

DAVIS_YEARS = ("2016", "2017")
DAVIS_SPLITS = ("val", "test-dev", "train", "trainval")
YOUTUBE_SPLITS = ("valid", "test")
