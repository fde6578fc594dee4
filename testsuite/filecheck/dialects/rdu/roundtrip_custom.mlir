// RUN: rdu-opt %s | filecheck %s
// RUN: rdu-opt %s > %t.c1.mlir && rdu-opt %t.c1.mlir > %t.c2.mlir && cmp %t.c1.mlir %t.c2.mlir
// RUN: rdu-opt %s --print-op-generic > %t.g1.mlir && rdu-opt %t.g1.mlir --print-op-generic > %t.g2.mlir && cmp %t.g1.mlir %t.g2.mlir
// RUN: rdu-opt %t.g1.mlir | cmp %t.c1.mlir -
// RUN: %rdu-opt-generic-roundtrip

// The custom syntax of rdu.load, rdu.store, rdu.yield, rdu.index, rdu.view, rdu.concat
// and rdu.pad, written by hand: it parses, prints back the same (custom and generic
// form are each a fixed point of print -> parse -> print, and the generic form parses
// back to the same custom text), and CHECK-GENERIC names every property it stands for.

builtin.module attributes {rdu.fabric = "tiny"} {
  func.func @section(%x: tensor<4x8xf32>, %t: tensor<8xf32>) -> (tensor<32xf32>, tensor<4x8xf32>) {
    %e = tensor.empty() : tensor<4x8xf32>
    %0, %1 = "rdu.section"() <{sym_name = "s0", pcus_available = 8 : i64, pmus_available = 8 : i64, grid = array<i64: 4, 4>, routing = #rdu.routing<"dimension-order">}> ({
      %a = rdu.load %x from <ddr> agcu [2, -1] : tensor<4x8xf32> -> !rdu.stream<4x8xf32>
      %r = "rdu.kernel"(%a, %e, %t) <{kind = #rdu.pattern<gather>, domain = array<i64: 4, 8>, indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], operandSegmentSizes = array<i32: 1, 1, 1>}> ({
      ^bb0(%in: f32, %o: f32, %table: tensor<8xf32>):
        %i = rdu.index 1 : index
        %v = tensor.extract %table[%i] : tensor<8xf32>
        %m = arith.addf %in, %v : f32
        rdu.yield %m : f32
      }) : (!rdu.stream<4x8xf32>, tensor<4x8xf32>, tensor<8xf32>) -> !rdu.stream<4x8xf32>
      %flat = rdu.view %r <reshape> : !rdu.stream<4x8xf32> -> !rdu.stream<32xf32>
      %s0 = rdu.store %flat to <hbm> : !rdu.stream<32xf32> -> tensor<32xf32>
      %s1 = rdu.store %r to <hbm> agcu [1, 4] {note = "kept"} : !rdu.stream<4x8xf32> -> tensor<4x8xf32>
      rdu.yield %s0, %s1 : tensor<32xf32>, tensor<4x8xf32>
    }) : () -> (tensor<32xf32>, tensor<4x8xf32>)
    func.return %0, %1 : tensor<32xf32>, tensor<4x8xf32>
  }

// CHECK-LABEL: func.func @section
// CHECK:         routing = #rdu.routing<"dimension-order">
// CHECK-NEXT:      %a = rdu.load %x from <ddr> agcu [2, -1] : tensor<4x8xf32> -> !rdu.stream<4x8xf32>
// CHECK:             %i = rdu.index 1 : index
// CHECK:             rdu.yield %m : f32
// CHECK:           %flat = rdu.view %r <reshape> : !rdu.stream<4x8xf32> -> !rdu.stream<32xf32>
// CHECK-NEXT:      %s0 = rdu.store %flat to <hbm> : !rdu.stream<32xf32> -> tensor<32xf32>
// CHECK-NEXT:      %s1 = rdu.store %r to <hbm> agcu [1, 4] {note = "kept"} : !rdu.stream<4x8xf32> -> tensor<4x8xf32>
// CHECK-NEXT:      rdu.yield %s0, %s1 : tensor<32xf32>, tensor<4x8xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "section"
// CHECK-GENERIC:         routing = #rdu.routing<"dimension-order">
// CHECK-GENERIC:         %a = "rdu.load"(%x) <{tier = #rdu.tier<ddr>, agcu_sites = array<i64: 2, -1>}> : (tensor<4x8xf32>) -> !rdu.stream<4x8xf32>
// CHECK-GENERIC:         %i = "rdu.index"() <{dim = 1 : i64}> : () -> index
// CHECK-GENERIC:         "rdu.yield"(%m) : (f32) -> ()
// CHECK-GENERIC:         %flat = "rdu.view"(%r) <{mode = #rdu.view_mode<reshape>}> : (!rdu.stream<4x8xf32>) -> !rdu.stream<32xf32>
// CHECK-GENERIC:         %s1 = "rdu.store"(%r) <{tier = #rdu.tier<hbm>, agcu_sites = array<i64: 1, 4>}> {note = "kept"} : (!rdu.stream<4x8xf32>) -> tensor<4x8xf32>
// CHECK-GENERIC:         "rdu.yield"(%s0, %s1) : (tensor<32xf32>, tensor<4x8xf32>) -> ()

  func.func @layout(%x: tensor<4x8xf32>, %y: tensor<2x8xf32>) -> (tensor<4x2xf32>, tensor<8xf32>, tensor<6x8xf32>, tensor<7x10xf32>) {
    %s = rdu.view %x <slice> offsets [0, 1] sizes [4, 2] strides [1, 3] : tensor<4x8xf32> -> tensor<4x2xf32>
    %row = rdu.view %x <slice> offsets [3, 0] sizes [1, 8] strides [1, 1] : tensor<4x8xf32> -> tensor<8xf32>
    %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<6x8xf32>
    %zero = arith.constant 0.0 : f32
    %p = rdu.pad %x low [1, 2] high [2, 0] value %zero : tensor<4x8xf32>, f32 -> tensor<7x10xf32>
    func.return %s, %row, %c, %p : tensor<4x2xf32>, tensor<8xf32>, tensor<6x8xf32>, tensor<7x10xf32>
  }

// CHECK-LABEL: func.func @layout
// CHECK-NEXT:    %s = rdu.view %x <slice> offsets [0, 1] sizes [4, 2] strides [1, 3] : tensor<4x8xf32> -> tensor<4x2xf32>
// CHECK-NEXT:    %row = rdu.view %x <slice> offsets [3, 0] sizes [1, 8] strides [1, 1] : tensor<4x8xf32> -> tensor<8xf32>
// CHECK-NEXT:    %c = rdu.concat %x, %y dim 0 : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<6x8xf32>
// CHECK:         %p = rdu.pad %x low [1, 2] high [2, 0] value %zero : tensor<4x8xf32>, f32 -> tensor<7x10xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "layout"
// CHECK-GENERIC:         "rdu.view"(%x) <{mode = #rdu.view_mode<slice>, offsets = array<i64: 0, 1>, sizes = array<i64: 4, 2>, strides = array<i64: 1, 3>}> : (tensor<4x8xf32>) -> tensor<4x2xf32>
// CHECK-GENERIC:         "rdu.concat"(%x, %y) <{dim = 0 : i64}> : (tensor<4x8xf32>, tensor<2x8xf32>) -> tensor<6x8xf32>
// CHECK-GENERIC:         "rdu.pad"(%x, %zero) <{low = array<i64: 1, 2>, high = array<i64: 2, 0>}> : (tensor<4x8xf32>, f32) -> tensor<7x10xf32>
}

// rdu.send / rdu.recv between two stage programs (dialects/rdu/p2p.py).

func.func @forward_stage0(%x: tensor<4x8xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 0 : tensor<4x8xf32>
  func.return
}
func.func @forward_stage1() -> tensor<4x8xf32> attributes {rdu.stage = 1 : i64} {
  %y = rdu.recv from 0 channel 0 : tensor<4x8xf32>
  func.return %y : tensor<4x8xf32>
}

// CHECK: rdu.send %x to 1 channel 0 : tensor<4x8xf32>
// CHECK: %y = rdu.recv from 0 channel 0 : tensor<4x8xf32>
