"""Datasets: the IDX reader, MNIST / Fashion-MNIST / digits, checksummed downloads and the cache."""

from gpunn.data.datasets import Dataset, cache_dir, load_dataset
from gpunn.data.idx import read_idx
from gpunn.data.sources import DATASET_NAMES

__all__ = ["DATASET_NAMES", "Dataset", "cache_dir", "load_dataset", "read_idx"]
