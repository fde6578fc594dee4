// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny per_op=true},rdu-allocate{fabric=tiny},rdu-place{fabric=tiny}' | rdu-opt -p 'rdu-kernel-loop' | filecheck %s
// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny per_op=true},rdu-allocate{fabric=tiny},rdu-place{fabric=tiny}' | rdu-opt -p 'rdu-kernel-loop{min_trips=4}' | filecheck %s --check-prefix=FOUR
// RUN: %chunk(0) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny per_op=true},rdu-allocate{fabric=tiny},rdu-place{fabric=tiny}' | not rdu-opt -p 'rdu-kernel-loop{min_trips=1}' 2>&1 | filecheck %s --check-prefix=BADTRIPS
// RUN: %chunk(1) | rdu-opt -p 'rdu-convert-linalg,rdu-tile{fabric=tiny},rdu-section{fabric=tiny per_op=true},rdu-allocate{fabric=tiny},rdu-place{fabric=tiny}' | rdu-opt -p 'rdu-kernel-loop' | filecheck %s --check-prefix=CONST

// rdu-kernel-loop finds N >= 2 consecutive, structurally identical runs of function-level
// ops (sections, collectives) that form a loop, and records them: the function gets
// rdu.kernel_loops = [array<i64: start op, ops per iteration, trips, sections per
// iteration>], every section of the loop rdu.loop = array<i64: loop, iteration, offset>.
// At -O0 (per_op) each linalg op below is one section: 2 per layer.

// Three "layers" x <- x * w_i + x: the same program on a different weight each time
// (a per-iteration input), x carried from one layer to the next, %b read by every layer
// (invariant). Then a different tail op. One loop: 3 trips of 2 sections, 4 launches saved.
#id = affine_map<(i, j) -> (i, j)>
func.func @layers(%x: tensor<16x64xf32>, %w0: tensor<16x64xf32>, %w1: tensor<16x64xf32>, %w2: tensor<16x64xf32>, %b: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %e = tensor.empty() : tensor<16x64xf32>
  %h0 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %w0 : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  %x1 = linalg.generic {indexing_maps = [#id, #id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%h0, %x, %b : tensor<16x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %r: f32, %o: f32):
    %s = arith.addf %p, %q : f32
    %t = arith.addf %s, %r : f32
    linalg.yield %t : f32
  } -> tensor<16x64xf32>
  %h1 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x1, %w1 : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  %x2 = linalg.generic {indexing_maps = [#id, #id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%h1, %x1, %b : tensor<16x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %r: f32, %o: f32):
    %s = arith.addf %p, %q : f32
    %t = arith.addf %s, %r : f32
    linalg.yield %t : f32
  } -> tensor<16x64xf32>
  %h2 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x2, %w2 : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  %x3 = linalg.generic {indexing_maps = [#id, #id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%h2, %x2, %b : tensor<16x64xf32>, tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %r: f32, %o: f32):
    %s = arith.addf %p, %q : f32
    %t = arith.addf %s, %r : f32
    linalg.yield %t : f32
  } -> tensor<16x64xf32>
  %y = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x3 : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %o: f32):
    %n = arith.negf %p : f32
    linalg.yield %n : f32
  } -> tensor<16x64xf32>
  return %y : tensor<16x64xf32>
}

// CHECK:      func.func @layers
// CHECK-SAME: rdu.kernel_loops = [array<i64: {{[0-9]+}}, 2, 3, 2>]
// CHECK:      "rdu.section"() <{sym_name = "s0"
// CHECK:      }) {rdu.loop = array<i64: 0, 0, 0>} : () -> tensor<16x64xf32>
// CHECK:      "rdu.section"() <{sym_name = "s1"
// CHECK:      }) {rdu.loop = array<i64: 0, 0, 1>}
// CHECK:      "rdu.section"() <{sym_name = "s2"
// CHECK:      }) {rdu.loop = array<i64: 0, 1, 0>}
// CHECK:      "rdu.section"() <{sym_name = "s3"
// CHECK:      }) {rdu.loop = array<i64: 0, 1, 1>}
// CHECK:      "rdu.section"() <{sym_name = "s4"
// CHECK:      }) {rdu.loop = array<i64: 0, 2, 0>}
// CHECK:      "rdu.section"() <{sym_name = "s5"
// CHECK:      }) {rdu.loop = array<i64: 0, 2, 1>}
// The tail section is not in the loop.
// CHECK:      "rdu.section"() <{sym_name = "s6"
// CHECK-NOT:  rdu.loop
// CHECK:      func.return

// min_trips=4: three layers are not enough; the function says so with an empty list.
// FOUR:       rdu.kernel_loops = []
// FOUR-NOT:   rdu.loop =

// BADTRIPS: rdu-kernel-loop: min_trips = 1: a loop needs at least 2 iterations; use min_trips >= 2

// -----

// Four layers, but layer 2 scales by a constant 2.0 where the others multiply by their
// weight: it is not the same program, so only layers 0 and 1 form a loop (2 trips), and
// layer 3 stands alone (a single iteration is no loop).
#id = affine_map<(i, j) -> (i, j)>
func.func @odd_layer(%x: tensor<16x64xf32>, %w0: tensor<16x64xf32>, %w1: tensor<16x64xf32>, %w3: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %e = tensor.empty() : tensor<16x64xf32>
  %two = arith.constant 2.0 : f32
  %x1 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x, %w0 : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %m, %p : f32
    linalg.yield %s : f32
  } -> tensor<16x64xf32>
  %x2 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x1, %w1 : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %m, %p : f32
    linalg.yield %s : f32
  } -> tensor<16x64xf32>
  %x3 = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x2 : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %o: f32):
    %m = arith.mulf %p, %two : f32
    %s = arith.addf %m, %p : f32
    linalg.yield %s : f32
  } -> tensor<16x64xf32>
  %x4 = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%x3, %w3 : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %o: f32):
    %m = arith.mulf %p, %q : f32
    %s = arith.addf %m, %p : f32
    linalg.yield %s : f32
  } -> tensor<16x64xf32>
  return %x4 : tensor<16x64xf32>
}

// CONST:      rdu.kernel_loops = [array<i64: {{[0-9]+}}, 1, 2, 1>]
// CONST:      sym_name = "s0"
// CONST:      }) {rdu.loop = array<i64: 0, 0, 0>}
// CONST:      sym_name = "s1"
// CONST:      }) {rdu.loop = array<i64: 0, 1, 0>}
// CONST:      sym_name = "s2"
// CONST-NOT:  rdu.loop
// CONST:      func.return
