"""Metrics, inference and the evaluation protocol."""

from .bm3d_baseline import BM3D_ROW, bm3d_denoiser, bm3d_reference
from .inference import predict
from .metrics import psnr, ssim
from .sr_metrics import psnr_y, ssim_y
from .protocol import EvalResult, evaluate, make_noisy_test_set, model_denoiser

__all__ = ["BM3D_ROW", "bm3d_denoiser", "bm3d_reference", "EvalResult", "evaluate", "make_noisy_test_set", "model_denoiser", "predict", "psnr", "psnr_y", "ssim", "ssim_y"]
