"""GoogLeNet transfer learning for neural images: weights, backbone, head and fine-tune training.

- Weights: torchvision's ImageNet GoogLeNet checkpoint (``googlenet-1378be20.pth``) from a file
  given with ``--weights`` or from torchvision's cache; its sha256 must start with the published
  prefix ``1378be20``. Never downloaded. Without weights the network starts from random
  initialisation -- and because torchvision's random init makes activations vanish in eval mode
  (logits equal the final bias for every input), BatchNorm statistics are calibrated on the
  training images before use. The report says which happened.
- ``head`` mode (CPU default): frozen features (1024-d after global pooling), computed once per
  image; only a linear classifier is trained.
- ``finetune`` mode: the whole network is trained.

The trained network is a plain ``torchvision.models.GoogLeNet`` with a 2-class ``fc``, so
``offline/export.py`` exports it to ONNX as one graph.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtdecode.errors import RtdecodeError
from rtdecode.inference.network import FEATURE_DIM, LAYERS, TAP_CHANNELS, decoder_net, tap_grid  # noqa: F401

WEIGHTS_FILE = "googlenet-1378be20.pth"
WEIGHTS_SHA256_PREFIX = "1378be20"


class WeightsError(RtdecodeError, ValueError):
    """A weights file that is not torchvision's ImageNet GoogLeNet checkpoint."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def find_weights(weights: str | Path | None) -> Path | None:
    """The verified checkpoint path, or None when no file is given and none is cached."""
    if weights is None:
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
        if not cached.is_file():
            return None
        weights = cached
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"--weights {path}: no such file")
    digest = sha256_file(path)
    if not digest.startswith(WEIGHTS_SHA256_PREFIX):
        raise WeightsError(
            f"--weights {path}: sha256 {digest[:16]}... does not start with {WEIGHTS_SHA256_PREFIX}, the "
            f"published hash prefix of torchvision's ImageNet GoogLeNet ({WEIGHTS_FILE})"
        )
    return path


def build_googlenet(
    num_classes: int = 2, weights_path: Path | None = None, seed: int = 0, tap: str | None = None, grid: int = 6
):
    """The decoder network (``rtdecode.inference.network``), from ImageNet weights when given."""
    import torch

    state = None
    if weights_path is not None:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    try:
        return decoder_net(num_classes, tap=tap, grid=grid, seed=seed, base_state=state)
    except KeyError as err:
        raise WeightsError(f"{weights_path}: not a GoogLeNet state dict ({err})") from None


def calibrate_batchnorm(model, images: np.ndarray, batch: int = 32, passes: int = 2) -> None:
    """Set BatchNorm running statistics from ``images`` (n, 3, H, W) with train-mode passes."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(passes):
            for b0 in range(0, len(images), batch):
                model(torch.from_numpy(images[b0 : b0 + batch]))
    model.eval()


def features(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Frozen head-input features (n, model.embed_dim) of ``images`` (n, 3, H, W)."""
    import torch

    model.eval()
    out = np.empty((len(images), model.embed_dim), dtype=np.float32)
    with torch.inference_mode():
        for b0 in range(0, len(images), batch):
            out[b0 : b0 + batch] = model.embed(torch.from_numpy(images[b0 : b0 + batch])).numpy()
    return out


@dataclass
class TrainingCurve:
    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "loss": self.loss, "train_accuracy": self.train_accuracy}


def train_head(
    feats: np.ndarray,
    labels: np.ndarray,
    epochs: int = 300,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    seed: int = 0,
):
    """A linear 2-class head on standardised features; returns (torch Linear over raw features, curve)."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    mu = x.mean(0)
    sd = x.std(0).clamp_min(1e-6)
    xs = (x - mu) / sd
    head = torch.nn.Linear(x.shape[1], 2)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    curve = TrainingCurve()
    for ep in range(epochs):
        opt.zero_grad()
        logits = head(xs)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        if ep % max(1, epochs // 50) == 0 or ep == epochs - 1:
            curve.epoch.append(ep + 1)
            curve.loss.append(float(loss.detach()))
            curve.train_accuracy.append(float((logits.argmax(1) == y).float().mean()))
    # Fold the standardisation into the layer so it applies to raw features.
    with torch.no_grad():
        w = head.weight / sd
        b = head.bias - (w * mu).sum(1)
        raw = torch.nn.Linear(x.shape[1], 2)
        raw.weight.copy_(w)
        raw.bias.copy_(b)
    return raw, curve


def finetune(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int = 5,
    lr: float = 1e-4,
    batch: int = 16,
    seed: int = 0,
    progress=None,
) -> TrainingCurve:
    """Train every layer of ``model`` on (images, labels); returns the curve (per epoch)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve = TrainingCurve()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        total, correct, n = 0.0, 0, 0
        for b0 in range(0, len(x), batch):
            idx = perm[b0 : b0 + batch]
            if len(idx) < 2:  # BatchNorm needs more than one sample in train mode
                continue
            opt.zero_grad()
            logits = model(x[idx])
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
            n += len(idx)
        curve.epoch.append(ep + 1)
        curve.loss.append(total / max(n, 1))
        curve.train_accuracy.append(correct / max(n, 1))
        if progress is not None:
            progress()
    model.eval()
    return curve


def predict_logits(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits (n, 2) from the whole network."""
    import torch

    model.eval()
    out = np.empty((len(images), 2), dtype=np.float32)
    with torch.inference_mode():
        for b0 in range(0, len(images), batch):
            out[b0 : b0 + batch] = model(torch.from_numpy(np.ascontiguousarray(images[b0 : b0 + batch]))).numpy()
    return out


def predict_proba(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Class probabilities (n, 2) from the whole network."""
    z = predict_logits(model, images, batch).astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def synthetic_blends(
    stack: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Neural-image-like training samples made from stimuli only (no neural data).

    A neural image is a response-similarity-weighted sum of stimuli, ``I_t = sum_t' K(t, t') S_t'``,
    so a trial's image is roughly a positive blend of stimuli of its own class minus a blend of the
    other class. Each sample here is exactly that, with random weights, blend sizes, contrast
    between the two parts, overall scale and noise. Returns (n, H*W) float32 and labels."""
    stack2 = stack.reshape(len(stack), -1).astype(np.float32)
    by_class = [np.flatnonzero(labels == c) for c in (0, 1)]
    y = rng.integers(0, 2, n)
    out = np.empty((n, stack2.shape[1]), dtype=np.float32)
    for i in range(n):  # n small blends of a few images each; a generator, not a hot path
        own, other = by_class[y[i]], by_class[1 - y[i]]
        k_own, k_other = rng.integers(2, 12), rng.integers(1, 12)
        w_own = rng.dirichlet(np.ones(k_own))
        w_other = rng.dirichlet(np.ones(k_other)) * rng.uniform(0.0, 0.8)
        img = w_own @ stack2[rng.choice(own, k_own)] - w_other @ stack2[rng.choice(other, k_other)]
        img += rng.normal(0, rng.uniform(0.0, 0.3) * (img.std() + 1e-6), img.shape)
        out[i] = img * np.exp(rng.normal(0, 0.5))
    return out, y


def pretrain_on_stimuli(
    model,
    stack: np.ndarray,
    stack_labels: np.ndarray,
    image_size: int,
    n_samples: int = 3000,
    epochs: int = 4,
    seed: int = 0,
    lr: float = 1e-3,
) -> TrainingCurve:
    """Substitute for ImageNet pretraining when no weights are available: train the whole network
    to tell blends of natural scenes from blends of gratings (``synthetic_blends``)."""
    from rtdecode.core.model_input import ImageNormalisation

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x57]))
    x, y = synthetic_blends(stack, stack_labels, n_samples, rng)
    norm = ImageNormalisation.fit(x, image_size)
    calibrate_batchnorm(model, norm.to_model_input(x[:256]))
    return finetune(model, norm.to_model_input(x), y, epochs=epochs, lr=lr, batch=32, seed=seed)
