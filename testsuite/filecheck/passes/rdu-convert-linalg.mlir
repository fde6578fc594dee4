// RUN: %chunk(0) | rdu-opt --allow-unregistered-dialect -p rdu-convert-linalg | filecheck %s
// RUN: %chunk(1) | not rdu-opt -p rdu-convert-linalg 2>&1 | filecheck %s --check-prefix=NO-LOWERING
// RUN: %chunk(2) | not rdu-opt -p rdu-convert-linalg 2>&1 | filecheck %s --check-prefix=PAD-BY-INDEX

// rdu-convert-linalg: structured ops become rdu.kernel (with an iteration domain, one
// indexing map per input/init, iterator types, a payload ending in rdu.yield and a
// pattern kind); layout ops become rdu.view / rdu.concat / rdu.pad. Kernels are named
// k<position of the op in its function>_<kind>.

#id = affine_map<(i, j) -> (i, j)>

// An elementwise generic is a map. The outer constant is cloned into the payload.

func.func @relu(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x64xf32>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %zero : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  return %r : tensor<16x64xf32>
}

// CHECK-LABEL: func.func @relu(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
// CHECK-NEXT:    %zero = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %e = tensor.empty() : tensor<16x64xf32>
// CHECK-NEXT:    %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_map", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
// CHECK-NEXT:    ^bb0(%in: f32, %out: f32):
// CHECK-NEXT:      %zero_1 = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:      %m = arith.maximumf %in, %zero_1 : f32
// CHECK-NEXT:      rdu.yield %m : f32
// CHECK-NEXT:    }) : (tensor<16x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
// CHECK-NEXT:    func.return %r : tensor<16x64xf32>

// A reduction that is not a multiply-accumulate is a reduce.

func.func @rowsum(%x: tensor<16x64xf32>, %init: tensor<16xf32>) -> tensor<16xf32> {
  %r = linalg.generic {indexing_maps = [#id, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<16x64xf32>) outs(%init : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  return %r : tensor<16xf32>
}

// CHECK-LABEL: func.func @rowsum
// CHECK-NEXT:    %r = "rdu.kernel"(%x, %init) <{kind = #rdu.pattern<reduce>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k0_reduce", operandSegmentSizes = array<i32: 1, 1, 0>}>

// linalg.matmul: linalg's default maps, domain (M, N, K), K a reduction.

func.func @matmul(%a: tensor<16x64xf32>, %b: tensor<64x32xf32>, %c: tensor<16x32xf32>) -> tensor<16x32xf32> {
  %m = linalg.matmul ins(%a, %b : tensor<16x64xf32>, tensor<64x32xf32>) outs(%c : tensor<16x32xf32>) -> tensor<16x32xf32>
  return %m : tensor<16x32xf32>
}

// CHECK-LABEL: func.func @matmul
// CHECK-NEXT:    %m = "rdu.kernel"(%a, %b, %c) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 32, 64>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k0_matmul", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
// CHECK-NEXT:    ^bb0(%0: f32, %1: f32, %2: f32):
// CHECK-NEXT:      %3 = arith.mulf %0, %1 : f32
// CHECK-NEXT:      %4 = arith.addf %3, %2 : f32
// CHECK-NEXT:      rdu.yield %4 : f32

// linalg.batch_matmul (not defined by xDSL, so in generic form): domain (B, M, N, K).

func.func @batch_matmul(%a: tensor<2x8x16xf32>, %b: tensor<2x16x4xf32>, %c: tensor<2x8x4xf32>) -> tensor<2x8x4xf32> {
  %m = "linalg.batch_matmul"(%a, %b, %c) <{operandSegmentSizes = array<i32: 2, 1>}> ({
  ^bb0(%x: f32, %y: f32, %z: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %z, %p : f32
    linalg.yield %s : f32
  }) : (tensor<2x8x16xf32>, tensor<2x16x4xf32>, tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
  return %m : tensor<2x8x4xf32>
}

// CHECK-LABEL: func.func @batch_matmul
// CHECK-NEXT:    %m = "rdu.kernel"(%a, %b, %c) <{kind = #rdu.pattern<matmul>, domain = array<i64: 2, 8, 4, 16>, indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d1, d3)>, affine_map<(d0, d1, d2, d3) -> (d0, d3, d2)>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k0_matmul", operandSegmentSizes = array<i32: 2, 1, 0>}>

// A generic multiply-accumulate through extf casts (bf16 x bf16 -> f32) is a matmul too.
// An outer value that is not a constant (%s) becomes a capture: an extra operand and
// a trailing payload block argument.

func.func @mixed_precision(%a: tensor<8x16xbf16>, %b: tensor<16x4xbf16>, %c: tensor<8x4xf32>, %s: f32) -> tensor<8x4xf32> {
  %m = linalg.generic {indexing_maps = [affine_map<(i, j, k) -> (i, k)>, affine_map<(i, j, k) -> (k, j)>, affine_map<(i, j, k) -> (i, j)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : tensor<8x16xbf16>, tensor<16x4xbf16>) outs(%c : tensor<8x4xf32>) {
  ^bb0(%x: bf16, %y: bf16, %acc: f32):
    %xf = arith.extf %x : bf16 to f32
    %yf = arith.extf %y : bf16 to f32
    %p = arith.mulf %xf, %yf : f32
    %r = arith.addf %acc, %p : f32
    linalg.yield %r : f32
  } -> tensor<8x4xf32>
  %e = tensor.empty() : tensor<8x4xf32>
  %scaled = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%m : tensor<8x4xf32>) outs(%e : tensor<8x4xf32>) {
  ^bb0(%x: f32, %o: f32):
    %r = arith.mulf %x, %s : f32
    linalg.yield %r : f32
  } -> tensor<8x4xf32>
  return %scaled : tensor<8x4xf32>
}

// CHECK-LABEL: func.func @mixed_precision
// CHECK-NEXT:    %m = "rdu.kernel"(%a, %b, %c) <{kind = #rdu.pattern<matmul>, domain = array<i64: 8, 4, 16>,
// CHECK:         %scaled = "rdu.kernel"(%m, %e, %s) <{kind = #rdu.pattern<map>, {{.*}} operandSegmentSizes = array<i32: 1, 1, 1>}> ({
// CHECK-NEXT:    ^bb0(%x_1: f32, %o: f32, %0: f32):
// CHECK-NEXT:      %r_1 = arith.mulf %x_1, %0 : f32
// CHECK-NEXT:      rdu.yield %r_1 : f32
// CHECK-NEXT:    }) : (tensor<8x4xf32>, tensor<8x4xf32>, f32) -> tensor<8x4xf32>

// linalg.fill: a scalar input with an empty map. linalg.transpose: a permuted input
// map (out[i, j] = x[j, i]).

func.func @fill_transpose(%x: tensor<16x64xf32>) -> tensor<64x16xf32> {
  %one = arith.constant 1.0 : f32
  %e = tensor.empty() : tensor<64x16xf32>
  %f = linalg.fill ins(%one : f32) outs(%e : tensor<64x16xf32>) -> tensor<64x16xf32>
  %t = linalg.transpose ins(%x : tensor<16x64xf32>) outs(%f : tensor<64x16xf32>) permutation = [1, 0]
  return %t : tensor<64x16xf32>
}

// CHECK-LABEL: func.func @fill_transpose
// CHECK:         %f = "rdu.kernel"(%one, %e) <{kind = #rdu.pattern<fill>, domain = array<i64: 64, 16>, indexing_maps = [affine_map<(d0, d1) -> ()>, affine_map<(d0, d1) -> (d0, d1)>],
// CHECK:         %t = "rdu.kernel"(%x, %f) <{kind = #rdu.pattern<transpose>, domain = array<i64: 64, 16>, indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>],

// linalg.broadcast: the input map drops the added dimension; a copy is a map.

func.func @broadcast(%x: tensor<16xf32>) -> tensor<4x16xf32> {
  %e = tensor.empty() : tensor<4x16xf32>
  %b = linalg.broadcast ins(%x : tensor<16xf32>) outs(%e : tensor<4x16xf32>) dimensions = [0]
  return %b : tensor<4x16xf32>
}

// CHECK-LABEL: func.func @broadcast
// CHECK:         %b = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4, 16>, indexing_maps = [affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>],

// An embedding lookup: tensor.extract of a table at computed indices is a gather; the
// table is a capture and linalg.index becomes rdu.index.

func.func @embedding(%ids: tensor<4xi64>, %table: tensor<100x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i)>, #id], iterator_types = ["parallel", "parallel"]} ins(%ids : tensor<4xi64>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%id: i64, %out: f32):
    %row = arith.index_cast %id : i64 to index
    %col = linalg.index 1 : index
    %v = tensor.extract %table[%row, %col] : tensor<100x8xf32>
    linalg.yield %v : f32
  } -> tensor<4x8xf32>
  return %r : tensor<4x8xf32>
}

// CHECK-LABEL: func.func @embedding
// CHECK:         %r = "rdu.kernel"(%ids, %e, %table) <{kind = #rdu.pattern<gather>, domain = array<i64: 4, 8>, {{.*}} operandSegmentSizes = array<i32: 1, 1, 1>}> ({
// CHECK-NEXT:    ^bb0(%id: i64, %out: f32, %0: tensor<100x8xf32>):
// CHECK-NEXT:      %row = arith.index_cast %id : i64 to index
// CHECK-NEXT:      %col = rdu.index 1 : index
// CHECK-NEXT:      %v = tensor.extract %0[%row, %col] : tensor<100x8xf32>
// CHECK-NEXT:      rdu.yield %v : f32

// tm_tensor.scan (cumsum along dim 1): a scan kernel with inits (output, accumulator);
// the payload gets (input, output, previous) and yields the combined value twice.

func.func @cumsum(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %acc = tensor.empty() : tensor<4xf32>
  %r:2 = "tm_tensor.scan"(%x, %e, %acc) <{dimension = 1 : i64, inclusive = true}> ({
  ^bb0(%prev: f32, %in: f32):
    %s = arith.addf %prev, %in : f32
    "tm_tensor.yield"(%s) : (f32) -> ()
  }) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (tensor<4x8xf32>, tensor<4xf32>)
  return %r#0 : tensor<4x8xf32>
}

// CHECK-LABEL: func.func @cumsum
// CHECK:         %r, %r_1 = "rdu.kernel"(%x, %e, %acc) <{kind = #rdu.pattern<scan>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_scan", scan_dim = 1 : i64, scan_inclusive = 1 : i64, operandSegmentSizes = array<i32: 1, 2, 0>}> ({
// CHECK-NEXT:    ^bb0(%0: f32, %1: f32, %2: f32):
// CHECK-NEXT:      %s = arith.addf %2, %0 : f32
// CHECK-NEXT:      rdu.yield %s, %s : f32, f32
// CHECK-NEXT:    }) : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (tensor<4x8xf32>, tensor<4xf32>)
// CHECK-NEXT:    func.return %r : tensor<4x8xf32>

// expand_shape / collapse_shape are reshape views, extract_slice a slice view.

func.func @views(%x: tensor<32xf32>, %y: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<32xf32>, tensor<2x4xf32>) {
  %a = tensor.expand_shape %x [[0, 1]] output_shape [4, 8] : tensor<32xf32> into tensor<4x8xf32>
  %b = tensor.collapse_shape %y [[0, 1]] : tensor<4x8xf32> into tensor<32xf32>
  %c = tensor.extract_slice %y[1, 0] [2, 4] [1, 2] : tensor<4x8xf32> to tensor<2x4xf32>
  return %a, %b, %c : tensor<4x8xf32>, tensor<32xf32>, tensor<2x4xf32>
}

// CHECK-LABEL: func.func @views
// CHECK-NEXT:    %a = rdu.view %x <reshape> : tensor<32xf32> -> tensor<4x8xf32>
// CHECK-NEXT:    %b = rdu.view %y <reshape> : tensor<4x8xf32> -> tensor<32xf32>
// CHECK-NEXT:    %c = rdu.view %y <slice> offsets [1, 0] sizes [2, 4] strides [1, 2] : tensor<4x8xf32> -> tensor<2x4xf32>

func.func @concat_pad(%x: tensor<4x8xf32>, %y: tensor<2x8xf32>) -> (tensor<6x8xf32>, tensor<6x10xf32>) {
  %c = tensor.concat dim(0) %x, %y : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<6x8xf32>
  %zero = arith.constant 0.0 : f32
  %p = tensor.pad %x low[1, 0] high[1, 2] {
  ^bb0(%i: index, %j: index):
    tensor.yield %zero : f32
  } : tensor<4x8xf32> to tensor<6x10xf32>
  return %c, %p : tensor<6x8xf32>, tensor<6x10xf32>
}

// CHECK-LABEL: func.func @concat_pad
// CHECK-NEXT:    %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<6x8xf32>
// CHECK-NEXT:    %zero = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %p = rdu.pad %x low [1, 0] high [1, 2] value %zero : tensor<4x8xf32>, f32 -> tensor<6x10xf32>


// tm_tensor.scatter is a scatter kernel over the updates (O(updates), not O(destination x
// updates)): the index columns, then the updates; the destination's map gives the slice
// offsets (the update slice is aligned with its trailing dims) and `scatter_dims` the dims
// each index column adds to. A slice scatter (index_add, EmbeddingBag's segment sum):

func.func @index_add(%rows: tensor<6x1x3xf32>, %seg: tensor<6x1xi64>, %dest: tensor<4x3xf32>) -> tensor<4x3xf32> {
  %r = "tm_tensor.scatter"(%rows, %seg, %dest) <{dimension_map = array<i64: 0>, operandSegmentSizes = array<i32: 2, 1>, unique_indices = false}> ({
  ^bb0(%u: f32, %o: f32):
    %s = arith.addf %o, %u : f32
    "tm_tensor.yield"(%s) : (f32) -> ()
  }) : (tensor<6x1x3xf32>, tensor<6x1xi64>, tensor<4x3xf32>) -> tensor<4x3xf32>
  return %r : tensor<4x3xf32>
}

// CHECK-LABEL: func.func @index_add
// CHECK-NEXT:    %r = "rdu.kernel"(%seg, %rows, %dest) <{kind = #rdu.pattern<scatter>, domain = array<i64: 6, 1, 3>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, 0)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d1, d2)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k0_scatter", scatter_dims = array<i64: 0>, operandSegmentSizes = array<i32: 2, 1, 0>}> ({
// CHECK-NEXT:    ^bb0(%0: i64, %1: f32, %2: f32):
// CHECK-NEXT:      %s = arith.addf %2, %1 : f32
// CHECK-NEXT:      rdu.yield %s : f32

// A point scatter (ScatterElements, index_put): one full index per scalar update, two
// index columns; a region that yields the update is a plain write (the last one wins).

func.func @point_write(%u: tensor<5xf32>, %idx: tensor<5x2xi64>, %dest: tensor<4x3xf32>) -> tensor<4x3xf32> {
  %r = "tm_tensor.scatter"(%u, %idx, %dest) <{dimension_map = array<i64: 0, 1>, operandSegmentSizes = array<i32: 2, 1>, unique_indices = false}> ({
  ^bb0(%a: f32, %b: f32):
    "tm_tensor.yield"(%a) : (f32) -> ()
  }) : (tensor<5xf32>, tensor<5x2xi64>, tensor<4x3xf32>) -> tensor<4x3xf32>
  return %r : tensor<4x3xf32>
}

// CHECK-LABEL: func.func @point_write
// CHECK-NEXT:    %r = "rdu.kernel"(%idx, %idx, %u, %dest) <{kind = #rdu.pattern<scatter>, domain = array<i64: 5>, indexing_maps = [affine_map<(d0) -> (d0, 0)>, affine_map<(d0) -> (d0, 1)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> (0, 0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0_scatter", scatter_dims = array<i64: 0, 1>, operandSegmentSizes = array<i32: 3, 1, 0>}> ({
// CHECK-NEXT:    ^bb0(%0: i64, %1: i64, %2: f32, %3: f32):
// CHECK-NEXT:      rdu.yield %2 : f32

// -----

// An op with no rdu lowering is refused by name.

func.func @tensor_add(%x: tensor<4xf32>) -> tensor<4xf32> {
  %s = arith.addf %x, %x : tensor<4xf32>
  return %s : tensor<4xf32>
}

// NO-LOWERING: rdu-convert-linalg: op 'arith.addf' (op #0 of @tensor_add) has no rdu lowering; supported:

// -----

// The address generator pads with one value; a value computed from the index is refused.

func.func @pad_by_index(%x: tensor<4xf32>) -> tensor<6xf32> {
  %p = tensor.pad %x low[1] high[1] {
  ^bb0(%i: index):
    %v = arith.index_cast %i : index to i64
    %f = arith.sitofp %v : i64 to f32
    tensor.yield %f : f32
  } : tensor<4xf32> to tensor<6xf32>
  return %p : tensor<6xf32>
}

// PAD-BY-INDEX: rdu-convert-linalg: tensor.pad whose padding value depends on the index is not supported
