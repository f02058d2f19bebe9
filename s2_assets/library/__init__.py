"""The library on disk (sen2chain's tree): where products live, safe unzip, verification and
atomic publish, the acquisitions table, provenance, checks, clean and remove rules.

Pure: no Dagster. May import the vocabulary (``products``, ``specs``, ``errors``,
``settings``, ``partitions``) and the other pure domains; never ``jobs``, ``assets``,
``resources`` or above.
"""
