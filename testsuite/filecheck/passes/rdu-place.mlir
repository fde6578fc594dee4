// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny},rdu-allocate{fabric=tiny},rdu-place' | filecheck %s
// RUN: %chunk(1) | not rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny},rdu-place{fabric=tiny}' 2>&1 | filecheck %s --check-prefix=UNALLOCATED

// rdu-place gives each kernel of a section a contiguous run of PCU sites and of PMU
// sites (one per PMU of its buffers), in program order, starting at site 0 in every
// section: the runs are disjoint. The first RUN line gives rdu-place no fabric option:
// it takes the module's rdu.fabric = "tiny", written there by the earlier passes.

#id = affine_map<(i, j) -> (i, j)>

// rdu-allocate gives k1 6 PCUs and k2 2, and each of the four buffers 2 PMUs (see
// rdu-allocate.mlir): k1 takes PMU sites 0-3, k2 sites 4-7.

func.func @proportional(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %e = tensor.empty() : tensor<16x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %sq = arith.mulf %in, %in : f32
    %s = arith.addf %sq, %in : f32
    %m = arith.maximumf %s, %in : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  %z = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%y : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x64xf32>
  return %z : tensor<16x64xf32>
}

// CHECK-LABEL: func.func @proportional
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k1_map"{{.*}}, pcus = 6 : i64, {{.*}}, pcu_sites = array<i64: 0, 1, 2, 3, 4, 5>, pmu_sites = array<i64: 0, 1, 2, 3>}>
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k2_map"{{.*}}, pcus = 2 : i64, {{.*}}, pcu_sites = array<i64: 6, 7>, pmu_sites = array<i64: 4, 5, 6, 7>}>

// The fill's scalar input has no buffer, so it takes one PMU site (its output); the
// matmul's three buffers take 1 + 1 + 1 PMUs for capacity and the 4 spare PMUs by traffic
// (2 + 3 + 2, see rdu-allocate.mlir): sites 1-7; the matmul gets the 7 spare PCUs.

func.func @fill_matmul(%a: tensor<16x64xf32>, %b: tensor<64x32xf32>) -> tensor<16x32xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x32xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<16x32xf32>) -> tensor<16x32xf32>
  %m = linalg.matmul ins(%a, %b : tensor<16x64xf32>, tensor<64x32xf32>) outs(%c : tensor<16x32xf32>) -> tensor<16x32xf32>
  return %m : tensor<16x32xf32>
}

// CHECK-LABEL: func.func @fill_matmul
// CHECK:         "rdu.kernel"{{.*}}<{kind = #rdu.pattern<fill>{{.*}}, pcus = 1 : i64, buffers = [#rdu.buffer<0, 0, 16384, 2>, #rdu.buffer<2048, 1, 16384, 2>], pcu_sites = array<i64: 0>, pmu_sites = array<i64: 0>}>
// CHECK:         "rdu.kernel"{{.*}}<{kind = #rdu.pattern<matmul>{{.*}}, pcus = 7 : i64, {{.*}}, pcu_sites = array<i64: 1, 2, 3, 4, 5, 6, 7>, pmu_sites = array<i64: 1, 2, 3, 4, 5, 6, 7>}>

// Two sections (each neg needs 6 PMUs): both start at site 0.

func.func @two_sections(%x: tensor<96x128xf32>) -> tensor<96x128xf32> {
  %e = tensor.empty() : tensor<96x128xf32>
  %t0 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<96x128xf32>) outs(%e : tensor<96x128xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<96x128xf32>
  %t1 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t0 : tensor<96x128xf32>) outs(%e : tensor<96x128xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<96x128xf32>
  return %t1 : tensor<96x128xf32>
}

// CHECK-LABEL: func.func @two_sections
// CHECK:         "rdu.section"() <{sym_name = "s0"
// CHECK:           "rdu.kernel"{{.*}}pcu_sites = array<i64: 0, 1, 2, 3, 4, 5, 6, 7>, pmu_sites = array<i64: 0, 1, 2, 3, 4, 5, 6, 7>}>
// CHECK:         "rdu.section"() <{sym_name = "s1"
// CHECK:           "rdu.kernel"{{.*}}pcu_sites = array<i64: 0, 1, 2, 3, 4, 5, 6, 7>, pmu_sites = array<i64: 0, 1, 2, 3, 4, 5, 6, 7>}>

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

// UNALLOCATED: rdu-place: kernel 'k1_map' has no units; run rdu-allocate first
