"""Online training on the emulator (issue 16): a training step (forward, loss, backward,
dense optimizer) compiled from PyTorch, run on a stream of mini-batches while a
`CollisionlessTable` takes the sparse updates, admits and expires IDs, and a serving copy is
synced with the touched rows. See docs/embedding.md, "Online training".

Layer: above `api` (it compiles), beside `sweep | coe | serve`.
"""

from rdu_compiler.train.eager import EagerOnlineTrainer
from rdu_compiler.train.online import Batch, OnlineTrainer, ServingCopy, StepRecord, SyncRecord
from rdu_compiler.train.step import CompiledTrainStep, TrainingError, trace_step

__all__ = ["Batch", "CompiledTrainStep", "EagerOnlineTrainer", "OnlineTrainer", "ServingCopy", "StepRecord",
           "SyncRecord", "TrainingError", "trace_step"]
