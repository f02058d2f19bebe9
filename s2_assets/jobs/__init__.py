"""sen2chain job files and what they become: parsing and writing job and extraction files,
per-partition options, the planner, and the Dagster jobs, schedules and sensors built on them.

A face (it imports Dagster where it builds schedules and sensors); it may import the vocabulary,
the pure domains, ``outputs`` and ``resources``; only ``definitions``, ``cli`` and ``demo``
import it.
"""
