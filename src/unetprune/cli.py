"""`unetprune <command>`: argument parsing only; each command lives in
``unetprune.commands.<name>`` with ``register(subparsers)`` that sets ``func``.

Errors that a user can fix (bad config key, missing checkpoint, corrupt image, ...)
are raised as ``UserFacingError`` subclasses and printed as one line, exit status 2.
Operating-system errors a user can fix too (permission denied, disk full, a path that is a
folder, a read-only file system, ...) are printed the same way, naming the file.

A command declared in the entry-point group :data:`COMMAND_ENTRY_POINTS` (``name = module``)
is parsed by a parser holding only its own module: no model family (and so no torch) is
loaded before the command runs, so a command can refuse a bad input (a 10-hour media file)
in a few MB.  Every other command, ``--help`` and an unknown name go through the full parser
(:func:`build_parser`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from . import __version__

# The core's commands; order = order in `unetprune --help`, then every model family's own
# (ModelFamily.command_modules, families in name order).
COMMAND_MODULES = [
    "config",
    "demo",
    "data",
    "train",
    "translate",
    "prune",
    "sweep",
    "evaluate",
    "export",
    "report",
    "track",
]


def command_modules() -> list[str]:
    """Every module that registers a ``unetprune`` command: the core's, then each family's."""
    from .family import all_families

    mods = [f"unetprune.commands.{name}" for name in COMMAND_MODULES]
    for family in all_families():
        mods += [m for m in family.command_modules() if m not in mods]
    return mods


# errors a user can fix that are not UserFacingError: (module, class); a module that was never
# imported cannot have raised its error, so it is not imported to catch it (it may import torch)
_USER_ERROR_CLASSES = (
    ("unetprune.errors", "ConfigError"),
    ("unetprune.errors", "UserFacingError"),
    ("unetprune.data.aligned", "DataError"),
    ("unetprune.checkpoint", "CheckpointError"),
)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception classes printed as one line: those of the modules imported so far."""
    from . import errors  # noqa: F401

    mods = (sys.modules.get(m) for m, _ in _USER_ERROR_CLASSES)
    return tuple(getattr(mod, cls) for mod, (_, cls) in zip(mods, _USER_ERROR_CLASSES) if mod is not None)


# errno -> what to tell the user (the OS's own text is added)
_OS_HINTS = {
    errno.EACCES: "check its permissions",
    errno.EPERM: "check its permissions",
    errno.ENOSPC: "the disk is full; free some space and rerun",
    errno.EDQUOT: "the disk quota is exhausted; free some space and rerun",
    errno.EISDIR: "it is a folder, a file was expected",
    errno.ENOTDIR: "a part of the path is a file, a folder was expected",
    errno.EROFS: "the file system is read-only",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EEXIST: "it already exists",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.ELOOP: "too many symbolic links",
    errno.EFBIG: "the file is too large",
}
_PATH_LOCALS = ("path", "dest", "dst", "target", "out", "output", "tmp", "f")


def _os_error_file(e: OSError) -> str | None:
    """The file an OSError is about: its ``filename``, else the innermost frame's path-like local
    (a failing ``write()`` carries no file name; the frame that was writing knows it)."""
    if getattr(e, "filename2", None) is not None:  # os.replace(tmp, dest): dest is the file meant
        return os.fsdecode(e.filename2)
    if e.filename is not None:
        return os.fsdecode(e.filename) if not isinstance(e.filename, int) else None
    tb, found = e.__traceback__, None
    while tb is not None:
        loc = tb.tb_frame.f_locals
        for name in _PATH_LOCALS:
            v = loc.get(name)
            if isinstance(v, (str, os.PathLike)) and str(v):
                found = os.fspath(v)
                break
            if hasattr(v, "name") and isinstance(getattr(v, "name", None), str):
                found = v.name
                break
        tb = tb.tb_next
    return found


def os_error_message(e: OSError) -> str | None:
    """One line for an OSError a user can fix, or None for the others (a bug: let it raise)."""
    if isinstance(e, FileNotFoundError):
        return str(e) if e.filename is None else f"{os.fsdecode(e.filename)}: no such file or folder"
    if e.errno not in _OS_HINTS:
        return None
    where = _os_error_file(e)
    text = e.strerror or os.strerror(e.errno)
    where = f"{where}: " if where else ""
    return f"{where}{text} ({_OS_HINTS[e.errno]})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetprune",
        description="Structured pruning of U-Net GAN generators (Cut Inner Layers, arXiv "
        "2206.14658): data, training, pruning, sensitivity, evaluation, reports.",
    )
    parser.add_argument("--version", action="version", version=f"unetprune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        importlib.import_module(module).register(sub)
    return parser


COMMAND_ENTRY_POINTS = "unetprune.commands"


def declared_command_module(name: str) -> str | None:
    """The module that the entry-point group :data:`COMMAND_ENTRY_POINTS` declares for the
    command ``name``, or None."""
    import importlib.metadata

    eps = importlib.metadata.entry_points(group=COMMAND_ENTRY_POINTS)
    return next((ep.value.strip() for ep in eps if ep.name == name), None)


def command_parser(argv: list[str]) -> argparse.ArgumentParser | None:
    """A parser holding only the module declared for ``argv``'s command (see the module doc),
    or None when the command is not declared (or its module does not register it)."""
    name = argv[0] if argv and not argv[0].startswith("-") else None
    module = declared_command_module(name) if name else None
    if module is None:
        return None
    parser = argparse.ArgumentParser(prog="unetprune")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    importlib.import_module(module).register(sub)
    return parser if name in sub.choices else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = command_parser(argv) or build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except user_errors() as e:
        msg = " ".join(str(e).split()) if "\n" in str(e) and "config error" not in str(e) else str(e)
        print(f"unetprune {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        msg = os_error_message(e)
        if msg is None:
            raise
        print(f"unetprune {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"unetprune {args.command}: interrupted; rerun with the same command "
            f"(training resumes with --resume)",
            file=sys.stderr,
        )
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
