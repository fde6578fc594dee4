// RUN: %chunk(0) | rdu-opt -p 'rdu-place{fabric=tiny}' | filecheck %s
// RUN: %chunk(0) | rdu-opt -p 'rdu-place{fabric=tiny strategy=row-major}' | filecheck %s --check-prefix=ROWMAJOR
// RUN: %chunk(0) | rdu-opt -p 'rdu-place{fabric=tiny strategy=random seed=3}' > %t.a
// RUN: %chunk(0) | rdu-opt -p 'rdu-place{fabric=tiny strategy=random seed=3}' > %t.b
// RUN: cmp %t.a %t.b
// RUN: %chunk(0) | not rdu-opt -p 'rdu-place{fabric=tiny strategy=spiral}' 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: %chunk(0) | rdu-opt -p 'rdu-place{fabric=tiny routing=dimension-order}' | filecheck %s --check-prefix=DIMORDER
// RUN: %chunk(0) | not rdu-opt -p 'rdu-place{fabric=tiny routing=adaptive}' 2>&1 | filecheck %s --check-prefix=BADROUTING
// RUN: %chunk(1) | not rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny},rdu-place{fabric=tiny}' 2>&1 | filecheck %s --check-prefix=UNALLOCATED

// rdu-place puts every PCU of a kernel and every PMU of its buffers on a (row, col) site
// of the checkerboard ((row + col) even: PCU) and picks the AGCU of each load/store net.
// The input is the allocated program of
//   k1 = max(x*x + x, x) (6 PCUs, buffers of 2 + 2 PMUs), k2 = k1 - x (2 PCUs, 2 + 1 + 1 PMUs)
// on the 4 x 4 `tiny` grid with AGCUs at (2, -1) and (2, 4). The load of x feeds both
// kernels (a multicast flow, 2 nets, spread over both AGCUs); k2's result is stored.
// Sites are flattened (row, col) pairs: pcu_sites = array<i64: 2, 0, 0, 2, ...> is
// (2, 0), (0, 2), ...; pmu_sites lists buffer 0's PMUs, then buffer 1's, ...

builtin.module attributes {rdu.fabric = "tiny", rdu.hbm_peak_bytes = 8192 : i64, rdu.ddr_peak_bytes = 0 : i64} {
  func.func @chain(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
    %e = tensor.empty() : tensor<16x64xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, reason = "end of program"}> ({
      %1 = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
      %y = "rdu.kernel"(%1, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1_map", operandSegmentSizes = array<i32: 1, 1, 0>, tile = array<i64: 16, 64>, pcus = 6 : i64, buffers = [#rdu.buffer<4096, 2, 16384, 2>, #rdu.buffer<4096, 2, 16384, 2>]}> ({
      ^bb0(%in: f32, %out: f32):
        %sq = arith.mulf %in, %in : f32
        %s = arith.addf %sq, %in : f32
        %m = arith.maximumf %s, %in : f32
        "rdu.yield"(%m) : (f32) -> ()
      }) : (!rdu.stream<16x64xf32>, tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
      %z = "rdu.kernel"(%y, %1, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_map", operandSegmentSizes = array<i32: 2, 1, 0>, tile = array<i64: 16, 64>, pcus = 2 : i64, buffers = [#rdu.buffer<4096, 2, 16384, 2>, #rdu.buffer<4096, 1, 16384, 2>, #rdu.buffer<4096, 1, 16384, 2>]}> ({
      ^bb0(%in_1: f32, %in2: f32, %out_1: f32):
        %n = arith.subf %in_1, %in2 : f32
        "rdu.yield"(%n) : (f32) -> ()
      }) : (!rdu.stream<16x64xf32>, !rdu.stream<16x64xf32>, tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
      %2 = "rdu.store"(%z) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<16x64xf32>) -> tensor<16x64xf32>
      "rdu.yield"(%2) : (tensor<16x64xf32>) -> ()
    }) : () -> tensor<16x64xf32>
    func.return %0 : tensor<16x64xf32>
  }
}

// The default strategy (anneal, seed 0): k1 around the left, k2's PCUs on the right next
// to the store's AGCU (2, 4); the section records the grid it was placed on and the
// routing its link loads assume (balanced: each on-chip net XY or YX).
// CHECK:       "rdu.section"() <{sym_name = "s0", {{.*}}, grid = array<i64: 4, 4>, routing = #rdu.routing<balanced>}>
// CHECK-NEXT:    rdu.load %x from <hbm> agcu [2, -1, 2, 4]
// CHECK:         sym_name = "k1_map"{{.*}}pcu_sites = array<i64: 3, 3, 0, 0, 3, 1, 0, 2, 2, 0, 1, 1>, pmu_sites = array<i64: 3, 0, 1, 0, 2, 1, 0, 1>}>
// CHECK:         sym_name = "k2_map"{{.*}}pcu_sites = array<i64: 2, 2, 1, 3>, pmu_sites = array<i64: 3, 2, 0, 3, 2, 3, 1, 2>}>
// CHECK:         rdu.store %z to <hbm> agcu [2, 4]

// row-major: kernels in program order take the next PCU and PMU sites row by row.
// ROWMAJOR:      sym_name = "k1_map"{{.*}}pcu_sites = array<i64: 0, 0, 0, 2, 1, 1, 1, 3, 2, 0, 2, 2>, pmu_sites = array<i64: 0, 1, 0, 3, 1, 0, 1, 2>}>
// ROWMAJOR:      sym_name = "k2_map"{{.*}}pcu_sites = array<i64: 3, 1, 3, 3>, pmu_sites = array<i64: 2, 1, 2, 3, 3, 0, 3, 2>}>

// UNKNOWN: rdu-place: unknown placement strategy 'spiral'; choose one of anneal, row-major, random

// routing=dimension-order routes every net XY, as the mesh does by itself; the sites do
// not change (routing is chosen after placement).
// DIMORDER:    "rdu.section"() <{sym_name = "s0", {{.*}}, grid = array<i64: 4, 4>, routing = #rdu.routing<"dimension-order">}>
// DIMORDER:    sym_name = "k1_map"{{.*}}pcu_sites = array<i64: 3, 3, 0, 0, 3, 1, 0, 2, 2, 0, 1, 1>, pmu_sites = array<i64: 3, 0, 1, 0, 2, 1, 0, 1>}>

// BADROUTING: rdu-place: unknown routing 'adaptive'; choose one of balanced, dimension-order

// -----

// Without rdu-allocate a kernel has no units to place.

func.func @unallocated(%x: tensor<4x4xf32>) -> tensor<4x4xf32> {
  %e = tensor.empty() : tensor<4x4xf32>
  %t = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x4xf32>) outs(%e : tensor<4x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<4x4xf32>
  return %t : tensor<4x4xf32>
}

// UNALLOCATED: rdu-place: section 's0': kernel 'k1_map' has no units; run rdu-allocate first
