"""A small CNN on log-mel patches, trained with SpecAugment masking, exported to ONNX.

torch is the optional ``cnn`` extra: this module imports it inside its functions only, and
:func:`torch_available` says whether it can be used. The exported ONNX graph contains the whole
model, log scaling included: it takes the stored mel frames of a segment
``(n, 1, n_mels, length_frames)`` (padded after a segment's real frames with a value that reads
as the floor: ``jobs.models.inputs.patch_pad_value``) and returns class probabilities ``(n, classes)``.

Log scaling (inside the graph): power -> dB, floored 80 dB below the segment's peak, then mapped
to [0, 1] relative to that peak, so the model does not depend on loudness and padding reads as
the floor (0): zeros for a power, a value far under any decibel for a mel stored in dB. Other
features (MFCC) are standardised per patch over its real frames; their padding, a marker far
under any value, reads as 0.
SpecAugment (training only): one frequency band and one time span per patch are set to the
floor.
"""

from __future__ import annotations

import io
import math
import sys
import time

import numpy as np

from jobs.models.inputs import LINEAR_PAD_BELOW

__all__ = ["torch_available", "CnnSettings", "train_cnn", "export_cnn", "predict_torch"]

TOP_DB = 80.0
# the smallest power the log scaling takes (-300 dB): a patch's zeros (padding, digital silence)
# then lie under the floor 80 dB below the peak of any recording, however quiet (at 1e-10, -100
# dB, they rose above the floor of a patch peaking under -20 dB, and a quiet copy of a clip read
# its padding as sound)
POWER_FLOOR = 1e-30
MIN_INPUT_SIZE = 7  # bands and frames the network's stride and poolings need
DEFAULT_EPOCHS = 30
MIN_STEPS = 600  # optimiser steps a default-length training run gets at least


def torch_available() -> bool:
    """Whether torch can be imported (the ``cnn`` extra is installed and loads)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class CnnSettings:
    """Architecture and training settings (recorded in model.json)."""

    def __init__(self, *, n_mels: int, length_frames: int, n_classes: int, scale: str, widths=(16, 32, 64),
                 dropout: float = 0.2, freq_mask: int = 8, time_mask: int = 20, epochs: int = 30,
                 batch_size: int = 64, learning_rate: float = 1e-3, seed: int = 0):
        self.n_mels, self.length_frames, self.n_classes = n_mels, length_frames, n_classes
        # "power" (stored mel power: to dB), "db" (stored already in dB) or "linear" (any other
        # feature, e.g. MFCC: standardised per patch); see jobs.models.inputs.cnn_scale
        self.scale = scale
        self.widths = tuple(int(w) for w in widths)
        self.dropout, self.freq_mask, self.time_mask = dropout, freq_mask, time_mask
        self.epochs, self.batch_size, self.learning_rate, self.seed = epochs, batch_size, learning_rate, seed

    def to_json(self) -> dict:
        return dict(vars(self), widths=list(self.widths))


def effective_batch_size(n_train: int, batch_size: int) -> int:
    """Small training sets get smaller batches (an eighth of the set, at least 8)."""
    return max(1, min(batch_size, max(8, n_train // 8)))


def default_epochs(n_train: int, batch_size: int) -> int:
    """30 epochs, or more on a small training set so that it gets ``MIN_STEPS`` optimiser steps
    (60 sample clips: 75 epochs of 8 steps; FSDD's 2,700: 30 epochs of 43 steps)."""
    steps_per_epoch = max(1, math.ceil(n_train / effective_batch_size(n_train, batch_size)))
    return max(DEFAULT_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))


def _modules(settings: CnnSettings):
    import torch
    from torch import nn

    class LogScale(nn.Module):
        """Stored frames -> [0, 1] log scale relative to each patch's peak (power or dB
        features), or zero mean and unit variance per patch (``"linear"``: MFCC and the like)."""

        def __init__(self, scale: str):
            super().__init__()
            self.from_power = scale == "power"
            self.linear = scale == "linear"

        def forward(self, x):
            if self.linear:  # over the real frames only: padding (LINEAR_PATCH_PAD) reads as 0
                real = x > LINEAR_PAD_BELOW
                weight = real.to(x.dtype)
                count = torch.clamp(torch.sum(weight, dim=(2, 3), keepdim=True), min=1.0)
                kept = torch.where(real, x, torch.zeros_like(x))
                mean = torch.sum(kept, dim=(2, 3), keepdim=True) / count
                centred = torch.where(real, x - mean, torch.zeros_like(x))
                var = torch.sum(centred * centred, dim=(2, 3), keepdim=True) / count
                return centred / torch.sqrt(var + 1e-6)
            db = 10.0 * torch.log10(torch.clamp(x, min=POWER_FLOOR)) if self.from_power else x
            peak = torch.amax(db, dim=(2, 3), keepdim=True)
            db = torch.maximum(db, peak - TOP_DB)
            return (db - peak) / TOP_DB + 1.0

    def block(c_in, c_out, stride):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    class DigitCnn(nn.Module):
        """Log scale -> strided conv blocks -> mean and max over time/frequency -> linear."""

        def __init__(self):
            super().__init__()
            w1, w2, w3 = settings.widths
            self.log_scale = LogScale(settings.scale)
            # the stride-2 block and two 2x2 poolings need 7 rows and columns: smaller inputs
            # (few bands, short segments) are zero padded up to that (bottom and right)
            grow_rows = max(0, MIN_INPUT_SIZE - settings.n_mels)
            grow_cols = max(0, MIN_INPUT_SIZE - settings.length_frames)
            self.pad = nn.ZeroPad2d((0, grow_cols, 0, grow_rows)) if grow_rows or grow_cols else nn.Identity()
            self.features = nn.Sequential(
                block(1, w1, 2),  # (M/2, L/2)
                block(w1, w2, 1),
                nn.MaxPool2d(2),  # (M/4, L/4)
                block(w2, w3, 1),
                nn.MaxPool2d(2),  # (M/8, L/8)
                block(w3, w3, 1),
            )
            self.dropout = nn.Dropout(settings.dropout)
            self.classifier = nn.Linear(2 * w3, settings.n_classes)

        def embed(self, scaled):
            h = self.features(self.pad(scaled))
            pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
            return self.dropout(pooled)

        def forward(self, x):  # logits
            return self.classifier(self.embed(self.log_scale(x)))

    class WithSoftmax(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.softmax(self.net(x), dim=1)

    return DigitCnn, WithSoftmax


def _spec_augment(scaled, settings: CnnSettings, generator):
    """Set one random frequency band and one random time span of each patch to the floor (0)."""
    import torch

    n, _, n_mels, length = scaled.shape
    out = scaled.clone()
    f_width = torch.randint(0, settings.freq_mask + 1, (n,), generator=generator)
    f_start = (torch.rand(n, generator=generator) * (n_mels - f_width + 1)).long()
    t_width = torch.randint(0, settings.time_mask + 1, (n,), generator=generator)
    t_start = (torch.rand(n, generator=generator) * (length - t_width + 1)).long()
    mel_idx = torch.arange(n_mels)[None, :]
    time_idx = torch.arange(length)[None, :]
    f_mask = (mel_idx >= f_start[:, None]) & (mel_idx < (f_start + f_width)[:, None])  # (n, M)
    t_mask = (time_idx >= t_start[:, None]) & (time_idx < (t_start + t_width)[:, None])  # (n, L)
    mask = f_mask[:, None, :, None] | t_mask[:, None, None, :]
    return out.masked_fill(mask, 0.0)


def train_cnn(x_train: np.ndarray, y_train: np.ndarray, settings: CnnSettings, *, threads: int | None = None,
              log=print, sample_weight=None):
    """Fit the CNN on ``x_train (n, 1, n_mels, length)`` (stored frames) and integer labels.

    ``sample_weight`` (one per row, or None: each epoch a permutation): each epoch then takes
    ``n`` rows drawn with replacement in proportion to the weights, a row's weight being its
    expected share of the training (a per-batch weighted mean would cap a rare heavy row at
    one batch's worth).

    Prints one line per epoch (loss, accuracy on the training batches, seconds). Returns the
    trained torch module (eval mode, logits).
    """
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    DigitCnn, _ = _modules(settings)
    net = DigitCnn()
    x_all = torch.from_numpy(np.array(x_train, dtype=np.float32))
    y_all = torch.from_numpy(np.array(y_train, dtype=np.int64))
    with torch.no_grad():
        scaled_all = net.log_scale(x_all)  # scaling has no parameters: do it once
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=1e-3)
    batch_size = effective_batch_size(len(x_all), settings.batch_size)
    steps_per_epoch = max(1, math.ceil(len(x_all) / batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate * 3, total_steps=settings.epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    w_all = (torch.from_numpy(np.asarray(sample_weight, dtype=np.float64)) if sample_weight is not None
             else None)
    history = []
    for epoch in range(1, settings.epochs + 1):
        started = time.perf_counter()
        net.train()
        order = (torch.randperm(len(x_all), generator=generator) if w_all is None
                 else torch.multinomial(w_all, len(x_all), replacement=True, generator=generator))
        total_loss, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            if len(idx) < 2 and len(x_all) >= 2:
                continue  # BatchNorm needs two samples
            batch = _spec_augment(scaled_all[idx], settings, generator)
            logits = net.classifier(net.embed(batch))
            loss = loss_fn(logits, y_all[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y_all[idx]).sum())
        entry = {
            "epoch": epoch,
            "loss": total_loss / len(x_all),
            "train_accuracy": correct / len(x_all),
            "seconds": time.perf_counter() - started,
        }
        history.append(entry)
        log(f"  epoch {epoch}/{settings.epochs}: loss {entry['loss']:.4f}, "
            f"train accuracy {entry['train_accuracy']:.3f}, {entry['seconds']:.1f} s")
    net.eval()
    net.history = history
    return net


def predict_torch(net, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities from the trained torch module (for the ONNX round-trip check)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(torch.softmax(net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size]))), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.classifier.out_features), np.float32)


def export_cnn(net, settings: CnnSettings) -> bytes:
    """ONNX bytes of ``net`` + softmax: input ``features`` (n, 1, n_mels, length) float32,
    output ``probabilities`` (n, classes); the batch axis is dynamic.

    Uses torch's TorchScript-based exporter (``dynamo=False``): the torch.export-based one
    needs the extra ``onnxscript`` package, and this small static graph does not need it.
    """
    import warnings

    import torch

    _, WithSoftmax = _modules(settings)
    wrapped = WithSoftmax(net).eval()
    example = torch.zeros((2, 1, settings.n_mels, settings.length_frames), dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            wrapped,
            (example,),
            buffer,
            dynamo=False,
            input_names=["features"],
            output_names=["probabilities"],
            dynamic_axes={"features": {0: "n"}, "probabilities": {0: "n"}},
            opset_version=17,
        )
    return buffer.getvalue()


def torch_version() -> str | None:
    torch = sys.modules.get("torch")
    return getattr(torch, "__version__", None)
