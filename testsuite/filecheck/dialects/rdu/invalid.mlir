// RUN: rdu-opt %s --split-input-file --verify-diagnostics | filecheck %s

// Every rdu verifier rule, one chunk each: the message says what is wrong and where.

// A buffer of two 16 KiB tiles needs 32 KiB, but one tiny PMU holds 16 KiB.

func.func @buffer_overflows_its_pmus() attributes {b = #rdu.buffer<16384, 1, 16384, 2>} {
  func.return
}

// CHECK: buffer of 2 x 16384 B tiles needs 32768 B but its 1 PMU(s) hold 16384 B; give it more PMUs or smaller tiles

// -----

func.func @too_many_pcus(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 9 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0' uses 9 PCUs but the fabric has 8; cut it into more sections (rdu-section)

// -----

// Two buffers of 5 PMUs each: 10 PMUs in a section of 8.

func.func @too_many_pmus(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, buffers = [#rdu.buffer<16, 5, 16384, 2>, #rdu.buffer<16, 5, 16384, 2>], operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0' uses 10 PMUs but the fabric has 8; cut it into more sections or use smaller tiles (rdu-section, rdu-tile)

// -----
// Sites are (row, col) pairs: k0 and k1 both use PCU site (1, 1).

func.func @shared_pcu_site(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4, 4>}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 2 : i64, pcu_sites = array<i64: 0, 0, 1, 1>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %q = "rdu.kernel"(%r, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k1", pcus = 2 : i64, pcu_sites = array<i64: 1, 1, 2, 2>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%q) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0': kernels 'k0' and 'k1' both placed on site (1, 1)

// -----

// Row 4 of a 4 x 4 grid.

func.func @pmu_site_off_the_grid(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4, 4>}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pmu_sites = array<i64: 4, 1>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0': kernel 'k0' placed a PMU on (4, 1), off the 4 x 4 grid

// -----

// (0, 1) is a PMU site of the checkerboard: a PCU cannot sit there.

func.func @pcu_on_a_pmu_site(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4, 4>}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, pcu_sites = array<i64: 0, 1>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0': kernel 'k0' placed a PCU on (0, 1), a PMU site (checkerboard: (row + col) even is a PCU site, odd a PMU site)

// -----

// A load routed from (1, 2), inside the grid: AGCUs sit at column -1 or 4 only.

func.func @route_off_the_grid(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4, 4>}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>, agcu_sites = array<i64: 1, 2>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, pcu_sites = array<i64: 0, 0>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0': rdu.load routed through AGCU (1, 2), off the grid; AGCUs sit on the edges (col -1 or 4) of the grid's rows

// -----

// Sites come in (row, col) pairs.

func.func @odd_site_array(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, pcu_sites = array<i64: 0, 0, 2>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: section 's0': kernel 'k0' pcu_sites must be (row, col) pairs, got 3 values

// -----


func.func @stream_outside_section(%s: !rdu.stream<4xf32>) {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%s, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    "rdu.yield"(%in) : (f32) -> ()
  }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return
}

// CHECK: Operation does not verify: kernel 'k0': streams connect kernels of one section only; this kernel is outside any rdu.section

// -----

func.func @section_yields_a_stream(%x: tensor<4xf32>) {
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    "rdu.yield"(%a) : (!rdu.stream<4xf32>) -> ()
  }) : () -> !rdu.stream<4xf32>
  func.return
}

// CHECK: Operation does not verify: section 's0': results must be tensors (rdu.store), not streams

// -----

// One input and one init, but a single indexing map.

func.func @missing_indexing_map(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    "rdu.yield"(%in) : (f32) -> ()
  }) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': 1 indexing maps for 2 input/init operands

// -----

// One capture, but the payload has no block argument for it.

func.func @missing_capture_argument(%x: tensor<4xf32>, %t: tensor<10xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e, %t) <{kind = #rdu.pattern<gather>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%in: f32, %o: f32):
    "rdu.yield"(%in) : (f32) -> ()
  }) : (tensor<4xf32>, tensor<4xf32>, tensor<10xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': payload has 2 block arguments, expected 3

// -----

func.func @tile_rank_differs(%x: tensor<4xf32>) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", tile = array<i64: 2, 2>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%in: f32, %o: f32):
    "rdu.yield"(%in) : (f32) -> ()
  }) : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': tile has 2 sizes for domain rank 1

// -----

func.func @index_outside_kernel() -> index {
  %i = "rdu.index"() <{dim = 0 : i64}> : () -> index
  func.return %i : index
}

// CHECK: Operation does not verify: 'rdu.index' expects parent op 'rdu.kernel'

// -----

func.func @load_outside_section(%x: tensor<4xf32>) {
  %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
  func.return
}

// CHECK: Operation does not verify: 'rdu.load' expects parent op 'rdu.section'

// -----
// A section's routing is one of the routings rdu-place knows: an #rdu.routing, not a string
// (invalid_enums.mlir: an #rdu.routing naming no routing).

func.func @unknown_routing(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4, 4>, routing = "adaptive"}> ({
    %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %s = "rdu.store"(%a) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
    "rdu.yield"(%s) : (tensor<4xf32>) -> ()
  }) : () -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: Operation does not verify: "adaptive" should be of base attribute rdu.routing

// -----
// An accumulator filled from a capture needs a scalar of the init's element type.

func.func @fill_capture_type(%x: tensor<4x8xf32>, %c: i32) -> tensor<4xf32> {
  %e = tensor.empty() : tensor<4xf32>
  %r = "rdu.kernel"(%x, %e, %c) <{kind = #rdu.pattern<reduce>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k0", init_fills = array<i64: 0>, operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%in: f32, %acc: f32, %cap: i32):
    %s = arith.addf %in, %acc : f32
    "rdu.yield"(%s) : (f32) -> ()
  }) : (tensor<4x8xf32>, tensor<4xf32>, i32) -> tensor<4xf32>
  func.return %r : tensor<4xf32>
}

// CHECK: Operation does not verify: kernel 'k0': init 0 (tensor<4xf32>) is filled from capture 0 of type i32; the fill value must be a scalar of the element type
