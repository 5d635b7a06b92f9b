"""Model families: one sub-package each, found through the ``unetprune.families`` entry points."""
