"""The conversion patterns of `rdu-convert-linalg`, one module per source dialect family:
`linalg` (generic and named structured ops), `tensor_ops` (reshapes, slices, concat,
pad, insert_slice), `tm_tensor` (scan, scatter, sort); `payload` builds kernel payloads,
`common` holds what they share."""
