// RUN: rdu-opt %s --split-input-file --verify-diagnostics | filecheck %s

// The hash_probe kernel's verifier (issue 16): one broken rule per chunk.

func.func @narrow_ids(%ids: tensor<8xi32>, %index: tensor<64x4x2xi64>) -> tensor<8xi32> {
  %e = tensor.empty() : tensor<8xi32>
  %r = "rdu.kernel"(%ids, %e, %index) <{kind = #rdu.pattern<hash_probe>, hash_seeds = array<i64: 1, 2>, domain = array<i64: 8>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%i: i32, %o: i32, %x: tensor<64x4x2xi64>):
    rdu.yield %o : i32
  }) : (tensor<8xi32>, tensor<8xi32>, tensor<64x4x2xi64>) -> tensor<8xi32>
  func.return %r : tensor<8xi32>
}

// CHECK: Operation does not verify: kernel 'k0' (hash_probe): the IDs must be 8 x i64 over a 1-d domain, got tensor<8xi32> over domain [8]; raw IDs are 64-bit and are never narrowed

// -----

func.func @buckets_not_a_power_of_two(%ids: tensor<8xi64>, %index: tensor<48x4x2xi64>) -> tensor<8xi64> {
  %e = tensor.empty() : tensor<8xi64>
  %r = "rdu.kernel"(%ids, %e, %index) <{kind = #rdu.pattern<hash_probe>, hash_seeds = array<i64: 1, 2>, domain = array<i64: 8>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%i: i64, %o: i64, %x: tensor<48x4x2xi64>):
    rdu.yield %o : i64
  }) : (tensor<8xi64>, tensor<8xi64>, tensor<48x4x2xi64>) -> tensor<8xi64>
  func.return %r : tensor<8xi64>
}

// CHECK: Operation does not verify: kernel 'k0' (hash_probe): the index must be tensor<Bx4x2xi64> (B buckets, a power of two, of 4 slots of ID and row), got tensor<48x4x2xi64>

// -----

func.func @no_seeds(%ids: tensor<8xi64>, %index: tensor<64x4x2xi64>) -> tensor<8xi64> {
  %e = tensor.empty() : tensor<8xi64>
  %r = "rdu.kernel"(%ids, %e, %index) <{kind = #rdu.pattern<hash_probe>, domain = array<i64: 8>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%i: i64, %o: i64, %x: tensor<64x4x2xi64>):
    rdu.yield %o : i64
  }) : (tensor<8xi64>, tensor<8xi64>, tensor<64x4x2xi64>) -> tensor<8xi64>
  func.return %r : tensor<8xi64>
}

// CHECK: Operation does not verify: kernel 'k0': a hash_probe kernel, and only a hash_probe kernel, has hash_seeds

// -----

func.func @payload_computes(%ids: tensor<8xi64>, %index: tensor<64x4x2xi64>) -> tensor<8xi64> {
  %e = tensor.empty() : tensor<8xi64>
  %r = "rdu.kernel"(%ids, %e, %index) <{kind = #rdu.pattern<hash_probe>, hash_seeds = array<i64: 1, 2>, domain = array<i64: 8>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%i: i64, %o: i64, %x: tensor<64x4x2xi64>):
    rdu.yield %i : i64
  }) : (tensor<8xi64>, tensor<8xi64>, tensor<64x4x2xi64>) -> tensor<8xi64>
  func.return %r : tensor<8xi64>
}

// CHECK: Operation does not verify: kernel 'k0' (hash_probe): the payload must only yield its init (the probe is the pattern's)

// -----

func.func @strided_ids(%ids: tensor<16xi64>, %index: tensor<64x4x2xi64>) -> tensor<8xi64> {
  %e = tensor.empty() : tensor<8xi64>
  %r = "rdu.kernel"(%ids, %e, %index) <{kind = #rdu.pattern<hash_probe>, hash_seeds = array<i64: 1, 2>, domain = array<i64: 8>, indexing_maps = [affine_map<(d0) -> (d0 * 2)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 1>}> ({
  ^bb0(%i: i64, %o: i64, %x: tensor<64x4x2xi64>):
    rdu.yield %o : i64
  }) : (tensor<16xi64>, tensor<8xi64>, tensor<64x4x2xi64>) -> tensor<8xi64>
  func.return %r : tensor<8xi64>
}

// CHECK: Operation does not verify: kernel 'k0' (hash_probe): the IDs must be 8 x i64 over a 1-d domain, got tensor<16xi64> over domain [8]; raw IDs are 64-bit and are never narrowed

// -----

func.func @miss_row_on_a_map(%x: tensor<8xi64>) -> tensor<8xi64> {
  %e = tensor.empty() : tensor<8xi64>
  %r = "rdu.kernel"(%x, %e) <{kind = #rdu.pattern<map>, miss_row = 3 : i64, domain = array<i64: 8>, indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>], iterator_types = [#linalg.iterator_type<parallel>], sym_name = "k0", operandSegmentSizes = array<i32: 1, 1, 0>}> ({
  ^bb0(%i: i64, %o: i64):
    rdu.yield %i : i64
  }) : (tensor<8xi64>, tensor<8xi64>) -> tensor<8xi64>
  func.return %r : tensor<8xi64>
}

// CHECK: Operation does not verify: kernel 'k0': only a hash_probe kernel has a miss_row
