// RUN: %chunk(0) | not rdu-opt 2>&1 | filecheck %s --check-prefix=ROUTING
// RUN: %chunk(1) | not rdu-opt 2>&1 | filecheck %s --check-prefix=MODE
// RUN: %chunk(2) | not rdu-opt 2>&1 | filecheck %s --check-prefix=TIER

// The enum attributes accept only their values; the parse error lists them.

func.func @f() attributes {r = #rdu.routing<adaptive>} {
  func.return
}

// ROUTING: Expected `balanced`, or `dimension-order`.

// -----

func.func @g(%x: tensor<4x8xf32>) -> tensor<32xf32> {
  %r = rdu.view %x <flatten> : tensor<4x8xf32> -> tensor<32xf32>
  func.return %r : tensor<32xf32>
}

// MODE: Expected `reshape`, or `slice`.

// -----

func.func @h() attributes {t = #rdu.tier<sram>} {
  func.return
}

// TIER: Expected `hbm`, or `ddr`.
