"""Config sections for labels, segments, splits, training and scoring.

These models are part of the job config (``jobs.config.JobConfig``); they live here so that the
training and scoring code owns its own settings.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# a random seed, as NumPy and scikit-learn take one (a negative or 2**32 and over: their error)
Seed = Annotated[int, Field(ge=0, lt=2**32, description="random seed (0 to 2**32 - 1)")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelsConfig(_Section):
    """Where a file's label (and group, e.g. speaker) comes from."""

    source: Literal["folder", "parent", "regex", "csv"] = Field(
        default="folder",
        description="folder: the folder directly below the corpus root (files directly in the "
                    "root are unlabelled); parent: the file's own folder; regex: labels.pattern "
                    "on the file name; csv: labels.csv")
    pattern: str | None = Field(
        default=None,
        description="regex with a named group 'label' (and optionally others), matched against the file name",
    )
    csv: str | None = Field(default=None, description="CSV with columns path,label[,group]")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value):
        if value is not None:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
            if "label" not in compiled.groupindex:
                raise ValueError("the pattern needs a named group (?P<label>...)")
        return value

    @model_validator(mode="after")
    def _source_needs(self):
        if self.source == "regex" and not self.pattern:
            raise ValueError("labels.source 'regex' needs labels.pattern")
        if self.source == "csv" and not self.csv:
            raise ValueError("labels.source 'csv' needs labels.csv")
        return self


class SegmentsConfig(_Section):
    """Fixed-length windows of frames; a file shorter than one segment is padded, never dropped."""

    # at most an hour: a segment is one model input (a CNN patch of length x bands), and longer
    # ones would hold a recording's worth of frames per input
    length_s: float = Field(default=1.0, gt=0, le=3600)
    hop_s: float = Field(default=0.5, gt=0, le=3600)

    @model_validator(mode="after")
    def _no_gaps(self):
        if self.hop_s > self.length_s:
            raise ValueError(f"hop_s={self.hop_s} exceeds length_s={self.length_s}: segments would skip frames")
        return self


class SplitConfig(_Section):
    """How labelled files are split into train and test."""

    method: Literal["stratified", "group", "explicit"] = "stratified"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: Seed = 0
    group: str | None = Field(
        default=None, description="regex group or CSV column that names a file's group (speaker, ...)"
    )
    test_values: list[str] | None = Field(
        default=None, description="explicit split: values of `group` that form the test set"
    )

    @model_validator(mode="after")
    def _method_needs(self):
        if self.method in ("group", "explicit") and not self.group:
            raise ValueError(f"split.method '{self.method}' needs split.group")
        if self.method == "explicit" and not self.test_values:
            raise ValueError("split.method 'explicit' needs split.test_values")
        return self


MODEL_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class TrainConfig(_Section):
    """Which model to fit and how."""

    model: Literal["auto", "baseline", "cnn"] = "auto"  # auto: cnn when torch is installed
    name: str = "default"
    features: list[str] | None = Field(
        default=None, description="stored features the baseline summarises (default: all)"
    )
    input_feature: str = Field(default="melspectrogram", description="the CNN's input feature")
    epochs: int | None = Field(default=None, ge=1, description="default: 30 for the CNN, 100 for the baseline")
    batch_size: int | None = Field(default=None, ge=1, description="default: 64 for the CNN, 128 for the baseline")
    learning_rate: float = Field(default=1e-3, gt=0, le=10)
    cnn_widths: list[int] = Field(default=[16, 32, 64], min_length=3, max_length=3,
                                  description="channels of the CNN's three convolution stages")
    hidden_units: int = Field(default=256, ge=1, le=65536, description="the baseline MLP's hidden units")
    threads: int | None = Field(default=None, ge=1, description="torch threads (default: all cores)")
    seed: Seed = 0
    balance: Literal["segments", "files", "classes"] = Field(
        default="segments",
        description="what weighs the same in training: every segment (a long recording counts by "
                    "its length), every file (its segments share one file's weight) or every "
                    "class (its segments share one class's weight); each epoch then draws its "
                    "segments with replacement in proportion to those weights")

    @field_validator("name")
    @classmethod
    def _plain_folder_name(cls, value):
        # the model's folder, OUT/models/NAME, is replaced as a whole when it is trained again:
        # a name that reaches elsewhere ('', '.', '..', 'a/b') would replace another folder
        if not MODEL_NAME.fullmatch(value) or value in (".", ".."):
            raise ValueError(f"{value!r} is not a plain folder name (letters, digits, '.', '_', '-'; "
                             "it names OUT/models/NAME)")
        return value

    @field_validator("cnn_widths")
    @classmethod
    def _positive_widths(cls, value):
        if any(w < 1 for w in value):
            raise ValueError("every CNN width must be at least 1")
        return value


class ScoreConfig(_Section):
    """How a trained model is run over a store."""

    model: str | None = Field(default=None, description="model folder (default: OUT/models/<train.name>)")
    threshold: float = Field(default=0.5, ge=0, le=1)
    batch_segments: int = Field(default=4096, ge=1)
    hop_s: float | None = Field(
        default=None, gt=0,
        description="seconds between the segments scored (default: the model's training hop); "
                    "their length is always the model's. A finer hop gives a finer time grid of scores and "
                    "event edges")
