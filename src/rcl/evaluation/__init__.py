"""Metrics, inference and the evaluation protocol."""

from .bm3d_baseline import (BM3D_ESTIMATED_ROW, BM3D_ORACLE_ROW, BM3D_ROW, bm3d_denoiser, bm3d_estimated_reference,
                            bm3d_oracle_reference, bm3d_reference)
from .inference import predict
from .metrics import psnr, ssim
from .noise_level import DEFAULT_ESTIMATOR, estimate_sigma, oracle_sigma
from .sr_metrics import psnr_y, ssim_y
from .protocol import EvalResult, evaluate, make_noisy_test_set, model_denoiser

__all__ = ["BM3D_ESTIMATED_ROW", "BM3D_ORACLE_ROW", "BM3D_ROW", "DEFAULT_ESTIMATOR", "bm3d_denoiser",
           "bm3d_estimated_reference", "bm3d_oracle_reference", "bm3d_reference", "estimate_sigma", "oracle_sigma",
           "EvalResult", "evaluate", "make_noisy_test_set", "model_denoiser", "predict", "psnr", "psnr_y", "ssim", "ssim_y"]
