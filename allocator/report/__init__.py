"""I/O of results: MLflow tracking (``tracking``), the result files (``results``), the
console tables (``tables``) and the figures (``figures``)."""
