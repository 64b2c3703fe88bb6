"""The transcriber resource: offline default, production settings from the environment, GPU pod tags."""

from pathlib import Path
from typing import Any

import pytest

from mmrecipe.audio import transcription
from mmrecipe.audio.transcription import DEFAULT_MODEL_NAME, default_model_dir
from mmrecipe.settings import Settings
from resources import build_resources
from resources.transcriber import TranscriberResource


def test_default_is_the_offline_tiny_en_on_cpu() -> None:
    settings = TranscriberResource().settings()
    assert settings.model_dir == default_model_dir() and Path(settings.model_dir, "model.bin").is_file()
    assert settings.name == DEFAULT_MODEL_NAME
    assert (settings.device, settings.compute_type, settings.short_windows) == ("cpu", "int8", True)


def test_production_environment_configures_model_store_gpu_and_float16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "models" / "whisper-large-v3-ct2"
    model_dir.mkdir(parents=True)
    (model_dir / "model.bin").write_bytes(b"")  # a model store entry; never loaded here (no GPU on CI)
    env = {
        "MMRECIPE_ASR_MODEL_DIR": str(model_dir),
        "MMRECIPE_ASR_DEVICE": "cuda",
        "MMRECIPE_ASR_COMPUTE_TYPE": "float16",
        "MMRECIPE_ASR_BATCH_SIZE": "32",
        "MMRECIPE_ASR_SHORT_WINDOWS": "0",
    }
    resource = TranscriberResource.from_env(env)
    settings = resource.settings()
    assert settings.whisper_kwargs() == {
        "model_size_or_path": str(model_dir),
        "device": "cuda",
        "compute_type": "float16",
        "cpu_threads": 0,
        "num_workers": 1,
        "local_files_only": True,
    }
    assert (settings.batch_size, settings.short_windows, settings.name) == (32, False, "whisper-large-v3-ct2")

    built: list[dict[str, Any]] = []

    class RecordingWhisperModel:  # stands in for the GPU model; the real CPU model is tested in tests/unit
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

    monkeypatch.setattr(transcription, "WhisperModel", RecordingWhisperModel)
    monkeypatch.setattr(transcription, "_MODELS", {})
    assert isinstance(resource.transcriber().model, RecordingWhisperModel)
    assert built == [settings.whisper_kwargs()]


def test_code_location_wires_the_transcriber(settings: Settings) -> None:
    assert isinstance(build_resources(settings)["transcriber"], TranscriberResource)
