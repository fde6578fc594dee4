// RUN: rdu-opt %s --split-input-file --verify-diagnostics | filecheck %s

// The rdu verifiers against the fabric the module names (rdu.fabric), and the buffer
// rules that need no fabric. One chunk each; the message names what does not fit.

// Depth 0: a buffer that keeps no tile.

func.func @depth_zero() attributes {b = #rdu.buffer<64, 1, 16384, 0>} {
  func.return
}

// CHECK: #rdu.buffer<64, 1, 16384, 0>: tile_bytes and pmus must be >= 0, pmu_capacity and depth >= 1; re-run rdu-allocate

// -----

// 64 B tiles on 0 PMUs (only an empty tile, an init the PCU fills, may have none).

func.func @no_pmus() attributes {b = #rdu.buffer<64, 0, 16384, 2>} {
  func.return
}

// CHECK: #rdu.buffer<64, 0, 16384, 2>: a buffer of 64 B tiles on 0 PMUs; re-run rdu-allocate

// -----

// tiny's PMUs hold 16 KiB: a buffer claiming 1 GiB PMUs is refused.

builtin.module attributes {rdu.fabric = "tiny"} {
  func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    %e = tensor.empty() : tensor<4xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, buffers = [#rdu.buffer<16, 1, 1073741824, 2>, #rdu.buffer<16, 1, 1073741824, 2>], operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
      %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
      "rdu.yield"(%s) : (tensor<4xf32>) -> ()
    }) : () -> tensor<4xf32>
    func.return %0 : tensor<4xf32>
  }
}

// CHECK: Operation does not verify: section 's0' on fabric 'tiny': kernel 'k0' buffer 0 claims PMUs of 1073741824 B but the fabric's PMUs hold 16384 B; re-run rdu-allocate

// -----

// tiny has 8 PCUs: a section cannot claim 1000.

builtin.module attributes {rdu.fabric = "tiny"} {
  func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    %e = tensor.empty() : tensor<4xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 1000 : i64, pmus_available = 8 : i64}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 100 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
      %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
      "rdu.yield"(%s) : (tensor<4xf32>) -> ()
    }) : () -> tensor<4xf32>
    func.return %0 : tensor<4xf32>
  }
}

// CHECK: Operation does not verify: section 's0' on fabric 'tiny': pcus_available = 1000 but the fabric has 8; re-run rdu-section

// -----

// tiny's grid is 4 x 4, not 8 x 8.

builtin.module attributes {rdu.fabric = "tiny"} {
  func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    %e = tensor.empty() : tensor<4xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 8, 8>}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, pcu_sites = array<i64: 6, 6>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
      %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
      "rdu.yield"(%s) : (tensor<4xf32>) -> ()
    }) : () -> tensor<4xf32>
    func.return %0 : tensor<4xf32>
  }
}

// CHECK: Operation does not verify: section 's0' on fabric 'tiny': grid [8, 8] but the fabric's grid is 4 x 4; re-run rdu-place

// -----

// No grid on the section: sites are checked against the fabric's 4 x 4 grid.

builtin.module attributes {rdu.fabric = "tiny"} {
  func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    %e = tensor.empty() : tensor<4xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, pcu_sites = array<i64: 0, 8>, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
      %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
      "rdu.yield"(%s) : (tensor<4xf32>) -> ()
    }) : () -> tensor<4xf32>
    func.return %0 : tensor<4xf32>
  }
}

// CHECK: Operation does not verify: section 's0': kernel 'k0' placed a PCU on (0, 8), off the 4 x 4 grid

// -----

// A module naming a fabric that does not exist cannot be checked: refused.

builtin.module attributes {rdu.fabric = "no_such_fabric"} {
  func.func @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    %e = tensor.empty() : tensor<4xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4xf32>) -> !rdu.stream<4xf32>
    %r = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", pcus = 1 : i64, operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%in: f32, %o: f32):
      "rdu.yield"(%in) : (f32) -> ()
    }) : (!rdu.stream<4xf32>, tensor<4xf32>) -> !rdu.stream<4xf32>
      %s = "rdu.store"(%r) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4xf32>) -> tensor<4xf32>
      "rdu.yield"(%s) : (tensor<4xf32>) -> ()
    }) : () -> tensor<4xf32>
    func.return %0 : tensor<4xf32>
  }
}

// CHECK: Operation does not verify: the module names fabric 'no_such_fabric' (rdu.fabric), which cannot be loaded, so its capacities cannot be checked: unknown fabric 'no_such_fabric'
