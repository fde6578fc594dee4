// RUN: rdu-opt %s -p 'rdu-hash-lookup' | filecheck %s
// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-hash-lookup' | filecheck %s --check-prefix=CONV
// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-hash-lookup,rdu-tile{fabric=tiny}' | filecheck %s --check-prefix=TILE
// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-hash-lookup,rdu-tile{fabric=tiny resident_index=true}' | filecheck %s --check-prefix=ACROSS

// rdu-hash-lookup: a collisionless-table lookup, carried through torch-mlir as a
// linalg.generic marked library_call = "rdu_hash_find" (frontend/torch/custom_ops.py; its
// payload is not its meaning), becomes one hash_probe kernel over the IDs: the IDs stream
// in, the index (buckets x 4 slots x (ID, row)) is its capture, the table's two
// bucket-hash seeds are hash_seeds, the marker's constant argument is the row an absent
// ID gets (miss_row: the zero row the module appends), and the payload yields its init
// (the probe is the pattern's). After rdu-convert-linalg the kernel is named after the marker's op number
// (k1: op #1, after its tensor.empty), and the row gather that follows is an ordinary
// gather kernel.

func.func @main(%ids: tensor<8xi64>, %index: tensor<64x4x2xi64>, %rows: tensor<17x16xf32>) -> tensor<8x16xf32> {
  %e0 = tensor.empty() : tensor<8xi64>
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (0, 0, 0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"], library_call = "rdu_hash_find(16)"} ins(%ids, %index : tensor<8xi64>, tensor<64x4x2xi64>) outs(%e0 : tensor<8xi64>) {
  ^bb0(%a: i64, %x: i64, %o: i64):
    %s = arith.addi %a, %x : i64
    linalg.yield %s : i64
  } -> tensor<8xi64>
  %e = tensor.empty() : tensor<8x16xf32>
  %g = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%r : tensor<8xi64>) outs(%e : tensor<8x16xf32>) {
  ^bb0(%i: i64, %o: f32):
    %row = arith.index_cast %i : i64 to index
    %col = linalg.index 1 : index
    %v = tensor.extract %rows[%row, %col] : tensor<17x16xf32>
    linalg.yield %v : f32
  } -> tensor<8x16xf32>
  return %g : tensor<8x16xf32>
}

// CHECK-LABEL: func.func @main
// CHECK-NOT:     library_call
// CHECK:         %[[E:.*]] = tensor.empty() : tensor<8xi64>
// CHECK-NEXT:    %[[R:.*]] = "rdu.kernel"(%ids, %[[E]], %index) <{
// CHECK-SAME:    kind = #rdu.pattern<hash_probe>
// CHECK-SAME:    domain = array<i64: 8>
// CHECK-SAME:    sym_name = "k1_hash_probe"
// CHECK-SAME:    hash_seeds = array<i64: 1374496523, 625341585>
// CHECK-SAME:    miss_row = 16 : i64
// CHECK-SAME:    operandSegmentSizes = array<i32: 1, 1, 1>
// CHECK:         ^bb0(%{{.*}}: i64, %[[O:.*]]: i64, %{{.*}}: tensor<64x4x2xi64>):
// CHECK-NEXT:      rdu.yield %[[O]] : i64
// CHECK:         (tensor<8xi64>, tensor<8xi64>, tensor<64x4x2xi64>) -> tensor<8xi64>
// CHECK:         linalg.generic
// CHECK-NOT:     library_call

// CONV-LABEL: func.func @main
// CONV:         "rdu.kernel"
// CONV-SAME:    kind = #rdu.pattern<hash_probe>
// CONV-SAME:    sym_name = "k1_hash_probe"
// CONV:         "rdu.kernel"
// CONV-SAME:    sym_name = "k3_gather"
// CONV-NOT:     library_call

// @many probes 128 IDs in the same 4 KiB index. On tiny (HBM 64 GB/s, PMUs 64 B/cycle at
// 1 GHz, a buffer of 2 PMUs here) 16 KiB of buckets off chip take 256 ns; loading the
// index (64 ns) and probing it in 2 PMUs (128 ns) is faster, so rdu-tile makes it a second
// input read at (d0) -> (0, 0, 0), held whole in the probe's PMUs. @main's 8 IDs keep the
// index a capture, probed in HBM.
func.func @many(%ids: tensor<128xi64>, %index: tensor<64x4x2xi64>) -> tensor<128xi64> {
  %e0 = tensor.empty() : tensor<128xi64>
  %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (0, 0, 0)>, affine_map<(d0) -> (d0)>], iterator_types = ["parallel"], library_call = "rdu_hash_find"} ins(%ids, %index : tensor<128xi64>, tensor<64x4x2xi64>) outs(%e0 : tensor<128xi64>) {
  ^bb0(%a: i64, %x: i64, %o: i64):
    %s = arith.addi %a, %x : i64
    linalg.yield %s : i64
  } -> tensor<128xi64>
  return %r : tensor<128xi64>
}

// TILE-LABEL: func.func @main
// TILE:         "rdu.kernel"(%ids, %e0, %index)
// TILE-SAME:    kind = #rdu.pattern<hash_probe>
// TILE-SAME:    operandSegmentSizes = array<i32: 1, 1, 1>
// TILE-LABEL: func.func @many
// TILE:         "rdu.kernel"(%ids, %index, %e0)
// TILE-SAME:    kind = #rdu.pattern<hash_probe>
// TILE-SAME:    indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (0, 0, 0)>, affine_map<(d0) -> (d0)>]
// TILE-SAME:    miss_row = -1 : i64
// TILE-SAME:    operandSegmentSizes = array<i32: 2, 1, 0>
// TILE:         ^bb0(%{{.*}}: i64, %{{.*}}: i64, %[[O:.*]]: i64):
// TILE-NEXT:      rdu.yield %[[O]] : i64

// resident_index=true: the program keeps every index in its probe's PMUs across calls, so
// @main's index goes there too (the time rule alone keeps it in HBM), and the kernel and the
// module say so (the cost model then charges the load to the first call only).
// ACROSS:       builtin.module attributes {{.*}}rdu.index_resident_across_calls
// ACROSS-LABEL: func.func @main
// ACROSS:         "rdu.kernel"(%ids, %index, %e0)
// ACROSS-SAME:    operandSegmentSizes = array<i32: 2, 1, 0>
// ACROSS:         }) {rdu.index_resident_across_calls}
// ACROSS-LABEL: func.func @many
// ACROSS:         }) {rdu.index_resident_across_calls}
