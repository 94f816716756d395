"""thrifty-nvml: NVIDIA GPU knobs and the NVML energy meter (``pynvml`` from nvidia-ml-py)."""
