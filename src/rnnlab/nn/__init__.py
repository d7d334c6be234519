"""Building blocks: recurrent stacks (fused PyTorch layers) and output layers."""

from rnnlab.nn.output import FullSoftmax, OutputLayer, OutputLoss
from rnnlab.nn.recurrent import State, detach_state, make_recurrent

__all__ = ["FullSoftmax", "OutputLayer", "OutputLoss", "State", "detach_state", "make_recurrent"]
