"""Option types shared by the commands: a bad value is refused by argparse with a message naming it."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")
    return value


def thread_count(text: str) -> int:
    """``--threads``: 1 up to the CPUs this process may use (:func:`DualDINOv3Lib.machine.check_threads`)."""
    from ..errors import ConfigError
    from ..machine import check_threads

    try:
        return check_threads(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """The shared ``--threads N`` option; :func:`DualDINOv3Lib.cli.main` applies it around the whole command."""
    p.add_argument(
        "--threads",
        type=thread_count,
        default=None,
        metavar="N",
        help="CPU threads (default: the physical cores, shared among the processes torchrun starts on this machine)",
    )


def add_head_neck_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-outside-head-neck",
        action="store_true",
        help="keep predicted regions below the thorax, inside the skull, without FDG uptake (SUVmax < 1.5), or whose "
        "hot part is water (urine) or fat (brown fat) on CT; by default they are removed, as no head-and-neck GTV "
        "lies there",
    )
