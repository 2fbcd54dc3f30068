"""Real data set downloads: ``python -m lavis.datasets.download NAME [--root DIR] [--only KIND] [--list]``.

Each data set is a :class:`~lavis.datasets.download.spec.DatasetSpec` in
:mod:`~lavis.datasets.download.catalog` (web-scale sets in :mod:`~lavis.datasets.download.webscale`):
real public URLs, laid out under the cache root exactly where LAVIS-style ``build_info`` entries
point. Downloads resume and are verified (:mod:`lavis.common.download`), archives are extracted
without path traversal (:mod:`lavis.common.archive`), every step is idempotent, and steps that need
a person (licence forms, img2dataset crawls) stop with instructions. See ``docs/datasets.md``.

Modules: :mod:`~lavis.datasets.download.spec` (the step types), ``catalog``/``webscale`` (the data
sets), :mod:`~lavis.datasets.download.steps` (running the steps), :mod:`~lavis.datasets.download.api`
(``download_dataset``, listing, docs tables) and ``__main__`` (the command line).
"""

from lavis.datasets.download.api import (
    ONLY_CHOICES,
    data_root,
    download_dataset,
    list_lines,
    markdown_tables,
    rerun_command,
    select_parts,
)
from lavis.datasets.download.catalog import ALL_DATASETS, dataset_names, get_spec
from lavis.datasets.download.steps import DatasetDownloadError, DatasetReport, ManualStepRequired

__all__ = [
    "ALL_DATASETS", "ONLY_CHOICES", "DatasetDownloadError", "DatasetReport", "ManualStepRequired", "data_root",
    "dataset_names", "download_dataset", "get_spec", "list_lines", "markdown_tables", "rerun_command",
    "select_parts",
]
