// RUN: rdu-opt %s | rdu-opt | filecheck %s
// RUN: %rdu-opt-roundtrip
// RUN: %rdu-opt-generic-roundtrip

// Every rdu op, attribute and type, parsed (here in generic form) and printed back.
// rdu.load/store/yield/index/view/concat/pad print in their custom syntax (CHECK);
// rdu.section and rdu.kernel keep the generic form. CHECK-GENERIC checks the generic
// form of every op. roundtrip_custom.mlir parses the custom syntax.

builtin.module attributes {rdu.fabric = "tiny"} {

// A section after rdu-place: load, a gather-style map kernel with a capture,
// rdu.index, tensor.extract in the payload, store, and every optional kernel property.

  func.func @section(%x: tensor<16x64xf32>, %t: tensor<100xf32>) -> tensor<16x64xf32> {
    %e = tensor.empty() : tensor<16x64xf32>
    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, reason = "end of program", grid = array<i64: 4, 4>, routing = #rdu.routing<balanced>}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>, agcu_sites = array<i64: 2, -1>}> : (tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
      %r = "rdu.kernel"(%a, %e, %t) <{kind = #rdu.pattern<gather>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>, tile = array<i64: 16, 32>, pcus = 2 : i64, buffers = [#rdu.buffer<2048, 1, 16384, 2>, #rdu.buffer<2048, 1, 16384, 2>], capture_tiers = [#rdu.tier<ddr>], pcu_sites = array<i64: 0, 0, 1, 1>, pmu_sites = array<i64: 0, 1, 1, 0>}> ({
      ^bb0(%in: f32, %o: f32, %table: tensor<100xf32>):
        %i = "rdu.index"() <{dim = 1 : i64}> : () -> index
        %v = "tensor.extract"(%table, %i) : (tensor<100xf32>, index) -> f32
        %m = "arith.maximumf"(%in, %v) : (f32, f32) -> f32
        "rdu.yield"(%m) : (f32) -> ()
      }) : (!rdu.stream<16x64xf32>, tensor<16x64xf32>, tensor<100xf32>) -> !rdu.stream<16x64xf32>
      %s = "rdu.store"(%r) <{tier = #rdu.tier<ddr>, agcu_sites = array<i64: 2, 4>}> : (!rdu.stream<16x64xf32>) -> tensor<16x64xf32>
      "rdu.yield"(%s) : (tensor<16x64xf32>) -> ()
    }) : () -> tensor<16x64xf32>
    func.return %0 : tensor<16x64xf32>
  }

// CHECK-LABEL: func.func @section(%x: tensor<16x64xf32>, %t: tensor<100xf32>) -> tensor<16x64xf32> {
// CHECK-NEXT:    %e = tensor.empty() : tensor<16x64xf32>
// CHECK-NEXT:    %0 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, reason = "end of program", grid = array<i64: 4, 4>, routing = #rdu.routing<balanced>}> ({
// CHECK-NEXT:      %a = rdu.load %x from <hbm> agcu [2, -1] : tensor<16x64xf32> -> !rdu.stream<16x64xf32>
// CHECK-NEXT:      %r = "rdu.kernel"(%a, %e, %t) <{kind = #rdu.pattern<gather>, domain = array<i64: 16, 64>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>, tile = array<i64: 16, 32>, pcus = 2 : i64, buffers = [#rdu.buffer<2048, 1, 16384, 2>, #rdu.buffer<2048, 1, 16384, 2>], capture_tiers = [#rdu.tier<ddr>], pcu_sites = array<i64: 0, 0, 1, 1>, pmu_sites = array<i64: 0, 1, 1, 0>}> ({
// CHECK-NEXT:      ^bb0(%in: f32, %o: f32, %table: tensor<100xf32>):
// CHECK-NEXT:        %i = rdu.index 1 : index
// CHECK-NEXT:        %v = tensor.extract %table[%i] : tensor<100xf32>
// CHECK-NEXT:        %m = arith.maximumf %in, %v : f32
// CHECK-NEXT:        rdu.yield %m : f32
// CHECK-NEXT:      }) : (!rdu.stream<16x64xf32>, tensor<16x64xf32>, tensor<100xf32>) -> !rdu.stream<16x64xf32>
// CHECK-NEXT:      %s = rdu.store %r to <ddr> agcu [2, 4] : !rdu.stream<16x64xf32> -> tensor<16x64xf32>
// CHECK-NEXT:      rdu.yield %s : tensor<16x64xf32>
// CHECK-NEXT:    }) : () -> tensor<16x64xf32>
// CHECK-NEXT:    func.return %0 : tensor<16x64xf32>
// CHECK-NEXT:  }

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "section"
// CHECK-GENERIC:         %e = "tensor.empty"() : () -> tensor<16x64xf32>
// CHECK-GENERIC:         "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, reason = "end of program", grid = array<i64: 4, 4>, routing = #rdu.routing<balanced>}> ({
// CHECK-GENERIC:           "rdu.load"(%x) <{tier = #rdu.tier<hbm>, agcu_sites = array<i64: 2, -1>}> : (tensor<16x64xf32>) -> !rdu.stream<16x64xf32>
// CHECK-GENERIC:           "rdu.kernel"(%a, %e, %t) <{kind = #rdu.pattern<gather>,
// CHECK-GENERIC:             "rdu.index"() <{dim = 1 : i64}> : () -> index
// CHECK-GENERIC:             "tensor.extract"(%table, %i) : (tensor<100xf32>, index) -> f32
// CHECK-GENERIC:             "arith.maximumf"(%in, %v) <{fastmath = #arith.fastmath<none>}> : (f32, f32) -> f32
// CHECK-GENERIC:             "rdu.yield"(%m) : (f32) -> ()
// CHECK-GENERIC:           "rdu.store"(%r) <{tier = #rdu.tier<ddr>, agcu_sites = array<i64: 2, 4>}> : (!rdu.stream<16x64xf32>) -> tensor<16x64xf32>
// CHECK-GENERIC:           "rdu.yield"(%s) : (tensor<16x64xf32>) -> ()
// CHECK-GENERIC:         "func.return"(%0) : (tensor<16x64xf32>) -> ()

// Two kernels connected by a stream, a reshape view of a stream, a scan kernel with
// its scan properties, and the remaining pattern kinds.

  func.func @streams(%x: tensor<4x8xf32>) -> (tensor<32xf32>, tensor<4x8xf32>) {
    %e = tensor.empty() : tensor<4x8xf32>
    %acc = tensor.empty() : tensor<4xf32>
    %0:2 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
      %a = "rdu.load"(%x) <{tier = #rdu.tier<hbm>}> : (tensor<4x8xf32>) -> !rdu.stream<4x8xf32>
      %t = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<transpose>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], operandSegmentSizes = array<i32: 1, 1, 0>}> ({
      ^bb0(%in: f32, %o: f32):
        "rdu.yield"(%in) : (f32) -> ()
      }) : (!rdu.stream<4x8xf32>, tensor<4x8xf32>) -> !rdu.stream<4x8xf32>
      %c:2 = "rdu.kernel"(%t, %e, %acc) <{kind = #rdu.pattern<scan>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], scan_dim = 1 : i64, scan_inclusive = 1 : i64, operandSegmentSizes = array<i32: 1, 2, 0>}> ({
      ^bb0(%in: f32, %o: f32, %prev: f32):
        %sum = "arith.addf"(%prev, %in) : (f32, f32) -> f32
        "rdu.yield"(%sum, %sum) : (f32, f32) -> ()
      }) : (!rdu.stream<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (!rdu.stream<4x8xf32>, !rdu.stream<4xf32>)
      %flat = "rdu.view"(%c#0) <{mode = #rdu.view_mode<reshape>}> : (!rdu.stream<4x8xf32>) -> !rdu.stream<32xf32>
      %s0 = "rdu.store"(%flat) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<32xf32>) -> tensor<32xf32>
      %s1 = "rdu.store"(%t) <{tier = #rdu.tier<hbm>}> : (!rdu.stream<4x8xf32>) -> tensor<4x8xf32>
      "rdu.yield"(%s0, %s1) : (tensor<32xf32>, tensor<4x8xf32>) -> ()
    }) : () -> (tensor<32xf32>, tensor<4x8xf32>)
    func.return %0#0, %0#1 : tensor<32xf32>, tensor<4x8xf32>
  }

// CHECK-LABEL: func.func @streams(%x: tensor<4x8xf32>) -> (tensor<32xf32>, tensor<4x8xf32>) {
// CHECK:         %0, %1 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64}> ({
// CHECK-NEXT:      %a = rdu.load %x from <hbm> : tensor<4x8xf32> -> !rdu.stream<4x8xf32>
// CHECK-NEXT:      %t = "rdu.kernel"(%a, %e) <{kind = #rdu.pattern<transpose>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], operandSegmentSizes = array<i32: 1, 1, 0>}> ({
// CHECK-NEXT:      ^bb0(%in: f32, %o: f32):
// CHECK-NEXT:        rdu.yield %in : f32
// CHECK-NEXT:      }) : (!rdu.stream<4x8xf32>, tensor<4x8xf32>) -> !rdu.stream<4x8xf32>
// CHECK-NEXT:      %c, %c_1 = "rdu.kernel"(%t, %e, %acc) <{kind = #rdu.pattern<scan>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], scan_dim = 1 : i64, scan_inclusive = 1 : i64, operandSegmentSizes = array<i32: 1, 2, 0>}> ({
// CHECK-NEXT:      ^bb0(%in_1: f32, %o_1: f32, %prev: f32):
// CHECK-NEXT:        %sum = arith.addf %prev, %in_1 : f32
// CHECK-NEXT:        rdu.yield %sum, %sum : f32, f32
// CHECK-NEXT:      }) : (!rdu.stream<4x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> (!rdu.stream<4x8xf32>, !rdu.stream<4xf32>)
// CHECK-NEXT:      %flat = rdu.view %c <reshape> : !rdu.stream<4x8xf32> -> !rdu.stream<32xf32>
// CHECK-NEXT:      %s0 = rdu.store %flat to <hbm> : !rdu.stream<32xf32> -> tensor<32xf32>
// CHECK-NEXT:      %s1 = rdu.store %t to <hbm> : !rdu.stream<4x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:      rdu.yield %s0, %s1 : tensor<32xf32>, tensor<4x8xf32>
// CHECK-NEXT:    }) : () -> (tensor<32xf32>, tensor<4x8xf32>)

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "streams"
// CHECK-GENERIC:         "rdu.kernel"({{.*}}) <{kind = #rdu.pattern<scan>, {{.*}}, scan_dim = 1 : i64, scan_inclusive = 1 : i64,
// CHECK-GENERIC:         "rdu.view"(%c) <{mode = #rdu.view_mode<reshape>}> : (!rdu.stream<4x8xf32>) -> !rdu.stream<32xf32>

// Layout ops on tensors: rdu.view (reshape and slice), rdu.concat, rdu.pad.

  func.func @layout(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> tensor<6x10xf32> {
    %r = "rdu.view"(%x) <{mode = #rdu.view_mode<reshape>}> : (tensor<4x8xf32>) -> tensor<32xf32>
    %s = "rdu.view"(%x) <{mode = #rdu.view_mode<slice>, offsets = array<i64: 0, 1>, sizes = array<i64: 4, 4>, strides = array<i64: 1, 2>}> : (tensor<4x8xf32>) -> tensor<4x4xf32>
    %c = "rdu.concat"(%x, %y) <{dim = 0 : i64}> : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
    %zero = arith.constant 0.0 : f32
    %p = "rdu.pad"(%x, %zero) <{low = array<i64: 1, 1>, high = array<i64: 1, 1>}> : (tensor<4x8xf32>, f32) -> tensor<6x10xf32>
    func.return %p : tensor<6x10xf32>
  }

// CHECK-LABEL: func.func @layout(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> tensor<6x10xf32> {
// CHECK-NEXT:    %r = rdu.view %x <reshape> : tensor<4x8xf32> -> tensor<32xf32>
// CHECK-NEXT:    %s = rdu.view %x <slice> offsets [0, 1] sizes [4, 4] strides [1, 2] : tensor<4x8xf32> -> tensor<4x4xf32>
// CHECK-NEXT:    %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
// CHECK-NEXT:    %zero = arith.constant 0.000000e+00 : f32
// CHECK-NEXT:    %p = rdu.pad %x low [1, 1] high [1, 1] value %zero : tensor<4x8xf32>, f32 -> tensor<6x10xf32>
// CHECK-NEXT:    func.return %p : tensor<6x10xf32>
// CHECK-NEXT:  }

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "layout"
// CHECK-GENERIC:         "rdu.concat"(%x, %y) <{dim = 0 : i64}> : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<8x8xf32>
// CHECK-GENERIC:         %zero = "arith.constant"() <{value = 0.000000e+00 : f32}> : () -> f32
// CHECK-GENERIC:         "rdu.pad"(%x, %zero) <{low = array<i64: 1, 1>, high = array<i64: 1, 1>}> : (tensor<4x8xf32>, f32) -> tensor<6x10xf32>

// Every pattern kind and tier, a buffer and a stream type as plain attributes.

  func.func @patterns() attributes {kinds = [#rdu.pattern<map>, #rdu.pattern<fill>, #rdu.pattern<transpose>, #rdu.pattern<reduce>, #rdu.pattern<matmul>, #rdu.pattern<gather>, #rdu.pattern<scan>], tiers = [#rdu.tier<hbm>, #rdu.tier<ddr>], routings = [#rdu.routing<balanced>, #rdu.routing<"dimension-order">], modes = [#rdu.view_mode<reshape>, #rdu.view_mode<slice>], buffer = #rdu.buffer<0, 0, 16384, 2>, stream = !rdu.stream<2x3x4xbf16>} {
    func.return
  }

// CHECK-LABEL: func.func @patterns()
// CHECK-SAME:    kinds = [#rdu.pattern<map>, #rdu.pattern<fill>, #rdu.pattern<transpose>, #rdu.pattern<reduce>, #rdu.pattern<matmul>, #rdu.pattern<gather>, #rdu.pattern<scan>]
// CHECK-SAME:    tiers = [#rdu.tier<hbm>, #rdu.tier<ddr>]
// CHECK-SAME:    routings = [#rdu.routing<balanced>, #rdu.routing<"dimension-order">]
// CHECK-SAME:    modes = [#rdu.view_mode<reshape>, #rdu.view_mode<slice>]
// CHECK-SAME:    buffer = #rdu.buffer<0, 0, 16384, 2>
// CHECK-SAME:    stream = !rdu.stream<2x3x4xbf16>

}
