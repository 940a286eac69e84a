"""Side tuning: a small network beside the frozen backbone, trained without backpropagating through it."""
