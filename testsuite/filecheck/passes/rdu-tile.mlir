// RUN: %chunk(0) | rdu-opt --allow-unregistered-dialect -p 'rdu-convert-linalg,rdu-tile{fabric=tiny}' | filecheck %s
// RUN: %chunk(0) | rdu-opt --allow-unregistered-dialect -p 'rdu-convert-linalg,rdu-tile{fabric=tiny max_buffer_pmus=1}' | filecheck %s --check-prefix=ONE-PMU
// RUN: %chunk(0) | rdu-opt --allow-unregistered-dialect -p 'rdu-convert-linalg,rdu-tile{fabric=sn40l}' | filecheck %s --check-prefix=SN40L
// RUN: %chunk(1) | not rdu-opt --allow-unregistered-dialect -p 'rdu-convert-linalg,rdu-tile{fabric=tiny}' 2>&1 | filecheck %s --check-prefix=TOO-LONG
// RUN: %chunk(2) | not rdu-opt -p 'rdu-convert-linalg,rdu-hash-lookup,rdu-tile{fabric=tiny resident_index=true}' 2>&1 | filecheck %s --check-prefix=INDEX-TOO-BIG
// RUN: %chunk(2) | rdu-opt -p 'rdu-convert-linalg,rdu-hash-lookup,rdu-tile{fabric=tiny}' | filecheck %s --check-prefix=INDEX-PROBED

// rdu-tile on the tiny fabric: 8 PMUs of 16384 B. A kernel with n operand buffers (scalars
// have none) may give each buffer min(max_buffer_pmus, 8 // n) PMUs; a buffer holds two
// tiles (double buffering), so one tile may take pmus * 16384 / 2 B. The pass halves the
// largest tileable loop of the worst operand until every tile fits.

// CHECK: builtin.module attributes {rdu.fabric = "tiny"}
// SN40L: builtin.module attributes {rdu.fabric = "sn40l"}

// Two buffers of 16 * 64 * 4 = 4096 B; a tile may take 4 * 16384 / 2 = 32768 B: the
// whole domain fits.

func.func @small_map(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x64xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = arith.maximumf %in, %zero : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  return %r : tensor<16x64xf32>
}

// CHECK-LABEL:   func.func @small_map
// CHECK:           "rdu.kernel"{{.*}} domain = array<i64: 16, 64>, {{.*}} tile = array<i64: 16, 64>}>
// ONE-PMU-LABEL: func.func @small_map
// ONE-PMU:         "rdu.kernel"{{.*}} tile = array<i64: 16, 64>}>

// Domain (M, N, K) = (32, 16, 512); three buffers, so 2 PMUs each and 16384 B per tile.
//   A = 32x512x4 = 65536 B, B = 512x16x4 = 32768 B, C = 32x16x4 = 2048 B
//   A worst: halve K (512 > 32) -> 256: A = 32768, B = 16384
//   A worst: halve K -> 128:              A = 16384, B = 8192, C = 2048: all fit.
// With max_buffer_pmus=1 a tile may take 8192 B: one more halving, K = 64.
// On sn40l (524288 B PMUs) the whole domain fits.

func.func @big_matmul(%a: tensor<32x512xf32>, %b: tensor<512x16xf32>, %c: tensor<32x16xf32>) -> tensor<32x16xf32> {
  %m = linalg.matmul ins(%a, %b : tensor<32x512xf32>, tensor<512x16xf32>) outs(%c : tensor<32x16xf32>) -> tensor<32x16xf32>
  return %m : tensor<32x16xf32>
}

// CHECK-LABEL:   func.func @big_matmul
// CHECK:           "rdu.kernel"{{.*}}<{kind = #rdu.pattern<matmul>, domain = array<i64: 32, 16, 512>, {{.*}} tile = array<i64: 32, 16, 128>}>
// ONE-PMU-LABEL: func.func @big_matmul
// ONE-PMU:         "rdu.kernel"{{.*}} tile = array<i64: 32, 16, 64>}>
// SN40L-LABEL:   func.func @big_matmul
// SN40L:           "rdu.kernel"{{.*}} tile = array<i64: 32, 16, 512>}>

// A fill has one buffer (its scalar input has none), so it may use all 8 PMUs:
// 65536 B per tile. The output is 128x256x4 = 131072 B: halve the larger loop once.
// With max_buffer_pmus=1 (8192 B = 2048 elements per tile): 128x128 -> 64x128 ->
// 64x64 -> 32x64 (ties go to the first loop).

func.func @big_fill() -> tensor<128x256xf32> {
  %cst = arith.constant 1.0 : f32
  %e = tensor.empty() : tensor<128x256xf32>
  %f = linalg.fill ins(%cst : f32) outs(%e : tensor<128x256xf32>) -> tensor<128x256xf32>
  return %f : tensor<128x256xf32>
}

// CHECK-LABEL:   func.func @big_fill
// CHECK:           "rdu.kernel"{{.*}}<{kind = #rdu.pattern<fill>, {{.*}} tile = array<i64: 128, 128>}>
// ONE-PMU-LABEL: func.func @big_fill
// ONE-PMU:         "rdu.kernel"{{.*}} tile = array<i64: 32, 64>}>

// A scan keeps its scan dimension (1) whole: only the rows are tiled. Three buffers,
// 16384 B per tile = 4 rows of 1024 x 4 B (2 rows with max_buffer_pmus=1).

func.func @scan(%x: tensor<64x1024xf32>) -> tensor<64x1024xf32> {
  %e = tensor.empty() : tensor<64x1024xf32>
  %acc = tensor.empty() : tensor<64xf32>
  %r:2 = "tm_tensor.scan"(%x, %e, %acc) <{dimension = 1 : i64, inclusive = true}> ({
  ^bb0(%l: f32, %r: f32):
    %s = arith.addf %l, %r : f32
    "tm_tensor.yield"(%s) : (f32) -> ()
  }) : (tensor<64x1024xf32>, tensor<64x1024xf32>, tensor<64xf32>) -> (tensor<64x1024xf32>, tensor<64xf32>)
  return %r#0 : tensor<64x1024xf32>
}

// CHECK-LABEL:   func.func @scan
// CHECK:           "rdu.kernel"{{.*}}<{kind = #rdu.pattern<scan>, {{.*}} tile = array<i64: 4, 1024>}>
// ONE-PMU-LABEL: func.func @scan
// ONE-PMU:         "rdu.kernel"{{.*}} tile = array<i64: 2, 1024>}>
// SN40L-LABEL:   func.func @scan
// SN40L:           "rdu.kernel"{{.*}} tile = array<i64: 64, 1024>}>

// -----

// One row of the scan is 8192 x 4 = 32768 B, over the 16384 B a tile may take, and the
// scan dimension cannot be tiled.

func.func @scan_row_too_long(%x: tensor<4x8192xf32>) -> tensor<4x8192xf32> {
  %e = tensor.empty() : tensor<4x8192xf32>
  %acc = tensor.empty() : tensor<4xf32>
  %r:2 = "tm_tensor.scan"(%x, %e, %acc) <{dimension = 1 : i64, inclusive = true}> ({
  ^bb0(%l: f32, %r: f32):
    %s = arith.addf %l, %r : f32
    "tm_tensor.yield"(%s) : (f32) -> ()
  }) : (tensor<4x8192xf32>, tensor<4x8192xf32>, tensor<4xf32>) -> (tensor<4x8192xf32>, tensor<4xf32>)
  return %r#0 : tensor<4x8192xf32>
}

// TOO-LONG: rdu-tile: kernel 'k2_scan': operand 0 needs 32768 B per tile even at the smallest tile, over the 16384 B a buffer may hold; use a fabric with larger PMUs

// -----

// resident_index=true: a 256 KiB cuckoo index (4096 buckets x 64 B) must stay in the probe's
// PMUs across calls, but tiny's 8 PMUs over the probe's 3 buffers give one 2 x 16 KiB, halved for double
// buffering: refused with the sizes. Without the option the index stays a capture (HBM).

func.func @index_too_big(%ids: tensor<8xi64>, %index: tensor<4096x4x2xi64>) -> tensor<8xi64> {
  %e0 = tensor.empty() : tensor<8xi64>
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (0, 0, 0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"], library_call = "rdu_hash_find"} ins(%ids, %index : tensor<8xi64>, tensor<4096x4x2xi64>) outs(%e0 : tensor<8xi64>) {
  ^bb0(%a: i64, %x: i64, %o: i64):
    %s = arith.addi %a, %x : i64
    linalg.yield %s : i64
  } -> tensor<8xi64>
  return %r : tensor<8xi64>
}

// INDEX-TOO-BIG: rdu-tile: kernel 'k1_hash_probe': resident_index: its cuckoo index is 262144 B, 524288 B double-buffered, over the 32768 B of the 2 PMUs a buffer may take (2 x 16384 B); compile without resident_index
// INDEX-PROBED:  "rdu.kernel"(%ids, %e0, %index)
// INDEX-PROBED-SAME: operandSegmentSizes = array<i32: 1, 1, 1>
