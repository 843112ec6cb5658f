"""How the monitor writes durations and metric names (the panel and the text display share these)."""

from __future__ import annotations

import math


def format_duration(seconds: float | None) -> str:
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``; ``"–"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def metric_label(key: str) -> str:
    """``validation_accuracy`` -> ``val acc``, ``single_sample_accuracy`` -> ``single sample acc``."""
    label = key.replace("validation", "val").replace("accuracy", "acc").replace("_", " ")
    return label.strip()
