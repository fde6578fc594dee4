// RUN: rdu-opt %s -p 'rdu-tier-rows{hbm_bytes=256 zipf=1.0 fabric=tiny}' | filecheck %s
// RUN: rdu-opt %s -p 'rdu-tier-rows{hbm_bytes=256 zipf=1.0 fabric=tiny},rdu-allocate{fabric=tiny}' | filecheck %s --check-prefix=ALLOC
// RUN: rdu-opt %s -p 'rdu-tier-rows{hbm_bytes=4096 zipf=1.0 fabric=tiny}' | filecheck %s --check-prefix=FITS
// RUN: echo '{"1": [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 8, 8, 8, 8]}' > %t.json
// RUN: rdu-opt %s -p 'rdu-tier-rows{hbm_bytes=256 profile="%t.json" fabric=tiny}' | filecheck %s --check-prefix=PROFILE
// RUN: not rdu-opt %s -p 'rdu-tier-rows{fabric=tiny zipf=1.0}' 2>&1 | filecheck %s --check-prefix=NOBUDGET
// RUN: not rdu-opt %s -p 'rdu-tier-rows{hbm_bytes=256 fabric=tiny}' 2>&1 | filecheck %s --check-prefix=NOPROFILE

// rdu-tier-rows on a sectioned row gather (the output of rdu-convert-linalg, rdu-tile and
// rdu-section on the tiny fabric): 8 IDs read rows of a 16 x 16 fp32 table (64 B a row).
// With 256 B of HBM for table rows, rows [0, 4) are hot (HBM) and [4, 16) cold (DDR).
// Under the stated Zipf(1) assumption (row r is the (r+1)-th most frequent) the hot share
// is H(4, 1) / H(16, 1) = 2.0833 / 3.3807 = 0.6162.

// CHECK:       rdu.tier_rows = "hbm_bytes=256 zipf(s=1.0)"
// CHECK:       "rdu.kernel"(%1, %e, %rows)
// CHECK-SAME:  sym_name = "k1_gather"
// CHECK-SAME:  hot_rows = 4 : i64, hot_fraction = 0.6162{{[0-9]*}} : f64

// rdu-allocate then holds the 4 hot rows (256 B) in HBM with the IDs (64 B) and the
// result (512 B): 832 B; the 12 cold rows (768 B) in DDR. The capture's tier is the hot one.
// ALLOC:       rdu.hbm_peak_bytes = 832 : i64, rdu.ddr_peak_bytes = 768 : i64
// ALLOC:       hot_rows = 4 : i64
// ALLOC-SAME:  capture_tiers = [#rdu.tier<hbm>]

// A budget that holds the whole table (1 KiB): every row hot, all reads from HBM.
// FITS:        hot_rows = 16 : i64, hot_fraction = 1.000000e+00 : f64

// A profile (per-row counts, argument position 1 = %rows): the placement ranks rows by
// count, so 4 rows go to HBM, but the table is numbered cold-first: rows [0, 4) have
// 0 of the 44 counts, and the pass says so (hot_fraction = 0), rather than pretending the
// hottest rows are the first.
// PROFILE:     rdu.tier_rows = "hbm_bytes=256 profile {{.*}}.json"
// PROFILE:     hot_rows = 4 : i64, hot_fraction = {{0.0|0.000000e\+00}} : f64

// NOBUDGET:    rdu-tier-rows: hbm_bytes = -1: give the HBM budget for table rows
// NOPROFILE:   rdu-tier-rows: no access profile: give zipf=s
builtin.module attributes {rdu.fabric = "tiny"} {
  func.func @main(%ids: tensor<8xi64>, %rows: tensor<16x16xf32>) -> tensor<8x16xf32> {
    %e = tensor.empty() : tensor<8x16xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, reason = "end of program"}> ({
      %1 = rdu.load %ids from <hbm> : tensor<8xi64> -> !rdu.stream<8xi64>
      %g = "rdu.kernel"(%1, %e, %rows) <{kind = #rdu.pattern<gather>, domain = array<i64: 8, 16>, indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1_gather", operandSegmentSizes = array<i32: 1, 1, 1>, tile = array<i64: 8, 16>}> ({
      ^bb0(%i: i64, %o: f32, %2: tensor<16x16xf32>):
        %row = arith.index_cast %i : i64 to index
        %col = rdu.index 1 : index
        %v = tensor.extract %2[%row, %col] : tensor<16x16xf32>
        rdu.yield %v : f32
      }) : (!rdu.stream<8xi64>, tensor<8x16xf32>, tensor<16x16xf32>) -> !rdu.stream<8x16xf32>
      %3 = rdu.store %g to <hbm> : !rdu.stream<8x16xf32> -> tensor<8x16xf32>
      rdu.yield %3 : tensor<8x16xf32>
    }) : () -> tensor<8x16xf32>
    func.return %0 : tensor<8x16xf32>
  }
}

