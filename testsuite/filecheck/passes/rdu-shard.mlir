// RUN: rdu-opt %s -p 'rdu-shard{tp=2}' | filecheck %s
// RUN: rdu-opt %s -p 'rdu-shard{tp=1}' | filecheck %s --check-prefix=ONE
// RUN: not rdu-opt %s -p 'rdu-shard{tp=3}' 2>&1 | filecheck %s --check-prefix=BAD
// RUN: not rdu-opt %s -p 'rdu-shard{tp=16}' 2>&1 | filecheck %s --check-prefix=BAD16

// rdu-shard: one SPMD program for tp sockets. @embed is a token-embedding lookup (ids
// from a user input, `rdu.input`): vocabulary-parallel, the table split by rows (4 of 8
// per socket), a masked lookup against this socket's bounds (a [2, 3] constant taken with
// rdu.shard: offset, lo, hi), partial rows and one all-reduce. @embed_odd's 7 rows do not
// divide by 2: the table stays whole, with a note on the module (rdu.tp_notes). @mlp is Megatron's MLP: the first matmul
// column-parallel (its weight split by columns, recorded on the argument), the ReLU on the
// shard, the second matmul row-parallel (partial sums) and one all-reduce before the
// result. @qk reads a fused q|k projection through folded head-split maps (h * 16 + e and
// h * 16 + e + 32): the projection's columns are split in 3 blocks of 16 columns per
// socket and part (blocks = 96 / (2 x 16)), so each socket holds its head of q and of k,
// and the k map's offset 32 becomes 16 on the shard. Results are gathered (replicated).

builtin.module attributes {rdu.fabric = "sn40l-node8"} {
  func.func @mlp(%w1: tensor<64x128xf32>, %w2: tensor<128x64xf32>, %x: tensor<16x64xf32>) -> tensor<16x64xf32> {
    %z = arith.constant 0.000000e+00 : f32
    %e1 = tensor.empty() : tensor<16x128xf32>
    %f1 = "rdu.kernel"(%z, %e1) <{kind = #rdu.pattern<fill>, domain = array<i64: 16, 128>, indexing_maps = [affine_map<(d0, d1) -> ()>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_fill", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%0: f32, %1: f32):
      rdu.yield %0 : f32
    }) : (f32, tensor<16x128xf32>) -> tensor<16x128xf32>
    %h = "rdu.kernel"(%x, %w1, %f1) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 128, 64>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k3_matmul", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
    ^bb0(%2: f32, %3: f32, %4: f32):
      %5 = arith.mulf %2, %3 : f32
      %6 = arith.addf %5, %4 : f32
      rdu.yield %6 : f32
    }) : (tensor<16x64xf32>, tensor<64x128xf32>, tensor<16x128xf32>) -> tensor<16x128xf32>
    %r = "rdu.kernel"(%h, %e1) <{kind = #rdu.pattern<map>, domain = array<i64: 16, 128>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k4_map", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%v: f32, %out: f32):
      %z_1 = arith.constant 0.000000e+00 : f32
      %m = arith.maximumf %v, %z_1 : f32
      rdu.yield %m : f32
    }) : (tensor<16x128xf32>, tensor<16x128xf32>) -> tensor<16x128xf32>
    %e2 = tensor.empty() : tensor<16x64xf32>
    %f2 = "rdu.kernel"(%z, %e2) <{kind = #rdu.pattern<fill>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> ()>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k6_fill", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%7: f32, %8: f32):
      rdu.yield %7 : f32
    }) : (f32, tensor<16x64xf32>) -> tensor<16x64xf32>
    %y = "rdu.kernel"(%r, %w2, %f2) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 64, 128>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k7_matmul", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
    ^bb0(%9: f32, %10: f32, %11: f32):
      %12 = arith.mulf %9, %10 : f32
      %13 = arith.addf %12, %11 : f32
      rdu.yield %13 : f32
    }) : (tensor<16x128xf32>, tensor<128x64xf32>, tensor<16x64xf32>) -> tensor<16x64xf32>
    func.return %y : tensor<16x64xf32>
  }
  func.func @qk(%w: tensor<64x96xf32>, %x: tensor<16x64xf32>) -> tensor<1x2x16x16xf32> {
    %z = arith.constant 0.000000e+00 : f32
    %e = tensor.empty() : tensor<16x96xf32>
    %f = "rdu.kernel"(%z, %e) <{kind = #rdu.pattern<fill>, domain = array<i64: 16, 96>, indexing_maps = [affine_map<(d0, d1) -> ()>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k2_fill", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
    ^bb0(%0: f32, %1: f32):
      rdu.yield %0 : f32
    }) : (f32, tensor<16x96xf32>) -> tensor<16x96xf32>
    %qkv = "rdu.kernel"(%x, %w, %f) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 96, 64>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d2)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<reduction>], sym_name = "k3_matmul", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
    ^bb0(%2: f32, %3: f32, %4: f32):
      %5 = arith.mulf %2, %3 : f32
      %6 = arith.addf %5, %4 : f32
      rdu.yield %6 : f32
    }) : (tensor<16x64xf32>, tensor<64x96xf32>, tensor<16x96xf32>) -> tensor<16x96xf32>
    %o = tensor.empty() : tensor<1x2x16x16xf32>
    %s = "rdu.kernel"(%qkv, %qkv, %o) <{kind = #rdu.pattern<map>, domain = array<i64: 1, 2, 16, 16>, indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d2, ((d1 * 16) + d3))>, affine_map<(d0, d1, d2, d3) -> (d2, (((d1 * 16) + d3) + 32))>, affine_map<(d0, d1, d2, d3) -> (d0, d1, d2, d3)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k5_map", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
    ^bb0(%a: f32, %b: f32, %out: f32):
      %m = arith.mulf %a, %b : f32
      rdu.yield %m : f32
    }) : (tensor<16x96xf32>, tensor<16x96xf32>, tensor<1x2x16x16xf32>) -> tensor<1x2x16x16xf32>
    func.return %s : tensor<1x2x16x16xf32>
  }
  func.func @embed(%table: tensor<8x4xf32>, %ids: tensor<1x3xi64> {rdu.input}) -> tensor<1x3x4xf32> {
    %e = tensor.empty() : tensor<1x3x4xf32>
    %r = "rdu.kernel"(%ids, %e, %table) <{kind = #rdu.pattern<gather>, domain = array<i64: 1, 3, 4>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1_gather", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
    ^bb0(%id: i64, %out: f32, %t: tensor<8x4xf32>):
      %row = arith.index_cast %id : i64 to index
      %col = rdu.index 2 : index
      %v = tensor.extract %t[%row, %col] : tensor<8x4xf32>
      rdu.yield %v : f32
    }) : (tensor<1x3xi64>, tensor<1x3x4xf32>, tensor<8x4xf32>) -> tensor<1x3x4xf32>
    func.return %r : tensor<1x3x4xf32>
  }
  func.func @embed_odd(%table: tensor<7x4xf32>, %ids: tensor<1x3xi64> {rdu.input}) -> tensor<1x3x4xf32> {
    %e = tensor.empty() : tensor<1x3x4xf32>
    %r = "rdu.kernel"(%ids, %e, %table) <{kind = #rdu.pattern<gather>, domain = array<i64: 1, 3, 4>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k9_gather", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
    ^bb0(%id: i64, %out: f32, %t: tensor<7x4xf32>):
      %row = arith.index_cast %id : i64 to index
      %col = rdu.index 2 : index
      %v = tensor.extract %t[%row, %col] : tensor<7x4xf32>
      rdu.yield %v : f32
    }) : (tensor<1x3xi64>, tensor<1x3x4xf32>, tensor<7x4xf32>) -> tensor<1x3x4xf32>
    func.return %r : tensor<1x3x4xf32>
  }
}

// CHECK:       builtin.module attributes {rdu.fabric = "sn40l-node8", rdu.tp = 2 : i64, rdu.tp_notes = ["kernel 'k9_gather': embedding table of 7 rows kept replicated: tp = 2 does not divide the vocabulary (pad the vocabulary to a multiple of tp to split it)"]}
// CHECK-LABEL: func.func @mlp(%w1: tensor<64x64xf32> {rdu.shard = array<i64: 1, 2, 1>}, %w2: tensor<64x64xf32> {rdu.shard = array<i64: 0, 2, 1>}, %x: tensor<16x64xf32>) -> tensor<16x64xf32>
// CHECK:         %h = "rdu.kernel"(%x, %w1, %{{.*}}) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 64, 64>
// CHECK:         }) {rdu.tp_loop = "loop 1 split"}
// CHECK:         %r = "rdu.kernel"(%h, %{{.*}}) <{kind = #rdu.pattern<map>, domain = array<i64: 16, 64>
// CHECK:         %y = "rdu.kernel"(%r, %w2, %{{.*}}) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 64, 64>
// CHECK:         }) {rdu.tp_loop = "loop 2 row-parallel (partial sums)"}
// CHECK-NEXT:    %[[SUM:.*]] = rdu.all_reduce %y group 2 : tensor<16x64xf32> -> tensor<16x64xf32>
// CHECK-NEXT:    func.return %[[SUM]] : tensor<16x64xf32>

// CHECK-LABEL: func.func @qk(%w: tensor<64x48xf32> {rdu.shard = array<i64: 1, 2, 3>}, %x: tensor<16x64xf32>) -> tensor<1x2x16x16xf32>
// CHECK:         %qkv = "rdu.kernel"(%x, %w, %{{.*}}) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 48, 64>
// CHECK:         %s = "rdu.kernel"(%qkv, %qkv, %{{.*}}) <{kind = #rdu.pattern<map>, domain = array<i64: 1, 1, 16, 16>, indexing_maps = [affine_map<(d0, d1, d2, d3) -> (d2, ((d1 * 16) + d3))>, affine_map<(d0, d1, d2, d3) -> (d2, (((d1 * 16) + d3) + 16))>
// CHECK-NEXT:    ^bb0
// CHECK:         %[[G:.*]] = rdu.all_gather %s dim 1 group 2 : tensor<1x1x16x16xf32> -> tensor<1x2x16x16xf32>
// CHECK-NEXT:    func.return %[[G]] : tensor<1x2x16x16xf32>

// CHECK-LABEL: func.func @embed(%table: tensor<4x4xf32> {rdu.shard = array<i64: 0, 2, 1>}, %ids: tensor<1x3xi64> {rdu.input}) -> tensor<1x3x4xf32>
// CHECK:         %[[B:.*]] = arith.constant dense<{{\[}}[0, -4611686018427387904, 4], [4, 4, 4611686018427387904]]> : tensor<2x3xi64>
// CHECK-NEXT:    %[[MINE:.*]] = rdu.shard %[[B]] dim 0 group 2 : tensor<2x3xi64> -> tensor<1x3xi64>
// CHECK-NEXT:    %r = "rdu.kernel"(%ids, %[[MINE]], %[[MINE]], %[[MINE]], %e, %table) <{kind = #rdu.pattern<gather>, domain = array<i64: 1, 3, 4>, indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1)>, affine_map<(d0, d1, d2) -> (0, 0)>, affine_map<(d0, d1, d2) -> (0, 1)>, affine_map<(d0, d1, d2) -> (0, 2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>]
// CHECK-NEXT:    ^bb0(%id: i64, %[[OFF:.*]]: i64, %[[LO:.*]]: i64, %[[HI:.*]]: i64, %out: f32, %t: tensor<4x4xf32>):
// CHECK:           %[[GE:.*]] = arith.cmpi sge, %row, %{{.*}} : index
// CHECK-NEXT:      %[[LT:.*]] = arith.cmpi slt, %row, %{{.*}} : index
// CHECK-NEXT:      %[[OK:.*]] = arith.andi %[[GE]], %[[LT]] : i1
// CHECK-NEXT:      %[[LOC:.*]] = arith.subi %row, %{{.*}} : index
// CHECK:           %[[SAFE:.*]] = arith.select %[[OK]], %[[LOC]], %{{.*}} : index
// CHECK-NEXT:      %v = tensor.extract %t[%[[SAFE]], %col] : tensor<4x4xf32>
// CHECK:           %[[M:.*]] = arith.select %[[OK]], %v, %{{.*}} : f32
// CHECK-NEXT:      rdu.yield %[[M]] : f32
// CHECK-NEXT:    }) {rdu.tp_loop = "vocabulary-parallel: rows 4 of 8 per socket (partial)"}
// CHECK-NEXT:    %[[S:.*]] = rdu.all_reduce %r group 2 : tensor<1x3x4xf32> -> tensor<1x3x4xf32>
// CHECK-NEXT:    func.return %[[S]] : tensor<1x3x4xf32>

// CHECK-LABEL: func.func @embed_odd(%table: tensor<7x4xf32>, %ids: tensor<1x3xi64> {rdu.input})
// CHECK-NOT:     rdu.shard
// CHECK:         }) {rdu.tp_loop = "replicated: vocabulary 7 not a multiple of tp 2"}
// CHECK-NEXT:    func.return %r : tensor<1x3x4xf32>

// ONE:         rdu.tp = 1 : i64
// ONE-NOT:     rdu.all_reduce
// ONE:         func.func @mlp(%w1: tensor<64x128xf32>, %w2: tensor<128x64xf32>

// BAD: tp = 3 cannot run on fabric 'sn40l-node8', whose node has 8 socket(s)
// BAD16: tp = 16 cannot run on fabric 'sn40l-node8', whose node has 8 socket(s)
