"""The classifiers the experiments compare: a network (GoogLeNet or EfficientNet-Lite0, pretrained or
not, head or fine-tune) on neural images, a linear read-out of the same images (logistic regression
on the pixels, or on their first principal components), and a GLM (logistic regression) on the
responses ``R`` -- the paper's 83 % baseline.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rtdecode.offline import model as gnet
from rtdecode.offline.backbones import load_backbone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

#: Principal components of the linear read-out on components (fewer when there are fewer trials).
IMAGE_PCS = 20


@dataclass
class FitResult:
    p_natural: np.ndarray  # scored trials
    curve: dict
    logits: np.ndarray | None = None  # (scored trials, 2), where the classifier has logits
    extra: list = field(default_factory=list)  # p_natural of further input sets, scored by the same fit


class NetworkClassifier:
    """Transfer learning on a backbone (``rtdecode.offline.backbones``: GoogLeNet or EfficientNet-Lite0),
    reset to the same initial weights for every split.

    ``head`` mode trains a linear head on the frozen features (computed once per image); ``finetune``
    trains every layer. A backbone without ImageNet weights (GoogLeNet on most machines, or any backbone
    with ``pretrained=False``) has its BatchNorm statistics calibrated on the training images first:
    torchvision's random init gives vanishing activations in eval mode otherwise."""

    def __init__(
        self,
        weights: str | Path | None = None,
        mode: str = "head",
        head_epochs: int = 300,
        finetune_epochs: int = 10,
        seed: int = 0,
        finetune_lr: float | None = None,
        image_size: int = 224,
        backbone: str = "googlenet",
        pretrained: bool = True,
        key: str | None = None,
    ) -> None:
        if mode not in ("head", "finetune"):
            raise ValueError(f"mode must be 'head' or 'finetune', got {mode!r}")
        self.backbone = load_backbone(backbone, image_size, weights, pretrained=pretrained, seed=seed)
        self.weights_path = self.backbone.weights_path
        self.pretrained = self.backbone.pretrained
        self.mode = mode
        self.head_epochs = head_epochs
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr or (1e-4 if self.pretrained else 1e-3)
        self.seed = seed
        self.key = key or self.backbone.key
        self._initial = self.backbone.model
        self.model = None  # the last trained network (for export)

    @property
    def architecture(self) -> dict:
        return self.backbone.architecture

    @property
    def description(self) -> str:
        b = self.backbone
        name = {"googlenet": "GoogLeNet", "efficientnet-lite0": "EfficientNet-Lite0"}[b.name]
        where = f"head on {b.tap or 'global features'}" + (f" pooled {b.grid}x{b.grid}" if b.tap else "")
        if self.pretrained:
            return f"{name}, {self.mode} mode, ImageNet weights ({b.weights_path}); {where}"
        why = "random initialisation" + (
            " (no ImageNet weights given or in torchvision's cache)" if b.name == "googlenet" else " (control)"
        )
        what = (
            f"linear {where} of the frozen, BatchNorm-calibrated network"
            if self.mode == "head"
            else f"all layers trained ({self.finetune_epochs} epochs)"
        )
        return f"{name} without ImageNet weights, {why}: {what}"

    def _fresh(self, train_inputs: np.ndarray):
        model = copy.deepcopy(self._initial)
        if not self.pretrained:
            gnet.calibrate_batchnorm(model, train_inputs)
        model.eval()
        return model

    def fit(self, train_inputs: np.ndarray, labels: np.ndarray):
        """Train on (n, 3, H, W) inputs; returns (model, curve)."""
        model = self._fresh(train_inputs)
        if self.mode == "head":
            feats = gnet.features(model, train_inputs)
            head, curve = gnet.train_head(feats, labels, epochs=self.head_epochs, seed=self.seed)
            model.fc = head
        else:
            curve = gnet.finetune(
                model, train_inputs, labels, epochs=self.finetune_epochs, lr=self.finetune_lr, seed=self.seed
            )
        model.eval()
        self.model = model
        return model, curve.as_dict()

    def fit_predict(self, train_inputs: np.ndarray, labels: np.ndarray, test_inputs: np.ndarray) -> FitResult:
        return self.fit_predict_many(train_inputs, [labels], test_inputs)[0]

    def fit_predict_many(
        self, train_inputs: np.ndarray, label_sets: list[np.ndarray], test_inputs, extra_tests=()
    ) -> list[FitResult]:
        """One classifier per label set on the same inputs (e.g. true and shuffled labels).

        In head mode the frozen features are computed once and shared. ``extra_tests`` are more input
        sets scored by the same classifiers (``FitResult.extra``), e.g. leaky variants of the test images."""
        if self.mode != "head":
            out = []
            for labels in label_sets:
                model, curve = self.fit(train_inputs, labels)
                res = FitResult(gnet.predict_proba(model, test_inputs)[:, 1], curve)
                res.extra = [gnet.predict_proba(model, x)[:, 1] for x in extra_tests]
                res.logits = gnet.predict_logits(model, test_inputs)
                out.append(res)
            return out
        model = self._fresh(train_inputs)
        f_train = gnet.features(model, train_inputs)
        f_test = gnet.features(model, test_inputs)
        f_extra = [gnet.features(model, x) for x in extra_tests]
        out = []
        for labels in label_sets:
            head, curve = gnet.train_head(f_train, labels, epochs=self.head_epochs, seed=self.seed)
            logits = head(torch_tensor(f_test)).detach().numpy()
            res = FitResult(_softmax1(logits), curve.as_dict())
            res.logits = logits
            res.extra = [_softmax1(head(torch_tensor(f)).detach().numpy()) for f in f_extra]
            out.append(res)
        return out


def torch_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _softmax1(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e[:, 1] / e.sum(axis=1)).astype(np.float32)


def glm_fit_predict(R_train: np.ndarray, labels: np.ndarray, R_test: np.ndarray, seed: int = 0) -> FitResult:
    """Logistic regression on standardised responses (scaler fit on training trials)."""
    scaler = StandardScaler().fit(R_train)
    clf = LogisticRegression(C=0.5, max_iter=5000, random_state=seed)
    clf.fit(scaler.transform(R_train), labels)
    return FitResult(clf.predict_proba(scaler.transform(R_test))[:, 1], {})


def linear_image_fit_predict(
    x_train: np.ndarray, labels: np.ndarray, x_test: np.ndarray, n_components: int | None = None, seed: int = 0
) -> FitResult:
    """Logistic regression on the network's input images (``(n, 3, S, S)``; the grey channel is read),
    standardised per pixel on the training trials; with ``n_components``, on their first principal
    components (PCA fit on the training trials) instead of the pixels."""
    a = x_train[:, 0].reshape(len(x_train), -1)
    b = x_test[:, 0].reshape(len(x_test), -1)
    steps = [StandardScaler()]
    if n_components:
        steps.append(PCA(min(n_components, len(a) - 1, a.shape[1]), random_state=seed))
    steps.append(LogisticRegression(C=0.05 if not n_components else 1.0, max_iter=5000, random_state=seed))
    model = make_pipeline(*steps).fit(a, labels)
    return FitResult(model.predict_proba(b)[:, 1].astype(np.float32), {})


def pca_features(
    x_train: np.ndarray, x_test: np.ndarray, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The first principal components of the standardised grey channel (fit on the training inputs) --
    the features of the linear read-out on components, computed once where only labels change."""
    a = x_train[:, 0].reshape(len(x_train), -1)
    b = x_test[:, 0].reshape(len(x_test), -1)
    pipe = make_pipeline(StandardScaler(), PCA(min(n_components, len(a) - 1, a.shape[1]), random_state=seed)).fit(a)
    return pipe.transform(a), pipe.transform(b)


def logistic_regression_many(x: np.ndarray, labels: np.ndarray, C: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-penalised logistic regressions of the same features ``x`` (n, d) on many label vectors
    ``labels`` (k, n) at once -- scikit-learn's ``LogisticRegression(C=C)`` objective (penalty
    ``|w|^2 / (2C)``, intercept free), solved by batched Newton steps. Returns (k, d + 1) weights with the
    intercept last. The permutation test refits one regression per permutation; this does them together."""
    xa = np.concatenate([np.asarray(x, np.float64), np.ones((len(x), 1))], axis=1)
    y = np.atleast_2d(np.asarray(labels, np.float64))
    k, d = len(y), xa.shape[1]
    reg = np.full(d, 1.0 / C)
    reg[-1] = 0.0
    w = np.zeros((k, d))
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(w @ xa.T, -50, 50)))  # (k, n)
        grad = (p - y) @ xa + w * reg
        hess = np.einsum("kn,ni,nj->kij", p * (1 - p), xa, xa) + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


class LinearImageClassifier:
    """The linear read-out of neural images as a bundle's decoder (``rtdecode build --decoder linear``):
    standardised pixels of the network input's grey channel, their first ``pcs`` principal components
    (all pixels with ``pcs=None``), logistic regression -- fit with scikit-learn, then folded into one
    :class:`~rtdecode.inference.network.LinearImageDecoder` layer that exports to ONNX like GoogLeNet."""

    pretrained = False

    def __init__(self, image_size: int, pcs: int | None = IMAGE_PCS, seed: int = 0) -> None:
        self.image_size = int(image_size)
        self.pcs = pcs
        self.seed = seed

    @property
    def architecture(self) -> dict:
        return {"name": "linear", "tap": None, "grid": 1, "pcs": self.pcs}

    @property
    def description(self) -> str:
        on = f"its first {self.pcs} principal components" if self.pcs else "its standardised pixels"
        return f"linear read-out of the neural image: logistic regression on {on}"

    def fit(self, train_inputs: np.ndarray, labels: np.ndarray):
        """Fit on (n, 3, S, S) inputs; returns (a LinearImageDecoder computing the same logit, curve)."""
        import torch

        from rtdecode.inference.network import LinearImageDecoder

        x = train_inputs[:, 0].reshape(len(train_inputs), -1).astype(np.float64)
        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
        proj = np.eye(x.shape[1])
        centre = np.zeros(x.shape[1])
        if self.pcs:
            pca = PCA(min(self.pcs, len(x) - 1, x.shape[1]), random_state=self.seed).fit(z)
            proj, centre = pca.components_, pca.mean_
            z = pca.transform(z)
        lr = LogisticRegression(C=1.0 if self.pcs else 0.05, max_iter=5000, random_state=self.seed).fit(z, labels)
        coef = lr.coef_[0] @ proj  # on standardised pixels
        w = coef / scaler.scale_
        b = float(lr.intercept_[0] - coef @ centre - w @ scaler.mean_)
        model = LinearImageDecoder(self.image_size)
        with torch.no_grad():
            model.fc.weight.zero_()
            model.fc.bias.zero_()
            model.fc.weight[1] = torch.from_numpy(w.astype(np.float32))
            model.fc.bias[1] = b
        model.eval()
        train_acc = float((lr.predict(z) == labels).mean())
        return model, {"train_accuracy": [train_acc], "epoch": [0], "loss": [float("nan")]}
