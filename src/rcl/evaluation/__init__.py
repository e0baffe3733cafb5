"""Metrics, inference and the evaluation protocol."""

from .inference import predict
from .metrics import psnr, ssim
from .protocol import EvalResult, evaluate, make_noisy_test_set, model_denoiser

__all__ = ["EvalResult", "evaluate", "make_noisy_test_set", "model_denoiser", "predict", "psnr", "ssim"]
