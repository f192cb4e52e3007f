"""Finds and loads libquantkit.

Search order (the first file that loads wins):
  1. the path in the environment variable QUANTKIT_LIBRARY;
  2. a libquantkit shared object bundled next to these package files (wheels);
  3. <repo>/.build/release/libquantkit.so, found by walking up from this package directory
     (a source checkout after `swift build -c release --product quantkit`);
  4. the system loader (LD_LIBRARY_PATH, ldconfig paths).
If none loads, LibraryNotFoundError lists every place tried and why it failed.
"""

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ENV_VAR = "QUANTKIT_LIBRARY"

if sys.platform == "darwin":
    _FILE_NAME = "libquantkit.dylib"
elif sys.platform == "win32":
    _FILE_NAME = "quantkit.dll"
else:
    _FILE_NAME = "libquantkit.so"


class LibraryNotFoundError(OSError):
    """No loadable libquantkit was found."""


def _candidates():
    """(description, path or name) pairs in search order."""
    env = os.environ.get(ENV_VAR)
    if env:
        yield f"${ENV_VAR}", env
    here = Path(__file__).resolve().parent
    yield "bundled with the package", str(here / _FILE_NAME)
    for parent in here.parents:
        for config in ("release", "debug"):
            build = parent / ".build" / config / _FILE_NAME
            if build.exists():
                yield f"source checkout ({config})", str(build)
    found = ctypes.util.find_library("quantkit")
    yield "system loader", found or _FILE_NAME


def load():
    """Loads the library; returns (ctypes.CDLL, path it came from)."""
    tried = []
    env_set = bool(os.environ.get(ENV_VAR))
    for source, path in _candidates():
        looks_like_path = os.sep in path
        if looks_like_path and not os.path.exists(path):
            tried.append(f"  {source}: {path} (no such file)")
            if source == f"${ENV_VAR}":
                break  # an explicit choice that fails must not silently fall back to another copy
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            tried.append(f"  {source}: {path} ({exc})")
            if source == f"${ENV_VAR}" and env_set:
                break
    raise LibraryNotFoundError(
        "could not load libquantkit; tried:\n" + "\n".join(tried) +
        f"\nBuild it with `swift build -c release --product quantkit` in the repository, "
        f"or set {ENV_VAR} to the path of {_FILE_NAME}.")
