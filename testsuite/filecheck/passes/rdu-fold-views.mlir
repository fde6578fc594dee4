// RUN: rdu-opt %s -p rdu-fold-views | filecheck %s

// rdu-fold-views replaces a kernel input that is a linear view (a slice, or a reshape
// that only splits dims or adds/drops unit dims) by the view's source, read through the
// view's index map composed with the kernel's. @heads is the attention head split of a
// decoder layer: x (8 x 64, tokens x hidden) reshaped to 1 x 8 x 4 x 16 (4 heads of 16),
// transposed to 1 x 4 x 8 x 16, and the second half of each head sliced (rotate-half).

func.func @heads(%x: tensor<8x64xf32>) -> tensor<1x4x8x8xf32> {
  %v = "rdu.view"(%x) <{mode = #rdu.view_mode<reshape>}> : (tensor<8x64xf32>) -> tensor<1x8x4x16xf32>
  %e = tensor.empty() : tensor<1x4x8x16xf32>
  %t = "rdu.kernel"(%v, %e) <{kind = #rdu.pattern<transpose>, domain = array<i64: 1, 4, 8, 16>, indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d2, d1, d3)>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_transpose", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %out: f32):
    "rdu.yield"(%in) : (f32) -> ()
  }) : (tensor<1x8x4x16xf32>, tensor<1x4x8x16xf32>) -> tensor<1x4x8x16xf32>
  %s = "rdu.view"(%t) <{mode = #rdu.view_mode<slice>, offsets = array<i64: 0, 0, 0, 8>, sizes = array<i64: 1, 4, 8, 8>, strides = array<i64: 1, 1, 1, 1>}> : (tensor<1x4x8x16xf32>) -> tensor<1x4x8x8xf32>
  %e2 = tensor.empty() : tensor<1x4x8x8xf32>
  %n = "rdu.kernel"(%s, %e2) <{kind = #rdu.pattern<map>, domain = array<i64: 1, 4, 8, 8>, indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k5_map", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in_1: f32, %out_1: f32):
    %m = arith.negf %in_1 : f32
    "rdu.yield"(%m) : (f32) -> ()
  }) : (tensor<1x4x8x8xf32>, tensor<1x4x8x8xf32>) -> tensor<1x4x8x8xf32>
  func.return %n : tensor<1x4x8x8xf32>
}

func.func @merge(%x: tensor<1x8x4x16xf32>) -> tensor<8x64xf32> {
  %c = "rdu.view"(%x) <{mode = #rdu.view_mode<reshape>}> : (tensor<1x8x4x16xf32>) -> tensor<8x64xf32>
  %e = tensor.empty() : tensor<8x64xf32>
  %n = "rdu.kernel"(%c, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 8, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_map", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %out: f32):
    %m = arith.negf %in : f32
    "rdu.yield"(%m) : (f32) -> ()
  }) : (tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<8x64xf32>
  func.return %n : tensor<8x64xf32>
}

// The transpose reads x directly: head h, token t, lane l is x[t, h * 16 + l]; it stays
// a transpose (a copy that reads every element once, through a linear pattern). The
// slice becomes an offset of the negation's read. Both views are gone.
// CHECK-LABEL: func.func @heads
// CHECK-NOT:     rdu.view
// CHECK:         %t = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<transpose>, {{.*}}indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d2, ((d1 * 16) + d3))>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>]{{.*}}sym_name = "k2_transpose"
// CHECK:         %n = "rdu.kernel"(%t, %e2) <{{.*}}indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, (d3 + 8))>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>]

// Merging heads back (1 x 8 x 4 x 16 -> 8 x 64) would need j floordiv 16 and j mod 16
// to address the source, and the negation's loop j also writes its result, so it cannot
// be split: the view stays.
// CHECK-LABEL: func.func @merge
// CHECK:         %c = rdu.view %x <reshape> : tensor<1x8x4x16xf32> -> tensor<8x64xf32>
// CHECK:         "rdu.kernel"(%c, %e)

// -----

func.func @merge_reduced(%x: tensor<8x4x16xf32>, %w: tensor<64x2xf32>) -> tensor<8x2xf32> {
  %c = "rdu.view"(%x) <{mode = #rdu.view_mode<reshape>}> : (tensor<8x4x16xf32>) -> tensor<8x64xf32>
  %e = tensor.empty() : tensor<8x2xf32>
  %m = "rdu.kernel"(%c, %w, %e) <{kind = #rdu.pattern<matmul>, domain = array<i64: 8, 2, 64>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k2_matmul", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
  ^bb0(%0: f32, %1: f32, %2: f32):
    %3 = arith.mulf %0, %1 : f32
    %4 = arith.addf %3, %2 : f32
    "rdu.yield"(%4) : (f32) -> ()
  }) : (tensor<8x64xf32>, tensor<64x2xf32>, tensor<8x2xf32>) -> tensor<8x2xf32>
  func.return %m : tensor<8x2xf32>
}


// A merging reshape read by a matmul's reduction loop (o_proj reading the merged heads):
// the loop k (64) splits into (4, 16), the matmul reads x directly as (m, h, l), and the
// weight through h * 16 + l. Same points, same order: the numbers do not change.
// CHECK-LABEL: func.func @merge_reduced
// CHECK-NOT:     rdu.view
// CHECK:         %m = "rdu.kernel"(%x, %w, %e) <{kind = #rdu.pattern<matmul>, domain = array<i64: 8, 2, 4, 16>, indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d0, d2, d3)>, affine_map<(d0, d1, d2, d3) -> (((d2 * 16) + d3), d1)>, affine_map<(d0, d1, d2, d3) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>, #linalg.iterator_type<reduction>]
