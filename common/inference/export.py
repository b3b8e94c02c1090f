"""Writers for self-contained policy files: ONNX (runs with onnxruntime alone) and torch.export's .pt2.
torch is imported inside the writers: the CLI lists the formats without paying for it."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from ray_a3c.common.reporting.errors import A3CError
from ray_a3c.common.storage.atomic import atomic_write

if TYPE_CHECKING:
    import torch

EXPORT_FORMATS = ("onnx", "pt2")


def _atomic_target(path: str) -> AbstractContextManager[str]:
    """A temp file beside `path` (same suffix: torch's writers check it; mkstemp's permissions kept), renamed
    over it once complete."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise A3CError(f"cannot write '{path}': directory '{directory}' does not exist")
    return atomic_write(path, mode=None, prefix=".tmp-export-")


def export_onnx(
    graph: torch.nn.Module, inputs: tuple, path: str, input_names: list[str], output_names: list[str]
) -> str:
    """One ONNX file (weights embedded), a batch dimension of any size on every input and output."""
    try:
        import onnx  # noqa: F401  (the exporter needs it; a clear message beats its ImportError)
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise A3CError(f"ONNX export needs the export extra: pip install 'ray-a3c[export]' ({exc})") from None
    import torch  # here, not at the top: the CLI reads EXPORT_FORMATS from this module before Ray starts

    target = _atomic_target(path)
    batch = torch.export.Dim("batch", min=1)
    shapes = (tuple({0: batch} for _ in input_names),)  # the graph takes its inputs as one *args
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # it announces every torchvision op it cannot register
    try:
        with target as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph,
                inputs,
                dynamo=True,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=shapes,
                verbose=False,
            )
            program.save(tmp, external_data=False)
    finally:
        onnx_log.setLevel(level)
    return path


def export_pt2(
    graph: torch.nn.Module, inputs: tuple, path: str, input_names: list[str], output_names: list[str]
) -> str:
    """A torch.export ExportedProgram (`torch.export.load(path).module()(*inputs)`), batch size free."""
    import torch  # here, not at the top: as in export_onnx

    batch = torch.export.Dim("batch", min=1)
    shapes = (tuple({0: batch} for _ in input_names),)  # the graph takes its inputs as one *args
    program = torch.export.export(graph, inputs, dynamic_shapes=shapes, strict=False)
    with _atomic_target(path) as tmp:
        torch.export.save(program, tmp)
    return path
