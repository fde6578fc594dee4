// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny},rdu-allocate{fabric=tiny}' | filecheck %s
// RUN: %chunk(1) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny},rdu-allocate{fabric=tiny}' | filecheck %s --check-prefix=TIER

// rdu-allocate on the tiny fabric (8 PCUs with 16 lanes, 8 PMUs of 16384 B, 64 KiB HBM).
// Each kernel gets one PCU, then the section's spare PCUs in proportion to the cycles it
// needs: compute (FLOPs / FLOP-per-cycle) or I/O (bytes / 64 B per cycle), the larger
// (payload arithmetic ops x domain points; casts, indexing and tensor.extract are free),
// capped at ceil(parallel points / 16 lanes); one #rdu.buffer<tile_bytes, pmus, 16384, 2>
// per input/init operand with pmus = ceil(2 * tile_bytes / 16384) for capacity, then the
// section's spare PMUs spread over the buffers in proportion to their traffic (bytes read,
// plus the result bytes for an init), largest remainder first, for bandwidth.

#id = affine_map<(i, j) -> (i, j)>

// Cycles on one PCU, the larger of compute and I/O (one 64 B/cycle link per PCU):
// compute k1 = 3 x 1024 FLOPs / 192 = 16, k2 = 1024 / 192 = 5.3; I/O: each reads 4096 B
// and writes 4096 B = 8192 / 64 = 128 cycles. Both are I/O-bound at 128 cycles, so the
// 6 spare PCUs split 3 and 3: pcus 4 and 4 (caps 1024 / 16 = 64 do not bind).
// Buffers: 16 x 64 x 4 = 4096 B tiles, double-buffered in one PMU; 4 buffers need 4 PMUs,
// the 4 spare PMUs go one to each (every buffer moves 4096 B): 2 PMUs each.

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
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k1_map"{{.*}}, pcus = 4 : i64, buffers = [#rdu.buffer<4096, 2, 16384, 2>, #rdu.buffer<4096, 2, 16384, 2>]}>
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k2_map"{{.*}}, pcus = 4 : i64, buffers = [#rdu.buffer<4096, 2, 16384, 2>, #rdu.buffer<4096, 2, 16384, 2>]}>

// The matmul has 2 x 2 x 16 x 256 = 16384 FLOPs but only 2 x 16 = 32 parallel points:
// at most ceil(32 / 16) = 2 PCUs; the neg is capped at 2 as well, so 4 PCUs stay idle.
// Buffers: A 2 x 256 x 4 = 2048 B (1 PMU), B 256 x 16 x 4 = 16384 B (2 PMUs, as two
// tiles of 16384 B fill two PMUs), C 2 x 16 x 4 = 128 B (1 PMU); the neg's two 1 PMU.
// Spare: 8 - 6 = 2 PMUs by traffic A 2048, B 16384, C 128 + 128, neg 128, 128
// (total 18944): B's share 2 x 16384 / 18944 = 1.73 -> 1, and the leftover PMU goes to
// the largest remainder (B's 0.73): B spans 2 + 2 = 4 PMUs.

func.func @capped(%a: tensor<2x256xf32>, %b: tensor<256x16xf32>, %c: tensor<2x16xf32>) -> tensor<2x16xf32> {
  %m = linalg.matmul ins(%a, %b : tensor<2x256xf32>, tensor<256x16xf32>) outs(%c : tensor<2x16xf32>) -> tensor<2x16xf32>
  %e = tensor.empty() : tensor<2x16xf32>
  %r = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%m : tensor<2x16xf32>) outs(%e : tensor<2x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<2x16xf32>
  return %r : tensor<2x16xf32>
}

// CHECK-LABEL: func.func @capped
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k0_matmul"{{.*}}, pcus = 2 : i64, buffers = [#rdu.buffer<2048, 1, 16384, 2>, #rdu.buffer<16384, 4, 16384, 2>, #rdu.buffer<128, 1, 16384, 2>]}>
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k2_map"{{.*}}, pcus = 2 : i64, buffers = [#rdu.buffer<128, 1, 16384, 2>, #rdu.buffer<128, 1, 16384, 2>]}>

// A gather has no arithmetic (0 FLOPs) but moves bytes (32 B of indices, 128 B out):
// its I/O cycles earn it spare PCUs up to its cap, ceil(4 x 8 / 16) = 2. Its table, read
// through a capture, gets a tier too. Spare PMUs 8 - 2 = 6 by traffic: indices 32 B, output 128 B:
// 6 x 32 / 160 = 1.2 -> 1, 6 x 128 / 160 = 4.8 -> 4, leftover to the output: 2 and 6.

func.func @gather(%ids: tensor<4xi64>, %table: tensor<100x8xf32>) -> tensor<4x8xf32> {
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

// CHECK-LABEL: func.func @gather
// CHECK:         "rdu.kernel"{{.*}}sym_name = "k1_gather"{{.*}}, pcus = 2 : i64, buffers = [#rdu.buffer<32, 2, 16384, 2>, #rdu.buffer<128, 6, 16384, 2>], capture_tiers = [#rdu.tier<hbm>]}>

// -----

// Tiers. Each tensor is 96 x 128 x 4 = 49152 B (48 KiB); HBM holds 64 KiB. Each neg
// needs 6 PMUs (tile 96 x 64, two 24576 B buffers of 3 PMUs), so each is a section; the
// 2 spare PMUs widen each buffer to 4.
//   %x  (argument, placed first) lives in s0:         HBM 48 KiB
//   %t0 (written by s0, read by s1) lives in s0..s1:  48 + 48 > 64 KiB during s0: DDR
//   %t1 (written by s1, returned) lives in s1..end:   %x is dead by then: HBM
// Peaks: HBM 49152 B, DDR 49152 B.

#id = affine_map<(i, j) -> (i, j)>

func.func @spill(%x: tensor<96x128xf32>) -> tensor<96x128xf32> {
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

// TIER:       builtin.module attributes {rdu.fabric = "tiny", rdu.hbm_peak_bytes = 49152 : i64, rdu.ddr_peak_bytes = 49152 : i64}
// TIER-LABEL: func.func @spill
// TIER:         %[[S0:.*]] = "rdu.section"() <{sym_name = "s0"
// TIER-NEXT:      rdu.load %x from <hbm>
// TIER-NEXT:      %t0 = "rdu.kernel"{{.*}}, pcus = 8 : i64, buffers = [#rdu.buffer<24576, 4, 16384, 2>, #rdu.buffer<24576, 4, 16384, 2>]}>
// TIER:           rdu.store %t0 to <ddr>
// TIER:         "rdu.section"() <{sym_name = "s1"
// TIER-NEXT:      rdu.load %[[S0]] from <ddr>
// TIER:           rdu.store %t1 to <hbm>
