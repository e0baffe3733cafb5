"""Metrics, inference and the evaluation protocol."""

from .bm3d_baseline import bm3d_denoiser
from .inference import predict
from .metrics import psnr, ssim
from .sr_metrics import psnr_y, ssim_y
from .protocol import EvalResult, evaluate, make_noisy_test_set, model_denoiser

__all__ = ["bm3d_denoiser", "EvalResult", "evaluate", "make_noisy_test_set", "model_denoiser", "predict", "psnr", "psnr_y", "ssim", "ssim_y"]
