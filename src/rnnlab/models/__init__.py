from rnnlab.models.language_model import RNNLanguageModel
from rnnlab.models.sequence_model import SequenceModel
from rnnlab.nn.init import initialize

__all__ = ["RNNLanguageModel", "SequenceModel", "initialize"]
