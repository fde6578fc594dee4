// RUN: rdu-opt %s --split-input-file --verify-diagnostics | filecheck %s

// The verifiers of rdu.index, rdu.yield, rdu.load, rdu.store, rdu.view, rdu.concat and
// rdu.pad, and the newer rules of rdu.kernel and rdu.section, one broken rule per chunk:
// each message names the op and what to change.

func.func @index_dim_outside_domain(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    %i = rdu.index 1 : index
    rdu.yield %in : f32
  }) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: rdu.index 1: the enclosing kernel's domain has 1 loops, so dim must be in [0, 1); index an existing loop

// -----

func.func @kernel_yields_too_many(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    rdu.yield %in, %o : f32, f32
  }) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: rdu.yield of kernel 'k0': yields 2 values for 1 results; yield one scalar of each result's element type

// -----

func.func @kernel_yields_wrong_type(%x: tensor<4xf32>, %c: i32) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e, %c) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%in: f32, %o: f32, %k: i32):
    rdu.yield %k : i32
  }) : (tensor<4xf32>, tensor<4xf32>, i32) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: rdu.yield of kernel 'k0': value 0 is i32 but result 0 needs f32; yield one scalar of each result's element type

// -----

func.func @section_yields_nothing(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = rdu.load %x from <hbm> : tensor<4xf32> -> !rdu.stream<4xf32>
    rdu.yield
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: rdu.yield of section 's0': yields 0 values for 1 results; yield one tensor per section result (rdu.store the streams first)

// -----

func.func @load_changes_shape(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = rdu.load %x from <hbm> : tensor<4xf32> -> !rdu.stream<8xf32>
    %s = rdu.store %a to <hbm> : !rdu.stream<8xf32> -> tensor<4xf32>
    rdu.yield %s : tensor<4xf32>
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: rdu.load: tensor<4xf32> -> !rdu.stream<8xf32>: a transfer keeps shape and element type; make the result the same shape and element type as the source

// -----

func.func @store_changes_type(%x: tensor<4xf32>) -> tensor<4xf16> {
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = rdu.load %x from <hbm> : tensor<4xf32> -> !rdu.stream<4xf32>
    %s = rdu.store %a to <hbm> : !rdu.stream<4xf32> -> tensor<4xf16>
    rdu.yield %s : tensor<4xf16>
  }) : () -> tensor<4xf16>
  func.return %0 : tensor<4xf16>
}

// CHECK: Operation does not verify: rdu.store: !rdu.stream<4xf32> -> tensor<4xf16>: a transfer keeps shape and element type; make the result the same shape and element type as the source

// -----

func.func @reshape_changes_count(%x: tensor<4x8xf32>) -> tensor<30xf32> {
  %r = rdu.view %x <reshape> : tensor<4x8xf32> -> tensor<30xf32>
  func.return %r : tensor<30xf32>
}

// CHECK: Operation does not verify: rdu.view <reshape>: tensor<4x8xf32> has 32 elements but tensor<30xf32> has 30; a reshape keeps the element count

// -----

func.func @reshape_with_window(%x: tensor<4x8xf32>) -> tensor<32xf32> {
  %r = rdu.view %x <reshape> offsets [0, 0] : tensor<4x8xf32> -> tensor<32xf32>
  func.return %r : tensor<32xf32>
}

// CHECK: Operation does not verify: rdu.view <reshape>: a reshape has no offsets/sizes/strides; use <slice> for a window

// -----

func.func @view_converts(%x: tensor<4x8xf32>) -> tensor<32xf16> {
  %r = rdu.view %x <reshape> : tensor<4x8xf32> -> tensor<32xf16>
  func.return %r : tensor<32xf16>
}

// CHECK: Operation does not verify: rdu.view <reshape>: source element type f32 differs from the result's f16; a layout op does not convert (use a map kernel)

// -----

func.func @view_of_scalar(%x: f32) -> tensor<1xf32> {
  %r = rdu.view %x <reshape> : f32 -> tensor<1xf32>
  func.return %r : tensor<1xf32>
}

// CHECK: Operation does not verify: rdu.view <reshape>: the source is f32, not a tensor or stream; pass a shaped value

// -----

func.func @slice_without_strides(%x: tensor<4x8xf32>) -> tensor<4x4xf32> {
  %r = rdu.view %x <slice> offsets [0, 0] sizes [4, 4] : tensor<4x8xf32> -> tensor<4x4xf32>
  func.return %r : tensor<4x4xf32>
}

// CHECK: Operation does not verify: rdu.view <slice>: a slice needs offsets, sizes and strides (one per source dim)

// -----

func.func @slice_rank(%x: tensor<4x8xf32>) -> tensor<4xf32> {
  %r = rdu.view %x <slice> offsets [0] sizes [4] strides [1] : tensor<4x8xf32> -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: rdu.view <slice>: 1 offsets, 1 sizes, 1 strides for a source of rank 2; give one of each per source dim

// -----

func.func @slice_zero_stride(%x: tensor<4x8xf32>) -> tensor<4x4xf32> {
  %r = rdu.view %x <slice> offsets [0, 0] sizes [4, 4] strides [1, 0] : tensor<4x8xf32> -> tensor<4x4xf32>
  func.return %r : tensor<4x4xf32>
}

// CHECK: Operation does not verify: rdu.view <slice>: dim 1 has offset 0, size 4, stride 0; offsets must be >= 0, sizes and strides >= 1

// -----

func.func @slice_out_of_bounds(%x: tensor<4x8xf32>) -> tensor<4x4xf32> {
  %r = rdu.view %x <slice> offsets [0, 2] sizes [4, 4] strides [1, 2] : tensor<4x8xf32> -> tensor<4x4xf32>
  func.return %r : tensor<4x4xf32>
}

// CHECK: Operation does not verify: rdu.view <slice>: dim 1 reads up to index 8 of a source dim of 8; the window must stay inside the source

// -----

func.func @slice_result_shape(%x: tensor<4x8xf32>) -> tensor<4x3xf32> {
  %r = rdu.view %x <slice> offsets [0, 0] sizes [4, 4] strides [1, 1] : tensor<4x8xf32> -> tensor<4x3xf32>
  func.return %r : tensor<4x3xf32>
}

// CHECK: Operation does not verify: rdu.view <slice>: result shape [4, 3] is not the slice sizes [4, 4] (less unit dims); make the result type match the sizes

// -----

func.func @concat_dim(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %c = rdu.concat %x dim 2 : (tensor<4x8xf32>) -> tensor<4x8xf32>
  func.return %c : tensor<4x8xf32>
}

// CHECK: Operation does not verify: rdu.concat dim 2: dim must be in [0, 2) for a result of rank 2

// -----

func.func @concat_other_dim(%x: tensor<4x8xf32>, %y: tensor<4x7xf32>) -> tensor<8x8xf32> {
  %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<4x7xf32>) -> tensor<8x8xf32>
  func.return %c : tensor<8x8xf32>
}

// CHECK: Operation does not verify: rdu.concat dim 0: source 1 tensor<4x7xf32> does not fit result tensor<8x8xf32>; sources agree with the result on every dim but the concatenated one

// -----

func.func @concat_sum(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> tensor<9x8xf32> {
  %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<9x8xf32>
  func.return %c : tensor<9x8xf32>
}

// CHECK: Operation does not verify: rdu.concat dim 0: sources sum to 8 along dim 0 but the result has 9

// -----

func.func @pad_rank(%x: tensor<4x8xf32>, %z: f32) -> tensor<6x8xf32> {
  %p = rdu.pad %x low [1] high [1] value %z : tensor<4x8xf32>, f32 -> tensor<6x8xf32>
  func.return %p : tensor<6x8xf32>
}

// CHECK: Operation does not verify: rdu.pad: 1 low and 1 high paddings for a source of rank 2 and a result of rank 2; give one of each per dim

// -----

func.func @pad_negative(%x: tensor<4x8xf32>, %z: f32) -> tensor<3x8xf32> {
  %p = rdu.pad %x low [-1, 0] high [0, 0] value %z : tensor<4x8xf32>, f32 -> tensor<3x8xf32>
  func.return %p : tensor<3x8xf32>
}

// CHECK: Operation does not verify: rdu.pad: paddings low [-1, 0] high [0, 0] must be >= 0 (a crop is a <slice> view)

// -----

func.func @pad_result_shape(%x: tensor<4x8xf32>, %z: f32) -> tensor<6x8xf32> {
  %p = rdu.pad %x low [1, 1] high [1, 1] value %z : tensor<4x8xf32>, f32 -> tensor<6x8xf32>
  func.return %p : tensor<6x8xf32>
}

// CHECK: Operation does not verify: rdu.pad: result shape [6, 8] should be source + low + high = [6, 10]

// -----

func.func @pad_value_type(%x: tensor<4x8xf32>, %z: i32) -> tensor<6x10xf32> {
  %p = rdu.pad %x low [1, 1] high [1, 1] value %z : tensor<4x8xf32>, i32 -> tensor<6x10xf32>
  func.return %p : tensor<6x10xf32>
}

// CHECK: Operation does not verify: rdu.pad: padding value is i32 but the source's elements are f32; pad with a scalar of the element type

// -----

func.func @view_mode_string(%x: tensor<4x8xf32>) -> tensor<32xf32> {
  %r = "rdu.view"(%x) <{mode = "reshape"}> : (tensor<4x8xf32>) -> tensor<32xf32>
  func.return %r : tensor<32xf32>
}

// CHECK: Operation does not verify: "reshape" should be of base attribute rdu.view_mode

// -----

func.func @kernel_empty_loop(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 0>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    rdu.yield %in : f32
  }) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': domain [0] has a loop of fewer than 1 iteration; every loop bound is >= 1 (an empty tensor has no kernel)

// -----

func.func @kernel_tile_too_big(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", tile = array<i64: 8>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    rdu.yield %in : f32
  }) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': tile [8] is not within [1, domain] for domain [4]; re-run rdu-tile

// -----

func.func @kernel_map_rank(%x: tensor<4x8xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    rdu.yield %in : f32
  }) : (tensor<4x8xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': operand 0 (tensor<4x8xf32>) has rank 2 but its indexing map (d0) -> (d0) gives 1 indices; give one index per dim

// -----

func.func @scan_dim_outside(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<f32>) {
  %e = tensor.empty() : tensor<4xf32>
  %acc = tensor.empty() : tensor<f32>
  %r:2 = "rdu.kernel"(%x, %e, %acc) <{kind = #rdu.pattern<scan>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>, affine_map<(d0) -> ()>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", scan_dim = 1 : i64, scan_inclusive = 1 : i64, operandSegmentSizes = array<i32: 1, 2, 0>}> ({
  ^bb0(%in: f32, %o: f32, %prev: f32):
    %s = arith.addf %prev, %in : f32
    rdu.yield %s, %s : f32, f32
  }) : (tensor<4xf32>, tensor<4xf32>, tensor<f32>) -> (tensor<4xf32>, tensor<f32>)
  func.return %r#0, %r#1 : tensor<4xf32>, tensor<f32>
}

// CHECK: Operation does not verify: kernel 'k0': scan_dim 1 is not a loop of its 1-d domain

// -----

func.func @section_grid(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4>}> ({
    %a = rdu.load %x from <hbm> : tensor<4xf32> -> !rdu.stream<4xf32>
    %s = rdu.store %a to <hbm> : !rdu.stream<4xf32> -> tensor<4xf32>
    rdu.yield %s : tensor<4xf32>
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0': grid [4] must be [rows, cols], both >= 1; re-run rdu-place
