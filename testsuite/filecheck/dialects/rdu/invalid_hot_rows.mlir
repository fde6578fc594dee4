// RUN: rdu-opt %s --split-input-file --verify-diagnostics | filecheck %s

// The hot_rows / hot_fraction properties rdu-tier-rows sets (issue 16): one broken rule per chunk.

func.func @missing_fraction(%ids: tensor<8xi64>, %rows: tensor<16x16xf32>) -> tensor<8x16xf32> {
  %e = tensor.empty() : tensor<8x16xf32>
  %r = "rdu.kernel"(%ids, %e, %rows) <{kind = #rdu.pattern<gather>, domain = array<i64: 8, 16>, indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1", operandSegmentSizes = array<i32: 1, 1, 1>, hot_rows = 4 : i64}> ({
  ^bb0(%i: i64, %o: f32, %t: tensor<16x16xf32>):
    %row = arith.index_cast %i : i64 to index
    %col = rdu.index 1 : index
    %v = tensor.extract %t[%row, %col] : tensor<16x16xf32>
    rdu.yield %v : f32
  }) : (tensor<8xi64>, tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %r : tensor<8x16xf32>
}

// CHECK: Operation does not verify: kernel 'k1': hot_rows and hot_fraction go together (rdu-tier-rows sets both)

// -----

func.func @too_many_hot_rows(%ids: tensor<8xi64>, %rows: tensor<16x16xf32>) -> tensor<8x16xf32> {
  %e = tensor.empty() : tensor<8x16xf32>
  %r = "rdu.kernel"(%ids, %e, %rows) <{kind = #rdu.pattern<gather>, domain = array<i64: 8, 16>, indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1", operandSegmentSizes = array<i32: 1, 1, 1>, hot_rows = 17 : i64, hot_fraction = 0.5 : f64}> ({
  ^bb0(%i: i64, %o: f32, %t: tensor<16x16xf32>):
    %row = arith.index_cast %i : i64 to index
    %col = rdu.index 1 : index
    %v = tensor.extract %t[%row, %col] : tensor<16x16xf32>
    rdu.yield %v : f32
  }) : (tensor<8xi64>, tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %r : tensor<8x16xf32>
}

// CHECK: Operation does not verify: kernel 'k1': hot_rows = 17, hot_fraction = 0.5 need one 2-d table capture, 0 <= hot_rows <= its rows and 0 <= hot_fraction <= 1 (capture shape [16, 16])

// -----

func.func @fraction_above_one(%ids: tensor<8xi64>, %rows: tensor<16x16xf32>) -> tensor<8x16xf32> {
  %e = tensor.empty() : tensor<8x16xf32>
  %r = "rdu.kernel"(%ids, %e, %rows) <{kind = #rdu.pattern<gather>, domain = array<i64: 8, 16>, indexing_maps = [affine_map<(d0, d1) -> (d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = [#linalg.iterator_type<parallel>, #linalg.iterator_type<parallel>], sym_name = "k1", operandSegmentSizes = array<i32: 1, 1, 1>, hot_rows = 4 : i64, hot_fraction = 1.5 : f64}> ({
  ^bb0(%i: i64, %o: f32, %t: tensor<16x16xf32>):
    %row = arith.index_cast %i : i64 to index
    %col = rdu.index 1 : index
    %v = tensor.extract %t[%row, %col] : tensor<16x16xf32>
    rdu.yield %v : f32
  }) : (tensor<8xi64>, tensor<8x16xf32>, tensor<16x16xf32>) -> tensor<8x16xf32>
  func.return %r : tensor<8x16xf32>
}

// CHECK: Operation does not verify: kernel 'k1': hot_rows = 4, hot_fraction = 1.5 need one 2-d table capture

