"""The transcriber resource: offline default, production settings from the environment, GPU pod tags, and the
device and precision that reach the Whisper model constructor in each deployment."""

from pathlib import Path
from typing import Any

import faster_whisper
import pytest

from mmrecipe.audio import transcription
from mmrecipe.audio.transcription import DEFAULT_MODEL_NAME, default_model_dir
from mmrecipe.settings import Settings
from resources import build_resources
from resources.pod_resources import pod_resources
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
    resource = TranscriberResource.from_settings(Settings.from_env(env))
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

    built = recording_whisper_model(monkeypatch)
    assert isinstance(resource.transcriber().model, RecordingWhisperModel)
    assert built == [settings.whisper_kwargs()]


class RecordingWhisperModel:
    """Stands in for a GPU Whisper model: records what it was built with (the real CPU model is tested below)."""

    built: list[dict[str, Any]]

    def __init__(self, **kwargs: Any) -> None:
        self.built.append(kwargs)


def recording_whisper_model(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Patch the Whisper constructor the transcriber calls (and empty its model cache); the kwargs it gets."""
    built: list[dict[str, Any]] = []
    monkeypatch.setattr(RecordingWhisperModel, "built", built, raising=False)
    monkeypatch.setattr(faster_whisper, "WhisperModel", RecordingWhisperModel)  # load_model imports it on use
    monkeypatch.setattr(transcription, "_MODELS", {})
    return built


@pytest.mark.parametrize(
    ("env", "device", "compute_type"),
    [
        ({}, "cpu", "int8"),  # embedded default
        ({"MMRECIPE_EXECUTOR": "multiprocess"}, "cpu", "int8"),
        ({"MMRECIPE_EXECUTOR": "k8s"}, "cuda", "float16"),  # production: the stage's pod has a GPU
        ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_GPU": "off"}, "cpu", "int8"),
        ({"MMRECIPE_GPU": "on"}, "cuda", "float16"),  # a GPU workstation, any executor
        ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_ASR_DEVICE": "cpu"}, "cpu", "int8"),  # explicit settings win
        ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_ASR_COMPUTE_TYPE": "int8_float16"}, "cuda", "int8_float16"),
        ({"MMRECIPE_ASR_DEVICE": "cuda", "MMRECIPE_ASR_COMPUTE_TYPE": "float32"}, "cuda", "float32"),
    ],
)
def test_the_deployment_decides_the_device_and_precision_of_the_whisper_model(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], device: str, compute_type: str
) -> None:
    from data_assets.definitions import build_defs

    deployment = Settings.from_env({"MMRECIPE_HOME": settings.home, **env})
    built = recording_whisper_model(monkeypatch)
    transcriber = build_defs(deployment).resources["transcriber"]  # what transcribed_audio is given
    transcriber.transcriber().model  # noqa: B018 (loads the model)
    assert [(kw["device"], kw["compute_type"]) for kw in built] == [(device, compute_type)]
    gpus = pod_resources("transcribed_audio", deployment)["dagster-k8s/config"]["container_config"]["resources"]
    assert gpus["limits"].get("nvidia.com/gpu") == (None if env.get("MMRECIPE_GPU") == "off" else "1")


def test_the_embedded_default_runs_the_real_model_on_the_cpu_in_int8(settings: Settings) -> None:
    from data_assets.definitions import build_defs

    model = build_defs(settings).resources["transcriber"].transcriber().model.model  # CTranslate2's Whisper
    assert (model.device, model.compute_type) == ("cpu", "int8_float32")  # CTranslate2's name of int8 on CPU


def test_code_location_wires_the_transcriber(settings: Settings) -> None:
    assert isinstance(build_resources(settings)["transcriber"], TranscriberResource)


@pytest.mark.parametrize(
    ("env", "device", "compute_type"),
    [
        ({}, "cpu", "int8"),  # embedded default
        ({"MMRECIPE_EXECUTOR": "k8s"}, "cpu", "int8"),  # video_clips' pod has no GPU (transcribed_audio's has)
        ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_ENGINE": "ray"}, "cuda", "float16"),  # its Ray tasks ask for a GPU
        ({"MMRECIPE_GPU": "on"}, "cpu", "int8"),  # video_clips has no GPU size: only its Ray tasks get one
        ({"MMRECIPE_EXECUTOR": "k8s", "MMRECIPE_ASR_DEVICE": "cuda"}, "cuda", "float16"),  # explicit settings win
    ],
)
def test_video_clips_transcribes_on_the_device_its_own_step_gets(
    settings: Settings, env: dict[str, str], device: str, compute_type: str
) -> None:
    from data_assets.definitions import build_defs

    deployment = Settings.from_env({"MMRECIPE_HOME": settings.home, **env})
    asr = build_defs(deployment).resources["transcriber"].settings_for("video_clips", deployment)
    assert (asr.device, asr.compute_type) == (device, compute_type)
    gpus = pod_resources("video_clips", deployment)["dagster-k8s/config"]["container_config"]["resources"]
    assert gpus["limits"].get("nvidia.com/gpu") is None  # the pod never has one: on Ray, the tasks do
