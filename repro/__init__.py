"""repro: re-measure the published mIoU of the MCIBI / MCIBI++ model zoo."""

__version__ = "0.1.0"
