// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny strategy=first-fit}' | filecheck %s
// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny}' | filecheck %s --check-prefix=COST
// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny per_op=true}' | filecheck %s --check-prefix=O0

// rdu-section on the tiny fabric (8 PCUs, 8 PMUs of 16384 B). A kernel needs one PCU
// and, at its tile, ceil(2 * tile_bytes / 16384) PMUs per operand buffer (scalars and
// rank-0 tensors have none). Kernels join the open section in program order while its
// PCUs and PMUs fit; per_op=true (-O0) gives every kernel its own section.

#scalar = affine_map<() -> ()>
#id = affine_map<(i, j) -> (i, j)>

// What crosses a section boundary: arguments (and views of them) are loaded, results
// used after the section are stored once (%m is both used inside and returned), values
// inside are streams, tensor.empty inits and scalars are not loaded. The view of an
// argument stays outside; the view of a kernel result joins its section. Constants and
// tensor.empty are hoisted to the top of the function.
// PMUs: fill 1 (its output, 2048 B) + matmul 3 + add 3 = 7 <= 8: one section.

func.func @boundaries(%a: tensor<16x64xf32>, %b: tensor<64x32xf32>, %x: tensor<512xf32>) -> (tensor<512xf32>, tensor<16x32xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x32xf32>
  %c = linalg.fill ins(%zero : f32) outs(%e : tensor<16x32xf32>) -> tensor<16x32xf32>
  %m = linalg.matmul ins(%a, %b : tensor<16x64xf32>, tensor<64x32xf32>) outs(%c : tensor<16x32xf32>) -> tensor<16x32xf32>
  %xv = tensor.expand_shape %x [[0, 1]] output_shape [16, 32] : tensor<512xf32> into tensor<16x32xf32>
  %r = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%m, %xv : tensor<16x32xf32>, tensor<16x32xf32>) outs(%e : tensor<16x32xf32>) {
  ^bb0(%p: f32, %q: f32, %out: f32):
    %s = arith.addf %p, %q : f32
    linalg.yield %s : f32
  } -> tensor<16x32xf32>
  %flat = tensor.collapse_shape %r [[0, 1]] : tensor<16x32xf32> into tensor<512xf32>
  return %flat, %m : tensor<512xf32>, tensor<16x32xf32>
}

// CHECK-LABEL: func.func @boundaries
// CHECK-NEXT:    %e = tensor.empty() : tensor<16x32xf32>
// CHECK-NEXT:    %zero = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %xv = rdu.view %x <reshape> : tensor<512xf32> -> tensor<16x32xf32>
// CHECK-NEXT:    %[[M:.*]], %[[FLAT:.*]] = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, reason = "end of program"}> ({
// CHECK-NEXT:      %[[A:.*]] = rdu.load %a from <hbm> : tensor<16x64xf32> -> !rdu.stream<16x64xf32>
// CHECK-NEXT:      %[[B:.*]] = rdu.load %b from <hbm> : tensor<64x32xf32> -> !rdu.stream<64x32xf32>
// CHECK-NEXT:      %[[XV:.*]] = rdu.load %xv from <hbm> : tensor<16x32xf32> -> !rdu.stream<16x32xf32>
// CHECK-NEXT:      %c = "rdu.kernel"(%zero, %e) <{kind = #rdu.pattern<fill>
// CHECK:           }) : (f32, tensor<16x32xf32>) -> !rdu.stream<16x32xf32>
// CHECK-NEXT:      %m = "rdu.kernel"(%[[A]], %[[B]], %c) <{kind = #rdu.pattern<matmul>
// CHECK:           }) : (!rdu.stream<16x64xf32>, !rdu.stream<64x32xf32>, !rdu.stream<16x32xf32>) -> !rdu.stream<16x32xf32>
// CHECK-NEXT:      %r = "rdu.kernel"(%m, %[[XV]], %e) <{kind = #rdu.pattern<map>
// CHECK:           }) : (!rdu.stream<16x32xf32>, !rdu.stream<16x32xf32>, tensor<16x32xf32>) -> !rdu.stream<16x32xf32>
// CHECK-NEXT:      %flat = rdu.view %r <reshape> : !rdu.stream<16x32xf32> -> !rdu.stream<512xf32>
// CHECK-NEXT:      %[[SM:.*]] = rdu.store %m to <hbm> : !rdu.stream<16x32xf32> -> tensor<16x32xf32>
// CHECK-NEXT:      %[[SF:.*]] = rdu.store %flat to <hbm> : !rdu.stream<512xf32> -> tensor<512xf32>
// CHECK-NEXT:      rdu.yield %[[SM]], %[[SF]] : tensor<16x32xf32>, tensor<512xf32>
// CHECK-NEXT:    }) : () -> (tensor<16x32xf32>, tensor<512xf32>)
// CHECK-NEXT:    func.return %[[FLAT]], %[[M]] : tensor<512xf32>, tensor<16x32xf32>

// At -O0 every kernel is a section; values between them go out and back in.

// O0-LABEL: func.func @boundaries
// O0:         %[[S0:.*]] = "rdu.section"() <{sym_name = "s0", {{.*}}, reason = "-O0: one kernel per section"}> ({
// O0-NEXT:      %c = "rdu.kernel"(%zero, %e) <{kind = #rdu.pattern<fill>
// O0:           rdu.store %c
// O0:         %[[S1:.*]] = "rdu.section"() <{sym_name = "s1", {{.*}}, reason = "-O0: one kernel per section"}> ({
// O0-NEXT:      rdu.load %a
// O0-NEXT:      rdu.load %b
// O0-NEXT:      %[[C:.*]] = rdu.load %[[S0]]
// O0-NEXT:      %m = "rdu.kernel"(%{{.*}}, %{{.*}}, %[[C]]) <{kind = #rdu.pattern<matmul>
// O0:           rdu.store %m
// O0:         %xv = rdu.view %x <reshape>
// O0-NEXT:    %[[S2:.*]] = "rdu.section"() <{sym_name = "s2", {{.*}}, reason = "end of program"}> ({
// O0-NEXT:      rdu.load %[[S1]]
// O0-NEXT:      rdu.load %xv
// O0-NEXT:      %r = "rdu.kernel"
// O0:           %flat = rdu.view %r
// O0-NEXT:      rdu.store %flat
// O0:         func.return %[[S2]], %[[S1]] : tensor<512xf32>, tensor<16x32xf32>

// A gather reads its table through a capture: the table is not loaded (the AGCU reads
// rows at random); only the indices are streamed in.

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
// CHECK:         "rdu.section"()
// CHECK-NEXT:      %[[IDS:.*]] = rdu.load %ids from <hbm> : tensor<4xi64> -> !rdu.stream<4xi64>
// CHECK-NEXT:      %r = "rdu.kernel"(%[[IDS]], %e, %table) <{kind = #rdu.pattern<gather>
// CHECK:           }) : (!rdu.stream<4xi64>, tensor<4x8xf32>, tensor<100x8xf32>) -> !rdu.stream<4x8xf32>

// Nine kernels on rank-0 tensors: rdu-convert-linalg gives a 0-d kernel a one-element
// domain, so each operand and result has a buffer of one PMU like in every other kernel
// (2 PMUs per kernel): the 8 PMUs cut the chain after 4 and after 8.

func.func @nine_scalar_negs(%x: tensor<f32>) -> tensor<f32> {
  %e = tensor.empty() : tensor<f32>
  %t0 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%x : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t1 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t0 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t2 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t1 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t3 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t2 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t4 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t3 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t5 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t4 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t6 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t5 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t7 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t6 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  %t8 = linalg.generic {indexing_maps = [#scalar, #scalar], iterator_types = []} ins(%t7 : tensor<f32>) outs(%e : tensor<f32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<f32>
  return %t8 : tensor<f32>
}
// With the default cost strategy the cuts are the same (nothing smaller crosses any other
// feasible cut: every value is 4 B), and the reason says the cost model chose them.
// COST-LABEL: func.func @nine_scalar_negs
// COST:         "rdu.section"() <{sym_name = "s0", {{.*}}, reason = "fabric full: adding 'k5_map' needs 5 PCUs / 10 PMUs (fabric 8/8); cut chosen by the cost model, 4 B stored across it"}>
// COST-COUNT-4:   "rdu.kernel"
// COST:         "rdu.section"() <{sym_name = "s1", {{.*}}, reason = "fabric full: adding 'k9_map' needs 5 PCUs / 10 PMUs (fabric 8/8); cut chosen by the cost model, 4 B stored across it"}>
// COST-COUNT-4:   "rdu.kernel"
// COST:         "rdu.section"() <{sym_name = "s2", {{.*}}, reason = "end of program"}>

// CHECK-LABEL: func.func @nine_scalar_negs
// CHECK:         "rdu.section"() <{sym_name = "s0", {{.*}}, reason = "fabric full: next kernel 'k5_map' needs 1 PCU / 2 PMU, section uses 4/8 PCUs and 8/8 PMUs"}>
// CHECK-COUNT-4:   "rdu.kernel"
// CHECK:         "rdu.section"() <{sym_name = "s1", {{.*}}, reason = "fabric full: next kernel 'k9_map' needs 1 PCU / 2 PMU, section uses 4/8 PCUs and 8/8 PMUs"}>
// CHECK-COUNT-4:   "rdu.kernel"
// CHECK:         "rdu.section"() <{sym_name = "s2", {{.*}}, reason = "end of program"}>
// CHECK-NOT:     "rdu.section"
// CHECK:         func.return

// Kernels on 16x16 tensors have two buffers of 1024 B, one PMU each: the 8 PMUs cut
// the chain after 4 kernels.

func.func @five_negs(%x: tensor<16x16xf32>) -> tensor<16x16xf32> {
  %e = tensor.empty() : tensor<16x16xf32>
  %t0 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x16xf32>) outs(%e : tensor<16x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x16xf32>
  %t1 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t0 : tensor<16x16xf32>) outs(%e : tensor<16x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x16xf32>
  %t2 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t1 : tensor<16x16xf32>) outs(%e : tensor<16x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x16xf32>
  %t3 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t2 : tensor<16x16xf32>) outs(%e : tensor<16x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x16xf32>
  %t4 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t3 : tensor<16x16xf32>) outs(%e : tensor<16x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x16xf32>
  return %t4 : tensor<16x16xf32>
}
// CHECK-LABEL: func.func @five_negs
// CHECK:         "rdu.section"() <{sym_name = "s0", {{.*}}, reason = "fabric full: next kernel 'k5_map' needs 1 PCU / 2 PMU, section uses 4/8 PCUs and 8/8 PMUs"}>
// CHECK-COUNT-4:   "rdu.kernel"
// CHECK:         "rdu.section"() <{sym_name = "s1", {{.*}}, reason = "end of program"}>
// CHECK-NEXT:      rdu.load
// CHECK-NEXT:      "rdu.kernel"{{.*}}sym_name = "k5_map"

// COST-LABEL: func.func @five_negs
// COST:         "rdu.section"() <{sym_name = "s0", {{.*}}, reason = "fabric full: adding 'k5_map' needs 5 PCUs / 10 PMUs (fabric 8/8); cut chosen by the cost model, 1024 B stored across it"}>
// COST-COUNT-4:   "rdu.kernel"
// COST:         "rdu.section"() <{sym_name = "s1", {{.*}}, reason = "end of program"}>

// O0-LABEL: func.func @five_negs
// O0-COUNT-4: reason = "-O0: one kernel per section"
// O0:         reason = "end of program"
// O0-NOT:     "rdu.section"
