"""Text -> tokens -> frequency-sorted ids -> truncated-BPTT batches."""

from rnnlab.data.batching import EvalStream, batchify, bptt_windows, eval_stream, num_windows
from rnnlab.data.corpus import Corpus, load_corpus, load_split, resolve_data_path
from rnnlab.data.tokenizers import EOS, UNK, get_tokenizer
from rnnlab.data.vocab import Vocabulary

__all__ = [
    "EOS",
    "UNK",
    "Corpus",
    "EvalStream",
    "Vocabulary",
    "batchify",
    "bptt_windows",
    "eval_stream",
    "get_tokenizer",
    "load_corpus",
    "load_split",
    "num_windows",
    "resolve_data_path",
]
