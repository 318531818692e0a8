"""4. Scores -> curves -> allocation, pure math (numpy and scipy, no I/O).

``scoring`` makes abilities scored by different metrics comparable (the fraction of the gap
closed from the untrained base to a perfect model); ``growth`` fits an ability's score
against its data volume; ``transference`` measures how one ability's data moves another;
``allocation`` turns curves into the best counts for a budget; ``model.GrowthModel`` is the
landscape model the growth-curve sampler and ``recommend`` share.
"""
