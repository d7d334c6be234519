"""Where each model's dropout acts, the loss through forward (so wrappers see the graph), and the
layering of the package."""

import subprocess
import sys

import pytest
import torch
from torch.testing import assert_close

from rnnlab.config import ModelConfig, RegularizationConfig
from rnnlab.data.synthetic import make_task
from rnnlab.models import RNNLanguageModel, SequenceModel

P = 0.5
ZAREMBA = RegularizationConfig(input_dropout=P, hidden_dropout=P, output_dropout=P)  # what model.dropout was


class Recorder:
    """Forward hooks that keep what each module received and returned."""

    def __init__(self, modules: dict) -> None:
        self.inputs, self.outputs = {}, {}
        for name, module in modules.items():
            module.register_forward_hook(self._keep(name))

    def _keep(self, name):
        def hook(module, args, output):
            self.inputs[name] = args[0].detach()
            self.outputs[name] = (output[0] if isinstance(output, tuple) else output).detach()
        return hook


def assert_dropped(after: torch.Tensor, before: torch.Tensor, p: float = P) -> None:
    """``after`` is ``before`` with inverted dropout applied: each element 0 or before / (1 - p), some 0."""
    zero = after == 0
    assert zero.any(), "no element was dropped"
    assert_close(after[~zero], before[~zero] / (1 - p))
    assert 0.2 < zero.float().mean() < 0.8


def _language_model():
    torch.manual_seed(0)
    model = RNNLanguageModel(11, cell="lstm", embedding_dim=8, hidden_size=8, num_layers=3, regularization=ZAREMBA)
    tokens, targets = torch.randint(11, (7, 6)), torch.randint(11, (7, 6))
    return model, tokens, targets


def test_language_model_dropout_acts_on_the_input_between_layers_and_before_the_output():
    model, tokens, targets = _language_model()
    layers = model.rnn.layers
    seen = Recorder({"embedding": model.embedding, "layer0": layers[0], "layer1": layers[1], "layer2": layers[2],
                     "output": model.output})
    model.train()
    model(tokens, targets)
    assert_dropped(seen.inputs["layer0"], seen.outputs["embedding"])  # input dropout
    assert_dropped(seen.inputs["layer1"], seen.outputs["layer0"])  # between layers 0 and 1
    assert_dropped(seen.inputs["layer2"], seen.outputs["layer1"])  # between layers 1 and 2
    assert_dropped(seen.inputs["output"], seen.outputs["layer2"].reshape(-1, 8))  # before the output layer

    model.eval()
    model(tokens, targets)
    assert_close(seen.inputs["layer0"], seen.outputs["embedding"])
    assert_close(seen.inputs["layer1"], seen.outputs["layer0"])
    assert_close(seen.inputs["output"], seen.outputs["layer2"].reshape(-1, 8))


@pytest.mark.parametrize("recurrent", [False, True])
def test_non_recurrent_dropout_leaves_the_recurrent_connection_alone(recurrent):
    """Zaremba 2014: dropout on the non-recurrent connections only. With the inputs each layer received
    held fixed, a training-mode layer computes exactly what an eval-mode one does; recurrent dropout
    (switched on here as the control) is what changes the layer itself."""
    model, tokens, targets = _language_model()
    if recurrent:
        model.rnn.recurrent_dropout = 0.5
    seen = Recorder({f"layer{k}": layer for k, layer in enumerate(model.rnn.layers)})
    model.train()
    model(tokens, targets)
    inputs, outputs = dict(seen.inputs), dict(seen.outputs)  # before the checks below call the layers again
    same = [torch.allclose(layer.eval()(inputs[f"layer{k}"])[0], outputs[f"layer{k}"])
            for k, layer in enumerate(model.rnn.layers)]
    assert same == [not recurrent] * 3


def test_sequence_model_dropout_acts_between_layers_and_before_the_readout():
    torch.manual_seed(0)
    task = make_task("adding", 9)
    model = SequenceModel(task, cell="gru", hidden_size=16, num_layers=2,
                          regularization=RegularizationConfig(hidden_dropout=P, output_dropout=P))
    seen = Recorder({"layer0": model.rnn.layers[0], "layer1": model.rnn.layers[1], "readout": model.readout})
    inputs, targets = task.sample(8, torch.Generator().manual_seed(0))
    model.train()
    model(inputs, targets)
    assert_close(seen.inputs["layer0"], inputs)  # real-valued task inputs are not dropped
    assert_dropped(seen.inputs["layer1"], seen.outputs["layer0"])
    assert_dropped(seen.inputs["readout"], seen.outputs["layer1"])


def test_the_model_layer_does_not_import_the_data_layer():
    """rnnlab.nn (layers, cells, output layers) stands below the data code: no import cycle through it."""
    code = ("import sys, rnnlab.nn, rnnlab.nn.cells, rnnlab.nn.init; "
            "bad = sorted(m for m in sys.modules if m.startswith(('rnnlab.data', 'rnnlab.training'))); "
            "assert not bad, bad")
    for first in ("rnnlab.nn.output", "rnnlab.data.batching", "rnnlab.data.synthetic"):
        subprocess.run([sys.executable, "-c", f"import {first}"], check=True)  # each importable first
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("cell", ["lstm", "rnn_tanh"])
def test_same_seed_same_weights_as_before_the_stack(cell):
    """The stack's layers draw their initial weights in the order the multi-layer module did."""
    config = ModelConfig(cell=cell, num_layers=3, hidden_size=6, embedding_dim=5, init="default")
    torch.manual_seed(5)
    model = RNNLanguageModel.from_config(config, 11)
    torch.manual_seed(5)
    torch.nn.Embedding(11, 5)
    multilayer = (torch.nn.LSTM(5, 6, 3) if cell == "lstm" else torch.nn.RNN(5, 6, 3))
    for k in range(3):
        for name, ours in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), model.rnn.layer_weights(k)):
            assert torch.equal(ours, getattr(multilayer, f"{name}_l{k}"))


def test_ptb_awd_is_merity_et_als_model():
    from rnnlab.config import load_config
    from rnnlab.models import RNNLanguageModel

    config = load_config("ptb-awd")
    model = RNNLanguageModel.from_config(config.model, 10000, config.regularization)
    assert model.rnn.layer_sizes == (1150, 1150, 400)
    assert model.embedding.weight is model.output.weight  # tied to the 400-unit last layer
    assert 24.0e6 < sum(p.numel() for p in model.parameters()) < 24.3e6  # the paper's 24M
