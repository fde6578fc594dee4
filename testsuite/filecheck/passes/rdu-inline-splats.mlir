// RUN: rdu-opt %s -p 'rdu-convert-linalg,rdu-inline-splats' | filecheck %s

// rdu-inline-splats: a splat constant a kernel reads is one scalar, not a tensor loaded
// from HBM. An input becomes a constant in the payload; the splat init of a
// reduction becomes the accumulators' start (init_fills) and its init a tensor.empty.

#id = affine_map<(i, j) -> (i, j)>
#red_in = affine_map<(i, j) -> (i, j)>
#red_out = affine_map<(i, j) -> (i)>

func.func @select_with_mask(%x: tensor<64x64xf32>) -> tensor<64x64xf32> {
  %mask = arith.constant dense<true> : tensor<64x64xi1>
  %e = tensor.empty() : tensor<64x64xf32>
  %r = linalg.generic {indexing_maps = [#id, #id, #id], iterator_types = ["parallel", "parallel"]} ins(%mask, %x : tensor<64x64xi1>, tensor<64x64xf32>) outs(%e : tensor<64x64xf32>) {
  ^bb0(%m: i1, %v: f32, %out: f32):
    %z = arith.constant 0.0 : f32
    %s = arith.select %m, %v, %z : f32
    linalg.yield %s : f32
  } -> tensor<64x64xf32>
  return %r : tensor<64x64xf32>
}

// CHECK-LABEL: func.func @select_with_mask
// CHECK-NOT:     dense<true> : tensor<64x64xi1>
// CHECK:         "rdu.kernel"(%{{.*}}, %{{.*}})
// CHECK-SAME:    operandSegmentSizes = array<i32: 1, 1, 0>
// CHECK:         ^bb0(%[[V:.*]]: f32, %{{.*}}: f32):
// CHECK:           %[[C:.*]] = arith.constant true
// CHECK:           arith.select %[[C]], %[[V]]

func.func @sum_from_splat_init(%x: tensor<64x64xf32>) -> tensor<64xf32> {
  %init = arith.constant dense<0.0> : tensor<64xf32>
  %r = linalg.generic {indexing_maps = [#red_in, #red_out], iterator_types = ["parallel", "reduction"]} ins(%x : tensor<64x64xf32>) outs(%init : tensor<64xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %s = arith.addf %acc, %v : f32
    linalg.yield %s : f32
  } -> tensor<64xf32>
  return %r : tensor<64xf32>
}

// CHECK-LABEL: func.func @sum_from_splat_init
// CHECK:         %[[Z:.*]] = arith.constant 0.000000e+00 : f32
// CHECK:         %[[E:.*]] = tensor.empty() : tensor<64xf32>
// CHECK:         "rdu.kernel"(%{{.*}}, %[[E]], %[[Z]])
// CHECK-SAME:    init_fills = array<i64: 0>
