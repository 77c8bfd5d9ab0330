"""Test-suite settings: one torch thread (2-core CI machines run faster without oversubscription)."""

import torch

import torch_lottery


def pytest_report_header(config):
    return f"torch {torch.__version__}, torch_lottery {torch_lottery.__version__} from {torch_lottery.__file__}"


torch.set_num_threads(1)
