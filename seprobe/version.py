"""The installed package's version: a module at the bottom, so that any layer can name it without importing the
package's top (``seprobe/__init__.py`` imports the API)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seprobe")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
