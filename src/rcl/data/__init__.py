"""Image I/O, in-memory datasets, noise models."""

from .datasets import ImageSet, add_noise_per_image, load_image_set, rgb_to_gray
from .filebank import FileImageSet, open_collection
from .io import ImageInfo, ImageReadError, list_images, read_image, write_image
from .noise import (GaussianNoise, GaussianRangeNoise, NoiseModel, PoissonGaussianNoise, PoissonNoise,
                    RealNoise, parse_noise_spec)

__all__ = ["FileImageSet", "GaussianNoise", "GaussianRangeNoise", "ImageInfo", "ImageReadError", "ImageSet",
           "NoiseModel", "PoissonGaussianNoise", "PoissonNoise", "RealNoise", "add_noise_per_image", "list_images",
           "load_image_set", "open_collection", "parse_noise_spec", "read_image", "rgb_to_gray", "write_image"]
