"""hello_build: distil an image folder and a teacher into a ``.hello`` bundle (the HeLlO method).

The front door: ``from hello_build import build, BuildOptions, evaluate``; each name in ``__all__``
is imported from its module on first use.
"""

from hello_format.face import lazy_names

_HOMES = {
    "build": "pipeline",
    "BuildOptions": "options",
    "evaluate": "evaluation",
    "BuildError": "errors",
}

__all__ = list(_HOMES)

__getattr__, __dir__ = lazy_names(__name__, _HOMES)
