"""quality_classifier: the DCLM-style fastText model that scores every document's P(high quality)."""

import dagster as dg
from pydantic import Field

from data_assets.jobs import STEP_RETRY_POLICY
from mmrecipe.crawl_index import is_indexed
from mmrecipe.settings import Settings
from mmrecipe.stage_output import markdown_table, stage_partitions
from mmrecipe.text.classifier_data import default_reference_texts, read_text_documents, read_url_list, training_set
from mmrecipe.text.quality_classifier import TrainingParams, train_and_publish
from resources import LakeResource, LandingResource


class QualityClassifierConfig(dg.Config):
    """Reference positives, crawl negatives and fastText settings."""

    drops: list[str] = Field(default_factory=list)  # drops to sample from; empty: every drop raw_crawl indexed
    positive_texts_file: str = Field(
        default="",
        description="Reference documents, the positives: a UTF-8 text file, documents separated by blank lines "
        "(empty: MMRECIPE_REFERENCE_TEXTS, else the Python Language Reference installed with mmrecipe)",
    )
    positive_urls_file: str = Field(default="", description="Crawled pages that are positives too: one URL a line")
    positive_urls: list[str] = Field(default_factory=list)
    max_negatives: int = 2000
    max_calibration: int = 2000
    seed: int = 0
    extractor: str = "resiliparse"
    dim: int = 32
    epoch: int = 50
    lr: float = 1.0
    word_ngrams: int = 2
    bucket: int = 50_000


# Trained by the automation sensor when missing and the crawl is indexed (again after a failure only once a new
# drop is indexed); afterwards only on demand, since a new model makes every drop's filtered_text re-run.
TRAIN_WHEN_MISSING = (
    dg.AutomationCondition.missing()
    & dg.AutomationCondition.any_deps_match(~dg.AutomationCondition.missing())  # some drop is indexed
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.in_progress()
    & (~dg.AutomationCondition.execution_failed() | dg.AutomationCondition.any_deps_updated())
).with_label("train when missing")


def _sources(config: QualityClassifierConfig, texts_file: str) -> str:
    """Where the positives came from: the reference text file, the URL list file and/or inline URLs."""
    inline = f"{len(config.positive_urls)} positive_urls" if config.positive_urls else ""
    return ", ".join(s for s in (texts_file, config.positive_urls_file, inline) if s)


@dg.asset(
    retry_policy=STEP_RETRY_POLICY,
    group_name="models",
    kinds={"fasttext"},
    owners=["team:data-platform"],
    code_version="1",
    deps=[dg.AssetDep("raw_crawl", partition_mapping=dg.AllPartitionMapping())],
    automation_condition=TRAIN_WHEN_MISSING,
)
def quality_classifier(
    context: dg.AssetExecutionContext,
    config: QualityClassifierConfig,
    lake: LakeResource,
    landing: LandingResource,
    settings: dg.ResourceParam[Settings],
) -> dg.MaterializeResult:
    """fastText classifier of P(high quality): reference texts vs. a fixed-seed sample of crawled pages."""
    storage = lake.storage()
    indexed = [d for d in stage_partitions(storage, "raw_crawl") if is_indexed(storage, d)]
    drops = config.drops or indexed
    urls = list(config.positive_urls) + (read_url_list(config.positive_urls_file) if config.positive_urls_file else [])
    texts_file = config.positive_texts_file or settings.reference_texts or default_reference_texts()
    try:
        texts = read_text_documents(texts_file)
    except FileNotFoundError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from e  # retrying cannot fix a missing file
    data = training_set(
        storage, landing.storage(), drops, urls, texts, config.max_negatives, config.max_calibration, config.seed,
        config.extractor,
    )  # fmt: skip
    if not data.positives:
        raise dg.Failure(
            description=f"no positive training documents: the reference text file {texts_file!r} holds none, and "
            f"none of the {len(urls)} reference URLs is an HTTP-200 HTML page in raw_crawl of drops {drops}. "
            "Point positive_texts_file at a file of reference documents (blank-line separated), or set "
            "positive_urls / positive_urls_file to pages of an indexed drop.",
            allow_retries=False,  # retrying cannot fix the configuration
        )
    params = TrainingParams(config.dim, config.epoch, config.lr, config.word_ngrams, 1, config.bucket, config.seed)
    source = _sources(config, texts_file)
    info, uri = train_and_publish(storage, data.positives, data.negatives, data.calibration, params, source, drops)
    deciles = {f"p{p}": round(info.quantiles[p], 4) for p in range(0, 101, 10)}
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(uri),
            "version": info.version,
            "n_positive": info.n_positive,
            "positive_source": info.positive_source,
            "n_negative": info.n_negative,
            "n_calibration": len(data.calibration),
            "calibration_held_out": data.calibration_is_heldout,
            "drops": ", ".join(info.drops),
            "score_deciles": dg.MetadataValue.md(markdown_table([deciles], list(deciles))),
            "positive_record_ids": ", ".join(data.positive_ids[:20]) + (" …" if len(data.positive_ids) > 20 else ""),
        },
        data_version=dg.DataVersion(info.version),
    )
