"""Sen2Cor (ESA's ``L2A_Process``): the runner, its process group that dies with the run, the
machine-wide slots, checking and renaming its output, and the side products.

Pure: no Dagster. May import the vocabulary and ``library``; ``assets`` and ``resources``
import it.
"""
