"""Building blocks every method family imports (timm's ``timm/layers/``): the block finder and module swap
(:mod:`.blocks`), the adapter bottleneck and its wrappers (:mod:`.bottleneck`), the mergeable Linear wrapper
(:mod:`.mergeable`), structural parameter selectors (:mod:`.select`) and option checks (:mod:`.checks`)."""
