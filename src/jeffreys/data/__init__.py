"""Data on disk: Kaldi-style data dirs, trial lists, training datasets, augmentation."""
