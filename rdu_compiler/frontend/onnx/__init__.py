"""The ONNX frontend: an ONNX model to linalg-on-tensors MLIR text through torch-mlir
(:func:`rdu_compiler.frontend.onnx.importer.import_onnx`); :mod:`.prepare` lists the rewrites
before torch-mlir, :mod:`.lower` runs torch-mlir in the lowering child process."""
