"""What the control plane observes about itself: process resources and the history of its summary figures."""
