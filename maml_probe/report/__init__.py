"""The report: every run under ``results/`` and ``runs/`` set beside the paper's numbers.

:func:`accuracy_report` outer-joins the paper's Tables 1, 2, A1 and A2 with the ``results.csv``
of every run folder under the given roots (by default the committed reference results in
``results/`` and the user's own ``runs/``): one row per (table, dataset, method) with our
accuracy as mean ± std over test tasks (the std read from the run's summary tables or computed
from its per-task ``tests.csv``) and 95% CI, the paper's mean ± std, the deviation (ours minus
the paper's, in points), and how the row was measured: scale, iterations, meta-batch, episode
and, in words, what differs from the paper's settings (derived from the run's recorded
configuration, see :func:`differs_from_paper`).

Runs that differ only in their seed (a grid ``-p seed=0,1,2``) are aggregated: the accuracy is
the mean over seeds, ``seed_std`` their standard deviation and ``seeds`` how many there are
(``std`` and ``ci95`` are then the means of the seeds' per-task values); the same run found twice
(a copy in ``results/`` and in ``runs/``) counts once. Where several runs report the same row,
the one at the largest scale (``paper`` > ``cpu`` > ``smoke``) wins, then the one with more
training iterations, then more seeds, then the most recent. A row we have not run shows ``NaN``
in the tables (never a zero) and, in ``report.md``, one line per dataset and reason: not run
yet, not run here because the dataset's files are absent (:func:`absent_datasets`), or failed.
:func:`compute_report` does the same for Table A3 (parameters and seconds per meta-batch) from
the E11 runs' ``methods.csv``; :func:`beyond_report` gathers E12 (beyond the paper: CKA per
layer, ANIL/BOIL, the learned update against the Newton step).

A run folder whose ``record.json`` or table cannot be read is skipped and named in the report
(and in a warning); it never stops the report.

Every name below is importable from ``maml_probe.report`` itself; the modules, one job each:

==================  =========================================================================
module              what
==================  =========================================================================
``records``         reading run folders: ``record.json`` and tables (:func:`read_record`)
``row_settings``    each result's std over test tasks and how it was measured: iterations,
                    meta-batch, episode, what differs from the paper (:func:`differs_from_paper`)
``not_run``         why a row has no number: failed (:func:`failed_methods`) or no data here
                    (:func:`absent_datasets`)
``tables``          Tables 1, 2, A1, A2 (:func:`accuracy_report`) and A3 (:func:`compute_report`),
                    one row per result over seeds (:func:`collect_results`,
                    :func:`aggregate_seeds`)
``beyond``          E12, beyond the paper (:func:`beyond_report`), and its section of the report
``markdown``        tables as the report shows them (:func:`to_markdown`, :func:`for_display`)
``write``           ``report.md`` and its CSVs (:func:`write_report`, :func:`runs_overview`)
``figures``         the paper's figures redrawn from the runs (:func:`figures_from_runs`)
==================  =========================================================================
"""
from __future__ import annotations

from .beyond import BEYOND, beyond_report
from .figures import figures_from_runs
from .markdown import NA, for_display, to_markdown
from .not_run import absent_datasets, failed_methods
from .records import DEFAULT_ROOTS, DataRoots, Roots, read_record
from .row_settings import PAPER_TEST_TASKS, differs_from_paper, episode_words
from .tables import (
    KEY,
    PAPER_TABLES,
    SCALE_RANK,
    TABLE_SOURCES,
    accuracy_report,
    aggregate_seeds,
    collect_results,
    compute_report,
)
from .write import runs_overview, write_report

__all__ = [
    "BEYOND", "DEFAULT_ROOTS", "KEY", "NA", "PAPER_TABLES", "PAPER_TEST_TASKS", "SCALE_RANK",
    "TABLE_SOURCES", "DataRoots", "Roots", "absent_datasets", "accuracy_report", "aggregate_seeds",
    "beyond_report", "collect_results", "compute_report", "differs_from_paper", "episode_words",
    "failed_methods", "figures_from_runs", "for_display", "read_record", "runs_overview",
    "to_markdown", "write_report",
]
