"""Data: IDD sources, the grain pipeline and the built-in synthetic dataset."""
