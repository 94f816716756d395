"""ONNX Runtime sessions: execution-provider choice, threads and graph optimisation.

Provider names are short (``cpu``, ``cuda``, ``tensorrt``, ``coreml``, ...) or onnxruntime's
own (``CUDAExecutionProvider``). ``auto`` takes the accelerators a draft benefits from without
set-up, in order, when this onnxruntime build has them: CUDA, CoreML, DirectML, then CPU.
TensorRT is never picked automatically: it builds an engine per input-shape profile, which takes
minutes, so it is for people who ask for it.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from thrifty.errors import ConfigError, ModelFormatError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "qnn": "QNNExecutionProvider",
}
AUTO = ("cuda", "coreml", "dml", "cpu")
OPTIMIZATION = ("disable", "basic", "extended", "all")


def resolve_providers(spec: str, available: list[str]) -> list[str]:
    """onnxruntime provider names for ``spec`` ("auto" or a comma list), in priority order.

    Pure: ``available`` is what ``onnxruntime.get_available_providers()`` says. CPU is always
    appended last, so that nodes an accelerator lacks still run.
    """
    if spec.strip() == "auto":
        chosen = [PROVIDERS[p] for p in AUTO if PROVIDERS[p] in available]
    else:
        chosen = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            name = PROVIDERS.get(part.lower(), part)
            if name not in available:
                short = {v: k for k, v in PROVIDERS.items()}
                raise ConfigError(
                    f"execution provider {part!r} is not available in this onnxruntime build "
                    f"(available: {', '.join(short.get(a, a) for a in available)});"
                    f" install the onnxruntime package that has it (e.g. onnxruntime-gpu for "
                    f"cuda/tensorrt) or choose another with providers = \"...\"")
            chosen.append(name)
    if PROVIDERS["cpu"] not in chosen:
        chosen.append(PROVIDERS["cpu"])
    return chosen


@attrs.frozen
class SessionSettings:
    """How to run a graph. Threads 0 = onnxruntime's default (one per physical core).

    ``spin``: let idle worker threads busy-wait for the next operator. onnxruntime does so by
    default, which shaves microseconds off back-to-back runs but, in speculative decoding,
    steals the cores from the verifier that runs between two draft steps; so it is off here.
    """

    providers: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    optimization: str = "all"
    spin: bool = False

    def __attrs_post_init__(self) -> None:
        if self.optimization not in OPTIMIZATION:
            raise ConfigError(f"optimization must be one of {list(OPTIMIZATION)}; "
                              f"got {self.optimization!r}")
        for name in ("intra_op_threads", "inter_op_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0 = onnxruntime's default)")


def create_session(path: str | Path, settings: SessionSettings, opset: int = 0):
    """An ``InferenceSession`` for ``path``; a graph onnxruntime cannot load (an opset newer
    than it knows, an operator it lacks) raises ModelFormatError saying which and what to do."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.optimization]
    spin = "1" if settings.spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3  # errors only: CPU fallbacks of single nodes are expected
    providers = resolve_providers(settings.providers, ort.get_available_providers())
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
        text = str(exc)
        limit = re.search(r"support for domain ai\.onnx is till opset (\d+)", text)
        if limit or "opset" in text.lower():
            most = limit.group(1) if limit else "?"
            raise ModelFormatError(
                f"ONNX graph {path} uses opset {opset or '?'}, which onnxruntime "
                f"{ort.__version__} cannot run (it supports up to opset {most}); re-export it "
                f"with `thrifty export-onnx ... --opset 17` or upgrade onnxruntime") from exc
        raise ModelFormatError(
            f"onnxruntime {ort.__version__} cannot load ONNX graph {path}: "
            f"{text.strip().splitlines()[-1][:500]}; re-export it with `thrifty export-onnx` "
            f"or check that the file is complete") from exc
