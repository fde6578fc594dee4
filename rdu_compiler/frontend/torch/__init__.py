"""The PyTorch frontend: ``torch.export`` -> torch-mlir -> linalg-on-tensors MLIR text.

:mod:`.export` (``import_torch``), :mod:`.model_file` (``load_model_file``),
:mod:`.decompositions` (run before torch-mlir), :mod:`.checks` (refusals before lowering),
:mod:`.fold` (constant folding), :mod:`.lower` (torch-mlir's pipelines in the lowering child),
:mod:`.diagnostics` (model lines and error messages), :mod:`.meta_device`.
"""
