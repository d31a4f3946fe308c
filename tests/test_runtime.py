"""The first check cell: it names the GPU, or says how to get one, and never fails."""

import torch

from alexnet_nb import runtime


def test_without_a_gpu_it_says_how_to_switch_the_runtime(monkeypatch, capsys):
    monkeypatch.setattr(runtime.torch.cuda, "is_available", lambda: False)
    device = runtime.check_gpu("the chapter trains a small demonstration instead.")
    out = capsys.readouterr().out
    assert device == torch.device("cpu")
    assert "No GPU" in out and "Runtime > Change runtime type" in out and "T4 GPU" in out
    assert "small demonstration" in out


def test_with_a_gpu_it_names_it(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "describe_gpu", lambda: "Tesla T4, 15.8 GB")
    assert runtime.check_gpu("unused") == torch.device("cuda")
    out = capsys.readouterr().out
    assert out == "GPU: Tesla T4, 15.8 GB.\n"
