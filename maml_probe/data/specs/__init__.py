"""One module per dataset, each defining ``SPEC``, a :class:`~maml_probe.data.spec.DatasetSpec`.

:mod:`maml_probe.data.registry` imports every module here (names not starting with ``_``) on
first use. To add a dataset, add a module with its loader (or task-source builder), its
on-disk layout and sources, and, if the paper trains on it, its settings; then add a small
generated copy of its files to ``tests/data_fixtures.py`` and name it in
``tests/test_dataset_specs.py``, whose tests check that every spec's fixture loads.
"""
