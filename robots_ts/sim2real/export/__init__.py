"""Export: a run's policy as one self-contained file (ONNX or TorchScript) and a manifest a robot
runtime can trust.

- :mod:`.graphs`: the teacher and student policies as torch graphs that take raw observation groups
  and hold their normalization (recurrent state an explicit input and output);
- :mod:`.exporter`: ``robots-ts export``: writes the file, checks it against the policy, writes the
  manifest;
- :mod:`.manifest`: the manifest's typed schema, :func:`load_manifest` (torch-free);
- :mod:`.describe`: the manifest's robot, observation, camera, point-cloud and action sections, read
  from the code the env runs;
- :mod:`.onnx_policy`: the exported ONNX policy under onnxruntime and numpy alone, as a Policy.

Importing this package loads neither torch nor onnxruntime.
"""
from robots_ts.sim2real.export.manifest import FORMAT, Manifest, ManifestError, load_manifest

__all__ = ["FORMAT", "Manifest", "ManifestError", "export_run", "load_manifest"]


def __getattr__(name: str):
    if name == "export_run":
        from robots_ts.sim2real.export.exporter import export_run

        return export_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
