// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-fuse' | filecheck %s

// rdu-fuse folds an all-parallel producer kernel into its only consumer when the
// consumer reads it with a permutation of its loops: the producer's payload runs inside
// the consumer's, the producer's operands are read through (producer map o consumer map),
// its captures move along; the kernel keeps the consumer's number and is named after its new kind.

#id = affine_map<(i, j) -> (i, j)>

// neg -> exp -> add(%, %x): one kernel reading %x twice.

func.func @chain(%x: tensor<16x64xf32>) -> tensor<16x64xf32> {
  %e = tensor.empty() : tensor<16x64xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16x64xf32>
  %b = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = math.exp %in : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  %c = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%b, %x : tensor<16x64xf32>, tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%p: f32, %q: f32, %out: f32):
    %s = arith.addf %p, %q : f32
    linalg.yield %s : f32
  } -> tensor<16x64xf32>
  return %c : tensor<16x64xf32>
}

// CHECK-LABEL: func.func @chain
// CHECK-NEXT:    %e = tensor.empty() : tensor<16x64xf32>
// CHECK-NEXT:    %c = "rdu.kernel"(%x, %x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], {{.*}}, sym_name = "k3_map", operandSegmentSizes = array<i32: 2, 1, 0>}> ({
// CHECK-NEXT:    ^bb0(%0: f32, %1: f32, %2: f32):
// CHECK-NEXT:      %n = arith.negf %0 : f32
// CHECK-NEXT:      %m = math.exp %n : f32
// CHECK-NEXT:      %s = arith.addf %m, %1 : f32
// CHECK-NEXT:      rdu.yield %s : f32
// CHECK-NEXT:    })
// CHECK-NEXT:    func.return %c : tensor<16x64xf32>

// exp feeding a row sum becomes part of the reduction.

func.func @exp_rowsum(%x: tensor<16x64xf32>, %init: tensor<16xf32>) -> tensor<16xf32> {
  %e = tensor.empty() : tensor<16x64xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x64xf32>) outs(%e : tensor<16x64xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = math.exp %in : f32
    linalg.yield %m : f32
  } -> tensor<16x64xf32>
  %r = linalg.generic {indexing_maps = [#id, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]} ins(%a : tensor<16x64xf32>) outs(%init : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  return %r : tensor<16xf32>
}

// CHECK-LABEL: func.func @exp_rowsum
// CHECK-NEXT:    %e = tensor.empty() : tensor<16x64xf32>
// CHECK-NEXT:    %r = "rdu.kernel"(%x, %init) <{kind = #rdu.pattern<reduce>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], {{.*}}, sym_name = "k2_reduce",
// CHECK-NEXT:    ^bb0(%0: f32, %1: f32):
// CHECK-NEXT:      %m = math.exp %0 : f32
// CHECK-NEXT:      %s = arith.addf %1, %m : f32
// CHECK-NEXT:      rdu.yield %s : f32

// The fused map is (producer map) o (consumer map), in that order. The producer
// P[p0, p1, p2] = -x[p1, p0, p2] is read as P[c0, c2, c1], so the kernel reads
// x[c2, c0, c1]: (d2, d0, d1). (The other order would give (d1, d2, d0).)

func.func @permutations(%x: tensor<2x3x4xf32>) -> tensor<3x4x2xf32> {
  %e = tensor.empty() : tensor<3x2x4xf32>
  %p = linalg.generic {indexing_maps = [affine_map<(a, b, c) -> (b, a, c)>, affine_map<(a, b, c) -> (a, b, c)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%x : tensor<2x3x4xf32>) outs(%e : tensor<3x2x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<3x2x4xf32>
  %e2 = tensor.empty() : tensor<3x4x2xf32>
  %q = linalg.generic {indexing_maps = [affine_map<(a, b, c) -> (a, c, b)>, affine_map<(a, b, c) -> (a, b, c)>], iterator_types = ["parallel", "parallel", "parallel"]} ins(%p : tensor<3x2x4xf32>) outs(%e2 : tensor<3x4x2xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = math.exp %in : f32
    linalg.yield %n : f32
  } -> tensor<3x4x2xf32>
  return %q : tensor<3x4x2xf32>
}

// CHECK-LABEL: func.func @permutations
// CHECK:         %q = "rdu.kernel"(%x, %e2) <{kind = #rdu.pattern<map>, domain = array<i64: 3, 4, 2>, indexing_maps = [affine_map<(d0, d1, d2) -> (d2, d0, d1)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>],
// CHECK-NOT:     "rdu.kernel"

// rdu.index of producer loop 0 becomes the index of the consumer loop that reads it
// (loop 1, as the consumer reads the producer transposed).

func.func @index_under_transpose() -> tensor<8x4xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %p = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<4x8xf32>) {
  ^bb0(%out: f32):
    %i = linalg.index 0 : index
    %ii = arith.index_cast %i : index to i64
    %f = arith.sitofp %ii : i64 to f32
    linalg.yield %f : f32
  } -> tensor<4x8xf32>
  %e2 = tensor.empty() : tensor<8x4xf32>
  %q = linalg.generic {indexing_maps = [affine_map<(i, j) -> (j, i)>, #id], iterator_types = ["parallel", "parallel"]} ins(%p : tensor<4x8xf32>) outs(%e2 : tensor<8x4xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<8x4xf32>
  return %q : tensor<8x4xf32>
}

// CHECK-LABEL: func.func @index_under_transpose
// CHECK:         %q = "rdu.kernel"(%e2) <{kind = #rdu.pattern<map>, domain = array<i64: 8, 4>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>], {{.*}} operandSegmentSizes = array<i32: 0, 1, 0>}> ({
// CHECK-NEXT:    ^bb0(%0: f32):
// CHECK-NEXT:      %1 = rdu.index 1 : index
// CHECK-NEXT:      %ii = arith.index_cast %1 : index to i64
// CHECK-NEXT:      %f = arith.sitofp %ii : i64 to f32
// CHECK-NEXT:      %n = arith.negf %f : f32
// CHECK-NEXT:      rdu.yield %n : f32

// A gather producer brings its capture (the table) along; the fused kernel is a gather.

func.func @gather_scale(%ids: tensor<4xi64>, %table: tensor<100x8xf32>, %w: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x8xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i)>, #id], iterator_types = ["parallel", "parallel"]} ins(%ids : tensor<4xi64>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%id: i64, %out: f32):
    %row = arith.index_cast %id : i64 to index
    %col = linalg.index 1 : index
    %v = tensor.extract %table[%row, %col] : tensor<100x8xf32>
    linalg.yield %v : f32
  } -> tensor<4x8xf32>
  %s = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%w, %r : tensor<4x8xf32>, tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%a: f32, %b: f32, %out: f32):
    %m = arith.mulf %a, %b : f32
    linalg.yield %m : f32
  } -> tensor<4x8xf32>
  return %s : tensor<4x8xf32>
}

// CHECK-LABEL: func.func @gather_scale
// CHECK-NEXT:    %e = tensor.empty() : tensor<4x8xf32>
// CHECK-NEXT:    %s = "rdu.kernel"(%ids, %w, %e, %table) <{kind = #rdu.pattern<gather>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], {{.*}} operandSegmentSizes = array<i32: 2, 1, 1>}> ({
// CHECK-NEXT:    ^bb0(%0: i64, %1: f32, %2: f32, %3: tensor<100x8xf32>):
// CHECK-NEXT:      %row = arith.index_cast %0 : i64 to index
// CHECK-NEXT:      %4 = rdu.index 1 : index
// CHECK-NEXT:      %v = tensor.extract %3[%row, %4] : tensor<100x8xf32>
// CHECK-NEXT:      %m = arith.mulf %1, %v : f32
// CHECK-NEXT:      rdu.yield %m : f32

// Not folded: a producer whose result is also returned (it has two uses) ...

func.func @two_uses(%x: tensor<16xf32>) -> (tensor<16xf32>, tensor<16xf32>) {
  %e = tensor.empty() : tensor<16xf32>
  %a = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]} ins(%x : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<16xf32>
  %b = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]} ins(%a : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = math.exp %in : f32
    linalg.yield %n : f32
  } -> tensor<16xf32>
  return %a, %b : tensor<16xf32>, tensor<16xf32>
}

// CHECK-LABEL: func.func @two_uses
// CHECK:         %a = "rdu.kernel"(%x, %e)
// CHECK:         %b = "rdu.kernel"(%a, %e)

// ... and a reduction, whose result is only complete after its whole loop.

func.func @rowsum_then_neg(%x: tensor<16x64xf32>, %init: tensor<16xf32>) -> tensor<16xf32> {
  %r = linalg.generic {indexing_maps = [#id, affine_map<(i, j) -> (i)>], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<16x64xf32>) outs(%init : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %s = arith.addf %out, %in : f32
    linalg.yield %s : f32
  } -> tensor<16xf32>
  %e = tensor.empty() : tensor<16xf32>
  %n = linalg.generic {indexing_maps = [affine_map<(i) -> (i)>, affine_map<(i) -> (i)>], iterator_types = ["parallel"]} ins(%r : tensor<16xf32>) outs(%e : tensor<16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %v = arith.negf %in : f32
    linalg.yield %v : f32
  } -> tensor<16xf32>
  return %n : tensor<16xf32>
}

// CHECK-LABEL: func.func @rowsum_then_neg
// CHECK:         %r = "rdu.kernel"(%x, %init) <{kind = #rdu.pattern<reduce>
// CHECK:         %n = "rdu.kernel"(%r, %e) <{kind = #rdu.pattern<map>

// A transpose feeding a matmul becomes the matmul's access pattern: the matmul reads A
// through (m, k), skipping n, which is allowed because a transpose has no FLOPs to
// recompute. A: 32x16 transposed to 16x32, so the fused map reads the original A as (k, m).

func.func @transpose_into_matmul(%a: tensor<32x16xf32>, %b: tensor<32x8xf32>) -> tensor<16x8xf32> {
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x32xf32>
  %t = linalg.transpose ins(%a : tensor<32x16xf32>) outs(%e : tensor<16x32xf32>) permutation = [1, 0]
  %o = tensor.empty() : tensor<16x8xf32>
  %f = linalg.fill ins(%cst : f32) outs(%o : tensor<16x8xf32>) -> tensor<16x8xf32>
  %m = linalg.matmul ins(%t, %b : tensor<16x32xf32>, tensor<32x8xf32>) outs(%f : tensor<16x8xf32>) -> tensor<16x8xf32>
  return %m : tensor<16x8xf32>
}

// CHECK-LABEL: func.func @transpose_into_matmul
// CHECK-NOT:     #rdu.pattern<transpose>
// CHECK:         "rdu.kernel"(%a, %b, %{{.*}}) <{kind = #rdu.pattern<matmul>, domain = array<i64: 16, 8, 32>, indexing_maps = [affine_map<(d0, d1, d2) -> (d2, d0)>, affine_map<(d0, d1, d2) -> (d2, d1)>, affine_map<(d0, d1, d2) -> (d0, d1)>]
// CHECK-SAME:    sym_name = "k5_matmul"

// An exp (one FLOP per element) read by a matmul through (m, k) is not folded: it would
// be recomputed for every n.

func.func @exp_not_into_matmul(%a: tensor<16x32xf32>, %b: tensor<32x8xf32>) -> tensor<16x8xf32> {
  %cst = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<16x32xf32>
  %x = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j)>, affine_map<(i, j) -> (i, j)>], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<16x32xf32>) outs(%e : tensor<16x32xf32>) {
  ^bb0(%in: f32, %out: f32):
    %y = math.exp %in : f32
    linalg.yield %y : f32
  } -> tensor<16x32xf32>
  %o = tensor.empty() : tensor<16x8xf32>
  %f = linalg.fill ins(%cst : f32) outs(%o : tensor<16x8xf32>) -> tensor<16x8xf32>
  %m = linalg.matmul ins(%x, %b : tensor<16x32xf32>, tensor<32x8xf32>) outs(%f : tensor<16x8xf32>) -> tensor<16x8xf32>
  return %m : tensor<16x8xf32>
}

// CHECK-LABEL: func.func @exp_not_into_matmul
// CHECK:         #rdu.pattern<map>
// CHECK:         #rdu.pattern<matmul>

// A windowed read (every other column from column 1, as a strided slice that
// rdu-fold-views has folded into the access pattern): the producer is folded and its
// payload runs only for the elements read.

func.func @window(%x: tensor<4x16xf32>) -> tensor<4x8xf32> {
  %e = tensor.empty() : tensor<4x16xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x16xf32>) outs(%e : tensor<4x16xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<4x16xf32>
  %e2 = tensor.empty() : tensor<4x8xf32>
  %b = linalg.generic {indexing_maps = [affine_map<(i, j) -> (i, j * 2 + 1)>, #id], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<4x16xf32>) outs(%e2 : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = math.exp %in : f32
    linalg.yield %m : f32
  } -> tensor<4x8xf32>
  return %b : tensor<4x8xf32>
}

// CHECK-LABEL: func.func @window
// CHECK-NEXT:    %e = tensor.empty() : tensor<4x16xf32>
// CHECK-NEXT:    %e2 = tensor.empty() : tensor<4x8xf32>
// CHECK-NEXT:    %b = "rdu.kernel"(%x, %e2) <{kind = #rdu.pattern<map>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, ((d1 * 2) + 1))>, affine_map<(d0, d1) -> (d0, d1)>]
// CHECK:           arith.negf
// CHECK-NEXT:      math.exp
// CHECK-NEXT:      rdu.yield
// CHECK-NEXT:    })
// CHECK-NEXT:    func.return %b

// A transpose (no arithmetic) read by two consumers is folded into both: each reads %x
// through the transposed map, and the transpose kernel is gone.

func.func @shared_transpose(%x: tensor<8x4xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
  %e = tensor.empty() : tensor<4x8xf32>
  %t = linalg.generic {indexing_maps = [affine_map<(i, j) -> (j, i)>, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<8x4xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    linalg.yield %in : f32
  } -> tensor<4x8xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %n = arith.negf %in : f32
    linalg.yield %n : f32
  } -> tensor<4x8xf32>
  %b = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%t : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%in: f32, %out: f32):
    %m = math.exp %in : f32
    linalg.yield %m : f32
  } -> tensor<4x8xf32>
  return %a, %b : tensor<4x8xf32>, tensor<4x8xf32>
}

// CHECK-LABEL: func.func @shared_transpose
// CHECK-NEXT:    %e = tensor.empty() : tensor<4x8xf32>
// CHECK-NEXT:    %a = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>]
// CHECK:           arith.negf
// CHECK:         %b = "rdu.kernel"(%x, %e) <{{.*}}indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>]
// CHECK:           math.exp
// CHECK:         func.return %a, %b

// A matmul into a zero fill: the accumulators start at the constant (init_fills names
// the capture holding it), the init is the fill's tensor.empty, and the fill kernel is
// gone. Two matmuls share the fill (torch-mlir CSEs it): both fold it.

func.func @fill_into_matmul(%a: tensor<4x8xf32>, %b: tensor<8x2xf32>, %c: tensor<8x2xf32>) -> (tensor<4x2xf32>, tensor<4x2xf32>) {
  %zero = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<4x2xf32>
  %f = linalg.fill ins(%zero : f32) outs(%e : tensor<4x2xf32>) -> tensor<4x2xf32>
  %m = linalg.matmul ins(%a, %b : tensor<4x8xf32>, tensor<8x2xf32>) outs(%f : tensor<4x2xf32>) -> tensor<4x2xf32>
  %n = linalg.matmul ins(%a, %c : tensor<4x8xf32>, tensor<8x2xf32>) outs(%f : tensor<4x2xf32>) -> tensor<4x2xf32>
  return %m, %n : tensor<4x2xf32>, tensor<4x2xf32>
}

// CHECK-LABEL: func.func @fill_into_matmul
// CHECK-NOT:     pattern<fill>
// CHECK:         %m = "rdu.kernel"(%a, %b, %e, %zero) <{kind = #rdu.pattern<matmul>{{.*}}init_fills = array<i64: 0>{{.*}}operandSegmentSizes = array<i32: 2, 1, 1>}>
// CHECK-NEXT:    ^bb0(%{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32, %{{.*}}: f32):
// CHECK-NOT:     pattern<fill>
// CHECK:         %n = "rdu.kernel"(%a, %c, %e, %zero) <{kind = #rdu.pattern<matmul>{{.*}}init_fills = array<i64: 0>

// A bf16 matmul operand: scale-and-narrow (arithmetic, bf16 result), then the matmul's
// widening extf (FLOP-free, read only by the matmul, skipping its n loop). The extf kernel
// takes no arithmetic producer: it folds into the matmul as an access pattern, and the
// scale kernel streams its own bf16 result (not the widened f32 one, twice the bytes).

#mk = affine_map<(m, n, k) -> (m, k)>
#kn = affine_map<(m, n, k) -> (k, n)>
#mn = affine_map<(m, n, k) -> (m, n)>

func.func @narrow_then_widen_into_matmul(%x: tensor<16x32xf32>, %w: tensor<32x8xbf16>) -> tensor<16x8xf32> {
  %e = tensor.empty() : tensor<16x32xbf16>
  %s = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<16x32xf32>) outs(%e : tensor<16x32xbf16>) {
  ^bb0(%in: f32, %out: bf16):
    %h = arith.mulf %in, %in : f32
    %t = arith.truncf %h : f32 to bf16
    linalg.yield %t : bf16
  } -> tensor<16x32xbf16>
  %e32 = tensor.empty() : tensor<16x32xf32>
  %w32 = tensor.empty() : tensor<32x8xf32>
  %a = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%s : tensor<16x32xbf16>) outs(%e32 : tensor<16x32xf32>) {
  ^bb0(%in: bf16, %out: f32):
    %x2 = arith.extf %in : bf16 to f32
    linalg.yield %x2 : f32
  } -> tensor<16x32xf32>
  %b = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]} ins(%w : tensor<32x8xbf16>) outs(%w32 : tensor<32x8xf32>) {
  ^bb0(%in: bf16, %out: f32):
    %x3 = arith.extf %in : bf16 to f32
    linalg.yield %x3 : f32
  } -> tensor<32x8xf32>
  %z = arith.constant 0.0 : f32
  %o = tensor.empty() : tensor<16x8xf32>
  %f = linalg.fill ins(%z : f32) outs(%o : tensor<16x8xf32>) -> tensor<16x8xf32>
  %m = linalg.generic {indexing_maps = [#mk, #kn, #mn], iterator_types = ["parallel", "parallel", "reduction"]} ins(%a, %b : tensor<16x32xf32>, tensor<32x8xf32>) outs(%f : tensor<16x8xf32>) {
  ^bb0(%p: f32, %q: f32, %acc: f32):
    %pq = arith.mulf %p, %q : f32
    %r = arith.addf %acc, %pq : f32
    linalg.yield %r : f32
  } -> tensor<16x8xf32>
  return %m : tensor<16x8xf32>
}

// CHECK-LABEL: func.func @narrow_then_widen_into_matmul
// CHECK:         %s = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>
// CHECK:           arith.truncf
// CHECK:         }) : (tensor<16x32xf32>, tensor<16x32xbf16>) -> tensor<16x32xbf16>
// CHECK:         "rdu.kernel"(%w, %s, {{.*}}) <{kind = #rdu.pattern<matmul>
// CHECK-NEXT:    ^bb0(%{{.*}}: bf16, %{{.*}}: bf16, %{{.*}}: f32, %{{.*}}: f32):
// CHECK-NOT:       arith.truncf
// CHECK:           arith.extf
// CHECK:           arith.extf
// CHECK:           arith.mulf
