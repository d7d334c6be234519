from rnnlab.models.language_model import RNNLanguageModel, initialize

__all__ = ["RNNLanguageModel", "initialize"]
