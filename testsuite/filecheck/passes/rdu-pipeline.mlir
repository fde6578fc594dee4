// RUN: %chunk(0) | rdu-opt -p rdu-convert-linalg | rdu-opt -p 'rdu-pipeline{pp=2 microbatches=4 fabric=sn40l-node8}' | filecheck %s
// RUN: %chunk(1) | rdu-opt -p rdu-convert-linalg | rdu-opt -p 'rdu-pipeline{pp=3 fabric=sn40l-node8}' | filecheck %s --check-prefix=SKIP
// RUN: %chunk(1) | rdu-opt -p rdu-convert-linalg | rdu-opt -p 'rdu-pipeline{pp=3 fabric=sn40l-node8},rdu-tile,rdu-section,rdu-allocate,rdu-place' | filecheck %s --check-prefix=PLACED
// RUN: %chunk(0) | rdu-opt -p rdu-convert-linalg | not rdu-opt -p 'rdu-pipeline{pp=5 fabric=sn40l-node8}' 2>&1 | filecheck %s --check-prefix=TOO-MANY
// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-tile,rdu-section' | not rdu-opt -p 'rdu-pipeline{pp=2}' 2>&1 | filecheck %s --check-prefix=SECTIONED
// RUN: %chunk(0) | rdu-opt -p rdu-convert-linalg | rdu-opt -p 'rdu-pipeline{pp=1}' | filecheck %s --check-prefix=ONE
// RUN: %chunk(0) | rdu-opt -p rdu-convert-linalg | not rdu-opt -p 'rdu-pipeline{pp=2}' 2>&1 | filecheck %s --check-prefix=ONE-SOCKET
// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-shard{tp=2 fabric=sn40l-node8}' | rdu-opt -p 'rdu-pipeline{pp=2 microbatches=4 fabric=sn40l-node8}' | filecheck %s --check-prefix=TP
// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-shard{tp=4 fabric=sn40l-node8}' | not rdu-opt -p 'rdu-pipeline{pp=4 fabric=sn40l-node8}' 2>&1 | filecheck %s --check-prefix=TP-SOCKETS

// rdu-pipeline cuts the kernel graph into pp stage programs in program order. Two
// "layers" (matmul with a weight, then a residual add): inside a layer the residual %x
// and the matmul's result cross a cut (256 B), between the layers only %h0 (128 B), so
// the cut goes there. Each weight goes with the stage that reads it (an argument of that
// stage only, `rdu.args` names its original position); the fill kernel reads no argument,
// so each stage computes its own copy rather than receiving it.

#id = affine_map<(i, j) -> (i, j)>
func.func @forward(%x: tensor<4x8xf32>, %w0: tensor<8x8xf32>, %w1: tensor<8x8xf32>) -> tensor<4x8xf32> {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x8xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
  %m0 = linalg.matmul ins(%x, %w0 : tensor<4x8xf32>, tensor<8x8xf32>) outs(%c : tensor<4x8xf32>) -> tensor<4x8xf32>
  %h0 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%m0, %x : tensor<4x8xf32>, tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%p: f32, %q: f32, %out: f32):
    %s = arith.addf %p, %q : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  %m1 = linalg.matmul ins(%h0, %w1 : tensor<4x8xf32>, tensor<8x8xf32>) outs(%c : tensor<4x8xf32>) -> tensor<4x8xf32>
  %h1 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%m1, %h0 : tensor<4x8xf32>, tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%p: f32, %q: f32, %out: f32):
    %s = arith.addf %p, %q : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  return %h1 : tensor<4x8xf32>
}

// CHECK:      builtin.module attributes {rdu.fabric = "sn40l-node8", rdu.microbatches = 4 : i64} {
// CHECK-NEXT:   func.func @forward_stage0(%x: tensor<4x8xf32>, %w0: tensor<8x8xf32>) attributes {rdu.stage = 0 : i64, rdu.args = array<i64: 0, 1>, rdu.results = array<i64>} {
// CHECK:          sym_name = "k2_fill"
// CHECK:          %m0 = "rdu.kernel"(%x, %w0, %c) {{.*}}sym_name = "k3_matmul"
// CHECK:          %h0 = "rdu.kernel"(%m0, %x, %e) {{.*}}sym_name = "k4_map"
// CHECK:          rdu.send %h0 to 1 channel 0 : tensor<4x8xf32>
// CHECK-NEXT:     func.return
// CHECK-NEXT:   }
// CHECK-NEXT:   func.func @forward_stage1(%w1: tensor<8x8xf32>) -> tensor<4x8xf32> attributes {rdu.stage = 1 : i64, rdu.args = array<i64: 2>, rdu.results = array<i64: 0>} {
// CHECK-NEXT:     %0 = rdu.recv from 0 channel 0 : tensor<4x8xf32>
// CHECK:          sym_name = "k2_fill"
// CHECK:          %m1 = "rdu.kernel"(%0, %w1, %c) {{.*}}sym_name = "k5_matmul"
// CHECK:          %h1 = "rdu.kernel"(%m1, %0, %e) {{.*}}sym_name = "k6_map"
// CHECK:          func.return %h1 : tensor<4x8xf32>

// TOO-MANY: rdu-pipeline: function @forward: cannot cut 4 kernels into 5 stages; each stage needs at least one kernel; use a smaller pp
// SECTIONED: rdu-pipeline: @forward is already cut into rdu.sections; run rdu-pipeline before rdu-tile and rdu-section
// ONE-SOCKET: rdu-pipeline: pp=2 stages need 2 sockets, but fabric 'sn40l' has 1; use a multi-socket fabric
// TP x PP: after rdu-shard{tp=2} the cut is the same; each stage program is SPMD over its
// 2 sockets and keeps its weights' shards (w0 column-parallel, w1 row-parallel); the
// residual stream crosses as each rank's shard (4x4 of 4x8: rank r to rank r of stage
// 1), the row-parallel matmul's all-reduce stays in its stage, results are gathered.
// TP:      builtin.module attributes {rdu.fabric = "sn40l-node8", rdu.tp = 2 : i64, rdu.microbatches = 4 : i64} {
// TP-NEXT:   func.func @forward_stage0(%x: tensor<4x8xf32>, %w0: tensor<8x4xf32> {rdu.shard = array<i64: 1, 2, 1>}) attributes {rdu.stage = 0 : i64, rdu.args = array<i64: 0, 1>, rdu.results = array<i64>} {
// TP:          %m0 = "rdu.kernel"(%x, %w0, %{{.*}}) <{kind = #rdu.pattern<matmul>, domain = array<i64: 4, 4, 8>
// TP:          %h0 = "rdu.kernel"
// TP:          rdu.send %h0 to 1 channel 0 : tensor<4x4xf32>
// TP-NEXT:     func.return
// TP:        func.func @forward_stage1(%w1: tensor<4x8xf32> {rdu.shard = array<i64: 0, 2, 1>}) -> tensor<4x8xf32> attributes {rdu.stage = 1 : i64, rdu.args = array<i64: 2>, rdu.results = array<i64: 0>} {
// TP-NEXT:     %0 = rdu.recv from 0 channel 0 : tensor<4x4xf32>
// TP:          %m1 = "rdu.kernel"(%0, %w1, %c) <{kind = #rdu.pattern<matmul>, domain = array<i64: 4, 8, 4>
// TP:          %[[SUM:.*]] = rdu.all_reduce %m1 group 2 : tensor<4x8xf32> -> tensor<4x8xf32>
// TP:          %[[G:.*]] = rdu.all_gather %h1 dim 1 group 2 : tensor<4x4xf32> -> tensor<4x8xf32>
// TP-NEXT:     func.return %[[G]] : tensor<4x8xf32>
// TP-SOCKETS: rdu-pipeline: pp=4 stages need tp x pp = 4 x 4 = 16 sockets (each stage on 4), but fabric 'sn40l-node8' has 8

// ONE-NOT: rdu.stage
// ONE: func.func @forward(

// -----

// Three layers, three stages; the first layer's output %h0 is also read by the last
// layer (a skip connection) and returned. Stage 0 sends it to stage 1 and, directly, to
// stage 2 (channels numbered by producer stage, then value, then consumer); stage 0
// returns it itself (result 1 of the original function, `rdu.results`). Each stage
// receives in channel order, so the transfers cannot deadlock. The later passes section
// and place each stage program on its own (PLACED).

func.func @skip(%x: tensor<4x8xf32>, %w0: tensor<8x8xf32>, %w1: tensor<8x8xf32>, %w2: tensor<8x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x8xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<4x8xf32>) -> tensor<4x8xf32>
  %h0 = linalg.matmul ins(%x, %w0 : tensor<4x8xf32>, tensor<8x8xf32>) outs(%c : tensor<4x8xf32>) -> tensor<4x8xf32>
  %h1 = linalg.matmul ins(%h0, %w1 : tensor<4x8xf32>, tensor<8x8xf32>) outs(%c : tensor<4x8xf32>) -> tensor<4x8xf32>
  %h2 = linalg.matmul ins(%h1, %w2 : tensor<4x8xf32>, tensor<8x8xf32>) outs(%h0 : tensor<4x8xf32>) -> tensor<4x8xf32>
  return %h2, %h0 : tensor<4x8xf32>, tensor<4x8xf32>
}

// SKIP:      func.func @skip_stage0(%x: tensor<4x8xf32>, %w0: tensor<8x8xf32>) -> tensor<4x8xf32> attributes {rdu.stage = 0 : i64, rdu.args = array<i64: 0, 1>, rdu.results = array<i64: 1>} {
// SKIP:        rdu.send %h0 to 1 channel 0 : tensor<4x8xf32>
// SKIP-NEXT:   rdu.send %h0 to 2 channel 1 : tensor<4x8xf32>
// SKIP-NEXT:   func.return %h0 : tensor<4x8xf32>
// SKIP:      func.func @skip_stage1(%w1: tensor<8x8xf32>) attributes {rdu.stage = 1 : i64, rdu.args = array<i64: 2>, rdu.results = array<i64>} {
// SKIP-NEXT:   %0 = rdu.recv from 0 channel 0 : tensor<4x8xf32>
// SKIP:        rdu.send %h1 to 2 channel 2 : tensor<4x8xf32>
// SKIP:      func.func @skip_stage2(%w2: tensor<8x8xf32>) -> tensor<4x8xf32> attributes {rdu.stage = 2 : i64, rdu.args = array<i64: 3>, rdu.results = array<i64: 0>} {
// SKIP-NEXT:   %0 = rdu.recv from 0 channel 1 : tensor<4x8xf32>
// SKIP-NEXT:   %1 = rdu.recv from 1 channel 2 : tensor<4x8xf32>
// SKIP:        %h2 = "rdu.kernel"(%1, %w2, %0)

// PLACED:      func.func @skip_stage0
// PLACED:        "rdu.section"() <{sym_name = "s0"
// PLACED:        rdu.send {{.*}} to 1 channel 0
// PLACED:      func.func @skip_stage2
// PLACED-NEXT:   rdu.recv from 0 channel 1
// PLACED-NEXT:   rdu.recv from 1 channel 2
// PLACED:        "rdu.section"() <{sym_name = "s0"
// PLACED:        rdu.load
