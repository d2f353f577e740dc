"""Inference: a trained directory as a `TextMatcher`, the offline state cache, online scoring
of cached pairs, serving modules and their export, and the OpenVINO backend.

Layers, lowest first (each imports only those before it): `serving` (tf.Modules of a
classifier), `openvino` (the converted ``encode`` signature), `state_cache` (texts -> the
cached states on disk), `matcher` (a trained directory as one object), then the jobs of the
commands: `scoring` (``virt_tf.score``), `exporting` (``virt_tf.export``).

The choices below are the values of command-line flags: they live here, apart from the
modules that use them, so that a command's ``--help`` and flag checks import no TensorFlow.
"""

from virt_tf.errors import MissingDependencyError

OPENVINO_INSTALL = ("pip install '.[openvino]' in the repository (the package extra), or "
                    "pip install openvino")

BACKENDS = ("tensorflow", "openvino")  # what runs the offline encoder
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")  # OpenVINO's names of CPU inference precisions
EXPORT_FORMATS = ("saved_model", "openvino")  # openvino: also the encode signature as an IR


def require_openvino():
    """The ``openvino`` module, or `MissingDependencyError` naming the package extra that
    installs it. Imports no TensorFlow: a command checks this before it loads the library."""
    try:
        import openvino  # pylint: disable=import-outside-toplevel  (optional dependency)
    except ImportError as e:
        raise MissingDependencyError(
            f"the OpenVINO backend needs the optional package openvino, which is not "
            f"installed ({e}); install it with: {OPENVINO_INSTALL}") from e
    return openvino
