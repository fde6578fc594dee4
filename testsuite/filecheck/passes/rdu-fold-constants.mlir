// RUN: %chunk(0) | rdu-opt -p rdu-fold-constants | filecheck %s
// RUN: %chunk(0) | rdu-opt -p rdu-fold-constants,rdu-convert-linalg | filecheck %s --check-prefix=CONVERT
// RUN: %chunk(1) | not rdu-opt -p rdu-fold-constants 2>&1 | filecheck %s --check-prefix=FAILS
// RUN: %chunk(2) | rdu-opt -p rdu-fold-constants | filecheck %s --check-prefix=KEPT

// rdu-fold-constants evaluates function-level scalar code and shape checks on constants
// (torch-mlir's guards: concat -> extract_slice -> extract -> cmpi -> cf.assert). Each
// folded op becomes an arith.constant in its place, so every op keeps its position (the
// "op #i" of later messages and the k<i> kernel names); a check that holds keeps its
// constant-true condition and rdu-convert-linalg drops it.

func.func @shape_check(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %a = arith.constant dense<[4, 8]> : tensor<2xi64>
  %b = arith.constant dense<[2]> : tensor<1xi64>
  %shape = tensor.concat dim(0) %a, %b : (tensor<2xi64>, tensor<1xi64>) -> tensor<3xi64>
  %head = tensor.extract_slice %shape[0] [2] [1] : tensor<3xi64> to tensor<2xi64>
  %i1 = arith.constant 1 : index
  %n = tensor.extract %head[%i1] : tensor<2xi64>
  %c8 = arith.constant 8 : i64
  %ok = arith.cmpi eq, %n, %c8 : i64
  cf.assert %ok, "mismatching contracting dimension"
  %two = arith.constant 2.0 : f32
  %half = arith.constant 0.5 : f32
  %one = arith.mulf %two, %half : f32
  %e = tensor.empty() : tensor<4x8xf32>
  %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
  ^bb0(%in: f32, %o: f32):
    %s = arith.mulf %in, %one : f32
    linalg.yield %s : f32
  } -> tensor<4x8xf32>
  func.return %r : tensor<4x8xf32>
}

// CHECK-LABEL: func.func @shape_check
// CHECK-NEXT:    %a = arith.constant dense<[4, 8]> : tensor<2xi64>
// CHECK-NEXT:    %b = arith.constant dense<2> : tensor<1xi64>
// CHECK-NEXT:    %shape = arith.constant dense<[4, 8, 2]> : tensor<3xi64>
// CHECK-NEXT:    %head = arith.constant dense<[4, 8]> : tensor<2xi64>
// CHECK-NEXT:    %i1 = arith.constant 1 : index
// CHECK-NEXT:    %n = arith.constant 8 : i64
// CHECK-NEXT:    %c8 = arith.constant 8 : i64
// CHECK-NEXT:    %ok = arith.constant true
// CHECK-NEXT:    cf.assert %ok, "mismatching contracting dimension"
// CHECK-NEXT:    %two = arith.constant 2.000000e+00 : f32
// CHECK-NEXT:    %half = arith.constant 5.000000e-01 : f32
// CHECK-NEXT:    %one = arith.constant 1.000000e+00 : f32
// CHECK-NEXT:    %e = tensor.empty() : tensor<4x8xf32>
// CHECK-NEXT:    %r = linalg.generic

// The generic is op #13 of the input, so its kernel is k13 whatever was folded.
// CONVERT-LABEL: func.func @shape_check
// CONVERT-NOT:     cf.assert
// CONVERT:         "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, {{.*}}sym_name = "k13_map"
// CONVERT:           %one_1 = arith.constant 1.000000e+00 : f32
// CONVERT-NEXT:      %s = arith.mulf %in, %one_1 : f32
// CONVERT-NOT:     cf.assert

// -----

// A check that fails for every input is refused, naming the op and its message.

func.func @always_fails() {
  %c2 = arith.constant 2 : i64
  %c3 = arith.constant 3 : i64
  %ok = arith.cmpi eq, %c2, %c3 : i64
  cf.assert %ok, "mismatching sizes"
  func.return
}

// FAILS: error: rdu-fold-constants: runtime check (op #3 of @always_fails) fails for every input: mismatching sizes

// -----

// Only the scalar side folds: a constant tensor a kernel reads stays (the reshape of it
// is computation), as does a check on an input, and a tensor over 4096 elements (and so
// what reads it).

func.func @kept(%x: tensor<4xf32>, %i: index) -> tensor<2x2xf32> {
  %w = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %v = tensor.expand_shape %w [[0, 1]] output_shape [2, 2] : tensor<4xf32> into tensor<2x2xf32>
  %big = arith.constant dense<1> : tensor<8192xi64>
  %big2 = tensor.expand_shape %big [[0, 1]] output_shape [2, 4096] : tensor<8192xi64> into tensor<2x4096xi64>
  %c0 = arith.constant 0 : index
  %first = tensor.extract %big2[%c0, %c0] : tensor<2x4096xi64>
  %xi = tensor.extract %x[%i] : tensor<4xf32>
  %zero = arith.constant 0.0 : f32
  %pos = arith.cmpf oge, %xi, %zero : f32
  cf.assert %pos, "negative input"
  func.return %v : tensor<2x2xf32>
}

// KEPT-LABEL: func.func @kept
// KEPT:         %v = tensor.expand_shape %w
// KEPT:         %big2 = tensor.expand_shape %big
// KEPT:         %first = tensor.extract %big2
// KEPT:         %pos = arith.cmpf oge, %xi, %zero : f32
// KEPT-NEXT:    cf.assert %pos, "negative input"
