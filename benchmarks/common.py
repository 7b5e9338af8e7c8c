"""What the benchmarks share: where the real bike-sharing data is read from."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """`--data`: $RETRAIN_DATA, else $RETRAIN_TEST_DATA, else `../shared/data` beside the checkout."""
    default = os.environ.get("RETRAIN_TEST_DATA") or str(
        REPO.parent / "shared" / "data" / "bike_sharing_hourly.csv"
    )
    parser.add_argument("--data", default=os.environ.get("RETRAIN_DATA", default))
