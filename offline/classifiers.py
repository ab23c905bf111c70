"""The classifiers the experiments compare: GoogLeNet on neural images (head or fine-tune), a
linear read-out of the same images (logistic regression on the pixels, or on their first principal
components), and a GLM (logistic regression) on the responses ``R`` -- the paper's 83 % baseline."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rtdecode.offline import model as gnet
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


class GoogLeNetClassifier:
    """GoogLeNet transfer learning, reset to the same initial weights for every split."""

    def __init__(
        self,
        weights: str | Path | None = None,
        mode: str = "head",
        head_epochs: int = 300,
        finetune_epochs: int = 10,
        seed: int = 0,
        finetune_lr: float | None = None,
        image_size: int = 224,
    ) -> None:
        if mode not in ("head", "finetune"):
            raise ValueError(f"mode must be 'head' or 'finetune', got {mode!r}")
        self.weights_path = gnet.find_weights(weights)
        self.pretrained = self.weights_path is not None
        self.mode = mode
        # Without ImageNet weights, deep random features vanish and GoogLeNet trained from scratch does
        # not converge on a few hundred trials on a CPU; a head on the BatchNorm-calibrated random
        # inception3b map (pooled to 6x6, so where things are in the image is kept) does work.
        self.tap = None if self.pretrained else "inception3b"
        self.head_epochs = head_epochs
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr or (1e-4 if self.pretrained else 1e-3)
        self.seed = seed
        grid = gnet.tap_grid(image_size, self.tap) if self.tap else 6
        self._initial = gnet.build_googlenet(2, self.weights_path, seed=seed, tap=self.tap, grid=grid)
        self.model = None  # the last trained network (for export)

    @property
    def architecture(self) -> dict:
        return {"name": "googlenet", "tap": self.tap, "grid": self._initial.grid}

    @property
    def description(self) -> str:
        if self.pretrained:
            return f"GoogLeNet, {self.mode} mode, ImageNet weights ({self.weights_path})"
        what = (
            "linear head on frozen random-init features (inception3b, BatchNorm calibrated)"
            if self.mode == "head"
            else f"all layers trained from random initialisation ({self.finetune_epochs} epochs)"
        )
        return f"GoogLeNet without ImageNet weights (none given or in torchvision's cache): {what}"

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
        self, train_inputs: np.ndarray, label_sets: list[np.ndarray], test_inputs: np.ndarray
    ) -> list[FitResult]:
        """One classifier per label set on the same inputs (e.g. true and shuffled labels).

        In head mode the frozen features are computed once and shared."""
        if self.mode != "head":
            out = []
            for labels in label_sets:
                model, curve = self.fit(train_inputs, labels)
                out.append(FitResult(gnet.predict_proba(model, test_inputs)[:, 1], curve))
            return out
        model = self._fresh(train_inputs)
        f_train = gnet.features(model, train_inputs)
        f_test = gnet.features(model, test_inputs)
        out = []
        for labels in label_sets:
            head, curve = gnet.train_head(f_train, labels, epochs=self.head_epochs, seed=self.seed)
            logits = head(torch_tensor(f_test)).detach().numpy()
            out.append(FitResult(_softmax1(logits), curve.as_dict()))
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
