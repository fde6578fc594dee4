// RUN: rdu-opt %s --split-input-file --verify-diagnostics | filecheck %s

// rdu.send / rdu.recv between pipeline stages: each rule of the op verifiers and of the
// module-wide check (`p2p.verify_channels`: matching and deadlock), one chunk each.

func.func @no_stage(%x: tensor<4xf32>) {
  rdu.send %x to 1 channel 0 : tensor<4xf32>
  func.return
}

// CHECK: rdu.send of channel 0 is in a function without `rdu.stage`; a transfer belongs to a stage program

// -----

func.func @self(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 0 channel 0 : tensor<4xf32>
  func.return
}

// CHECK: rdu.send of channel 0 in stage 0 names its own stage as peer; a transfer goes to another stage

// -----

// A send nobody receives.

func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 7 : tensor<4xf32>
  func.return
}
func.func @s1() attributes {rdu.stage = 1 : i64} {
  func.return
}

// CHECK: channel 7 has 1 rdu.send and 0 rdu.recv (stage 0 rdu.send to stage 1 (tensor<4xf32>)), so a transfer would never complete

// -----

// A recv nobody sends to (no send in the module at all).

func.func @s1() -> tensor<4xf32> attributes {rdu.stage = 1 : i64} {
  %y = rdu.recv from 0 channel 3 : tensor<4xf32>
  func.return %y : tensor<4xf32>
}

// CHECK: channel 3 has 0 rdu.send and 1 rdu.recv (stage 1 rdu.recv from stage 0 (tensor<4xf32>))

// -----

// Same channel, different shapes.

func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 0 : tensor<4xf32>
  func.return
}
func.func @s1() -> tensor<8xf32> attributes {rdu.stage = 1 : i64} {
  %y = rdu.recv from 0 channel 0 : tensor<8xf32>
  func.return %y : tensor<8xf32>
}

// CHECK: channel 0 does not match: the send carries tensor<4xf32> but the recv expects tensor<8xf32>

// -----

// Same channel, the recv names the wrong peer; and a dtype mismatch.

func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 0 : tensor<4xf32>
  func.return
}
func.func @s1() -> tensor<4xf16> attributes {rdu.stage = 1 : i64} {
  %y = rdu.recv from 2 channel 0 : tensor<4xf16>
  func.return %y : tensor<4xf16>
}

// CHECK: channel 0 does not match: the recv expects stage 2 but the send is in stage 0; the send carries tensor<4xf32> but the recv expects tensor<4xf16>

// -----

// Two stages each receive before they send: every transfer matches, none can start.

func.func @s0(%x: tensor<4xf32>) -> tensor<4xf32> attributes {rdu.stage = 0 : i64} {
  %y = rdu.recv from 1 channel 1 : tensor<4xf32>
  rdu.send %x to 1 channel 0 : tensor<4xf32>
  func.return %y : tensor<4xf32>
}
func.func @s1(%x: tensor<4xf32>) -> tensor<4xf32> attributes {rdu.stage = 1 : i64} {
  %y = rdu.recv from 0 channel 0 : tensor<4xf32>
  rdu.send %x to 0 channel 1 : tensor<4xf32>
  func.return %y : tensor<4xf32>
}

// CHECK: the stage programs deadlock: stage 0 rdu.recv from stage 1 (tensor<4xf32>) waits on channel 1; stage 1 rdu.recv from stage 0 (tensor<4xf32>) waits on channel 0.

// -----

// Crossed order: stage 0 sends channel 0 then 1, stage 1 receives 1 then 0 (a send
// completes only at its recv, so both wait).

func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 0 : tensor<4xf32>
  rdu.send %x to 1 channel 1 : tensor<4xf32>
  func.return
}
func.func @s1() -> tensor<4xf32> attributes {rdu.stage = 1 : i64} {
  %a = rdu.recv from 0 channel 1 : tensor<4xf32>
  %b = rdu.recv from 0 channel 0 : tensor<4xf32>
  func.return %a : tensor<4xf32>
}

// CHECK: the stage programs deadlock: stage 0 rdu.send to stage 1 (tensor<4xf32>) waits on channel 0; stage 1 rdu.recv from stage 0 (tensor<4xf32>) waits on channel 1.

// -----

func.func @a(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
  rdu.send %x to 1 channel 0 : tensor<4xf32>
  func.return
}
func.func @b() attributes {rdu.stage = 0 : i64} {
  func.return
}

// CHECK: functions @a and @b are both rdu.stage = 0; give each stage program its own stage

// -----

// TP x PP: two stages of tp = 4 sockets need 8 of sn40l-node8's 8 (fine); three need 12.

builtin.module attributes {rdu.fabric = "sn40l-node8", rdu.tp = 4 : i64} {
  func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
    rdu.send %x to 1 channel 0 : tensor<4xf32>
    func.return
  }
  func.func @s1() attributes {rdu.stage = 1 : i64} {
    %y = rdu.recv from 0 channel 0 : tensor<4xf32>
    rdu.send %y to 2 channel 1 : tensor<4xf32>
    func.return
  }
  func.func @s2() -> tensor<4xf32> attributes {rdu.stage = 2 : i64} {
    %y = rdu.recv from 1 channel 1 : tensor<4xf32>
    func.return %y : tensor<4xf32>
  }
}

// CHECK: 3 stage programs of tp = 4 sockets each need 12 sockets, but fabric 'sn40l-node8' has 8 ([sockets].count)

// -----

// TP x PP: a collective spans the sockets of its own stage: group 4 in a tp = 2 program.

builtin.module attributes {rdu.fabric = "sn40l-node8", rdu.tp = 2 : i64} {
  func.func @s0(%x: tensor<4xf32>) attributes {rdu.stage = 0 : i64} {
    %s = rdu.all_reduce %x group 4 : tensor<4xf32> -> tensor<4xf32>
    rdu.send %s to 1 channel 0 : tensor<4xf32>
    func.return
  }
  func.func @s1() -> tensor<4xf32> attributes {rdu.stage = 1 : i64} {
    %y = rdu.recv from 0 channel 0 : tensor<4xf32>
    func.return %y : tensor<4xf32>
  }
}

// CHECK: rdu.all_reduce: group 4 does not divide the program's tp = 2 (the module's rdu.tp)
