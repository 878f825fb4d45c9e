"""fer3d.campaign: the repeated k-fold protocol as a campaign of independent cells.

Stage: settings + shards -> run directory -> summary. :mod:`~fer3d.campaign.protocol`
chooses subjects and folds, :mod:`~fer3d.campaign.rundir` owns the run directory's layout
and readers, :mod:`~fer3d.campaign.plan` plans a run or attaches to one,
:mod:`~fer3d.campaign.claims` lets processes share it, :mod:`~fer3d.campaign.summary`
summarises it, :mod:`~fer3d.campaign.run` trains this process's cells and
:mod:`~fer3d.campaign.executors` launches them in other processes or on Ray. Importing the
package imports no torch (only ``run`` and ``executors`` need it).
"""
