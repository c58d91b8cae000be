"""OrderFlow backtest: recordings or the simulator through the live folds, in one process.

No Redis, no PostgreSQL: the journal, the bars and a self-contained HTML report in a folder.
"""
