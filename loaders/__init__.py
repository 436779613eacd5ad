"""Speech emotion corpora as one `datasets` schema: builders, splits, downloads, Hub push."""
