"""Clips of K frames cut from cached per-frame features, for training fusion heads (see :mod:`.dataset`)."""

from .cache import DEFAULT_CACHE_BYTES, LRUCache
from .collate import collate, drop_modalities
from .dataset import ClipDataset
from .sampler import DEFAULT_K, clip_starts, clip_table, epoch_order
from .stats import feature_stats

__all__ = ["ClipDataset", "DEFAULT_CACHE_BYTES", "DEFAULT_K", "LRUCache", "clip_starts", "clip_table", "collate",
           "drop_modalities", "epoch_order", "feature_stats"]
