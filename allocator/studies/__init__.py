"""The jobs "study" and "confirm": fixed grids of proxy runs on the runner.

``specs`` builds the grids (a study's volumes x designs x seeds, a confirmation's mixtures x
seeds) and the grid job both share; ``study`` measures each ability's growth and
``analysis`` fits the curves, transference and complexity; ``confirm`` trains named
mixtures afresh; ``evidence`` holds the statistics that compare confirmed mixtures (paired
tests, Holm's correction, proxy-to-target rank agreement; pure). The public entry points are
``allocator.study`` and ``allocator.confirm``.
"""
