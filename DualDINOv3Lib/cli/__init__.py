"""The ``dualdinov3`` command: one sub-command per job, grouped by module.

- :mod:`.inference`: ``segment``, ``pca``
- :mod:`.data`: ``demo``, ``phantom``, ``prepare-pretraining``
- :mod:`.training`: ``finetune``, ``crossval``, ``predict``, ``evaluate``, ``evaluate-real``
- :mod:`.pretrain`: ``pretrain``
- :mod:`.models`: ``selfcheck``, ``info``, ``build-segmenter``

Every command ends the same way (:func:`main`): exit status 0 on success; on an expected failure (bad
input, a missing or unwritable file, a full disk, not enough memory) one ``dualdinov3: error: ...`` line and
status 2; on Ctrl-C one line and status 130. ``--debug`` shows the traceback instead. Importing this
package loads no torch: each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import DualDINOv3Error
from ..files import remove_created_folders
from ..version import __version__
from . import data, inference, models, pretrain, training

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
"""0: done; 1: done, but some inputs could not be used (listed); 2: error, nothing (more) written; 130: Ctrl-C."""

log = logging.getLogger("dualdinov3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualdinov3", description="Dual-DINOv3 PET/CT tumour segmentation")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (inference, data, training, pretrain, models):
        group.add_parsers(sub)
    return parser


def expected_failure(exc: BaseException) -> bool:
    """Failures a user can fix (ours, files, memory, the image library's and safetensors' errors), as opposed
    to a bug, whose traceback is shown."""
    if isinstance(exc, (DualDINOv3Error, OSError, MemoryError)):
        return True
    text = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    return "OutOfMemoryError" in text or "SafetensorError" in text or ("SimpleITK" in text or "ITK ERROR" in text)


def error_message(exc: BaseException) -> str:
    """What the user is told about an expected failure: the library's message, or the file and the cause."""
    if isinstance(exc, OSError) and not isinstance(exc, DualDINOv3Error) and exc.strerror:
        where = exc.filename if exc.filename is not None else "a file"
        return f"{where}: {exc.strerror}"
    if isinstance(exc, MemoryError) or "OutOfMemoryError" in type(exc).__name__:
        return "not enough memory for this job; use a smaller --batch-size, fewer slices, or a machine with more memory"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if len(lines) > 1 and not isinstance(exc, DualDINOv3Error) else str(exc)


def run_command(args: argparse.Namespace) -> int:
    """Runs the parsed command; commands with ``--threads`` run under that many CPU threads (default: the
    physical cores, shared among torchrun's processes on this machine; :mod:`DualDINOv3Lib.machine`)."""
    if not hasattr(args, "threads"):
        return args.func(args)
    from ..machine import default_threads
    from ..runtime import cpu_threads

    with cpu_threads(args.threads if args.threads is not None else default_threads()):
        return args.func(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    chatty = getattr(args, "log_info", False) and not getattr(args, "quiet", False)
    level = logging.INFO if args.verbose or chatty else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    try:
        return run_command(args)
    except KeyboardInterrupt:
        remove_created_folders()
        if args.debug:
            raise
        print("dualdinov3: interrupted; files written before were kept whole, none was half-written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        remove_created_folders()
        if args.debug or not expected_failure(exc):
            raise
        print(f"dualdinov3: error: {error_message(exc)}", file=sys.stderr)
        return EXIT_ERROR


def run_as_script(command: str) -> None:
    """``dualdinov3 COMMAND`` with this process's arguments, then exit (the ``Training/*.py`` wrappers)."""
    sys.exit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
