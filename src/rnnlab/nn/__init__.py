"""Building blocks: the recurrent stack (fused PyTorch layers), reference cells and output layers."""

from rnnlab.nn.output import IGNORE_INDEX, FullSoftmax, OutputLayer, OutputLoss
from rnnlab.nn.recurrent import State, detach_state
from rnnlab.nn.stack import LayerWeights, RecurrentStack

__all__ = ["IGNORE_INDEX", "FullSoftmax", "LayerWeights", "OutputLayer", "OutputLoss", "RecurrentStack", "State",
           "detach_state"]
